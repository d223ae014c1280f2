-- Order fulfilment as a saga: reserve stock, charge the payment gateway,
-- ship, notify by e-mail; release the stock and refund the payment when a
-- later step fails. Each step is an action sink calling a service
-- (examples/saga/services.py stands in for them on 127.0.0.1:9900); every
-- step's outcome is an event on the topic saga_steps, and the next step is
-- a view over those events. See examples/saga/README.md.

CREATE TABLE orders (
  order_id BIGINT NOT NULL,
  customer_id BIGINT,
  product TEXT,
  quantity INT,
  amount DECIMAL(12,2),
  email TEXT,
  ts TIMESTAMP
) WITH (connector = 'log', topic = 'saga_orders', format = 'json');

-- The outcome of every call the saga made (appended by the sinks below):
-- `sink` names the step, `ok` whether the service took it.
CREATE TABLE steps (
  order_id BIGINT,
  sink TEXT,
  ok BOOLEAN,
  outcome TEXT,
  status INT,
  attempts INT,
  reason TEXT,
  at_ms TIMESTAMP
) WITH (connector = 'log', topic = 'saga_steps', format = 'json',
        'watermark.lateness' = '1 second', 'watermark.idle' = '1 second');

-- 1. Reserve the stock of each new order.
CREATE MATERIALIZED VIEW to_reserve AS
SELECT order_id, product, quantity FROM orders;

CREATE SINK reserve FROM to_reserve WITH (connector = 'http',
  url = 'http://127.0.0.1:9900/inventory/reserve/{order_id}',
  'retry.attempts' = '8', 'retry.initial' = '50 ms', timeout = '2 s',
  'breaker.failures' = '20', 'breaker.cooldown' = '2 s',
  'fallback.after' = '20 s', 'response.topic' = 'saga_steps');

-- 2. Charge once the stock is reserved.
CREATE MATERIALIZED VIEW to_charge AS
SELECT o.order_id, o.customer_id, o.amount
FROM orders o JOIN steps s ON s.order_id = o.order_id
WHERE s.sink = 'reserve' AND s.ok;

CREATE SINK charge FROM to_charge WITH (connector = 'http',
  url = 'http://127.0.0.1:9900/payments/charge/{order_id}',
  'retry.attempts' = '8', 'retry.initial' = '50 ms', timeout = '2 s',
  'breaker.failures' = '20', 'breaker.cooldown' = '2 s',
  'fallback.after' = '20 s', 'response.topic' = 'saga_steps');

-- The payment's verdict, decided in event time by a pattern rule: paid
-- (or declined) within 30 s of the reservation, or timed out — the
-- time-out a saga orchestrator would fire. Never both for one order.
CREATE MATERIALIZED VIEW payment_verdicts AS
SELECT order_id, paid, timed_out FROM steps MATCH_RECOGNIZE (
  PARTITION BY order_id
  ORDER BY at_ms
  MEASURES C.ok AS paid, TIMED_OUT() AS timed_out
  PATTERN (R X*? C) WITHIN INTERVAL '30' SECOND EMIT TIMEOUTS
  DEFINE
    R AS sink = 'reserve' AND ok,
    X AS sink <> 'charge',
    C AS sink = 'charge'
) AS m;

-- 3. Ship once paid in time.
CREATE MATERIALIZED VIEW to_ship AS
SELECT o.order_id, o.product, o.quantity
FROM orders o JOIN payment_verdicts v ON v.order_id = o.order_id
WHERE v.paid AND NOT v.timed_out;

CREATE SINK ship FROM to_ship WITH (connector = 'http',
  url = 'http://127.0.0.1:9900/shipping/ship/{order_id}',
  'retry.attempts' = '3', 'retry.initial' = '50 ms', timeout = '2 s',
  'breaker.failures' = '20', 'breaker.cooldown' = '2 s', 'fallback.after' = '20 s', 'response.topic' = 'saga_steps');

-- 4. Tell the customer once shipped.
CREATE MATERIALIZED VIEW to_notify AS
SELECT o.order_id, o.email
FROM orders o JOIN steps s ON s.order_id = o.order_id
WHERE s.sink = 'ship' AND s.ok;

CREATE SINK notify FROM to_notify WITH (connector = 'http',
  url = 'http://127.0.0.1:9900/notify/email/{order_id}',
  'retry.attempts' = '20', 'retry.initial' = '50 ms', timeout = '2 s',
  'breaker.failures' = '20', 'breaker.cooldown' = '2 s', 'fallback.after' = '10 minutes', 'response.topic' = 'saga_steps');

-- Compensations: a payment or a shipment that failed for good releases the
-- stock; a shipment that failed refunds the payment. They must not give up:
-- many attempts, a long wait.
CREATE MATERIALIZED VIEW release_reasons AS
SELECT order_id FROM payment_verdicts WHERE timed_out OR NOT paid
UNION ALL
SELECT order_id FROM steps WHERE sink = 'ship' AND NOT ok;

CREATE MATERIALIZED VIEW to_release AS
SELECT o.order_id, o.product, o.quantity
FROM orders o JOIN (SELECT order_id FROM release_reasons GROUP BY order_id) r ON r.order_id = o.order_id;

CREATE SINK release FROM to_release WITH (connector = 'http',
  url = 'http://127.0.0.1:9900/inventory/release/{order_id}',
  'retry.attempts' = '1000', 'retry.initial' = '50 ms', 'retry.max.delay' = '2 s',
  'breaker.failures' = '20', 'breaker.cooldown' = '2 s', 'fallback.after' = '1 hour', 'response.topic' = 'saga_steps');

-- A payment that failed to ship, or that was charged after its time-out.
CREATE MATERIALIZED VIEW refund_reasons AS
SELECT order_id FROM steps WHERE sink = 'ship' AND NOT ok
UNION ALL
SELECT s.order_id FROM steps s JOIN payment_verdicts v ON v.order_id = s.order_id
WHERE s.sink = 'charge' AND s.ok AND v.timed_out;

CREATE MATERIALIZED VIEW to_refund AS
SELECT o.order_id, o.amount
FROM orders o JOIN (SELECT order_id FROM refund_reasons GROUP BY order_id) r ON r.order_id = o.order_id;

CREATE SINK refund FROM to_refund WITH (connector = 'http',
  url = 'http://127.0.0.1:9900/payments/refund/{order_id}',
  'retry.attempts' = '1000', 'retry.initial' = '50 ms', 'retry.max.delay' = '2 s',
  'breaker.failures' = '20', 'breaker.cooldown' = '2 s', 'fallback.after' = '1 hour', 'response.topic' = 'saga_steps');

-- The saga of each order, from its steps.
CREATE MATERIALIZED VIEW saga_steps_per_order AS
SELECT order_id,
  count(*) AS steps,
  sum(CASE WHEN sink = 'reserve' AND NOT ok THEN 1 ELSE 0 END) AS rejected,
  sum(CASE WHEN sink = 'ship' AND ok THEN 1 ELSE 0 END) AS shipped,
  sum(CASE WHEN sink = 'ship' AND NOT ok THEN 1 ELSE 0 END) AS ship_failed,
  sum(CASE WHEN sink = 'release' AND ok THEN 1 ELSE 0 END) AS released,
  sum(CASE WHEN sink = 'refund' AND ok THEN 1 ELSE 0 END) AS refunded
FROM steps GROUP BY order_id;

CREATE MATERIALIZED VIEW saga_state AS
SELECT p.order_id, p.steps,
  CASE
    WHEN p.shipped > 0 THEN 'completed'
    WHEN p.rejected > 0 THEN 'rejected'
    WHEN p.released > 0 AND (r.order_id IS NULL OR p.refunded > 0) THEN 'compensated'
    WHEN p.released > 0 OR r.order_id IS NOT NULL THEN 'compensating'
    ELSE 'in_progress'
  END AS state
FROM saga_steps_per_order p
LEFT JOIN (SELECT order_id FROM refund_reasons GROUP BY order_id) r ON r.order_id = p.order_id;
