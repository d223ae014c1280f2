-- Read models published to Kafka. A sink writes the changes of a view of its
-- own job, to a topic it creates if missing; each record carries the engine
-- time of its change in the `weir.as_of` header.

-- Authorized spend per customer: keyed by customer_id, the key's latest row
-- (a compacted topic holds exactly the view).
CREATE MATERIALIZED VIEW customer_spend AS
  SELECT customer_id, count(*) AS payments, sum(amount) AS total
  FROM payments WHERE type = 'PaymentAuthorized' GROUP BY customer_id;

CREATE SINK customer_spend_out FROM customer_spend WITH (
  connector = 'kafka', 'bootstrap.servers' = '127.0.0.1:9092', topic = 'customer_spend',
  format = 'json', envelope = 'upsert');

-- Every payment over 500, as Debezium-style change records.
CREATE MATERIALIZED VIEW large_payments AS
  SELECT payment_id, customer_id, amount, method, ts
  FROM payments WHERE type = 'PaymentAuthorized' AND amount > 500;

CREATE SINK large_payments_out FROM large_payments WITH (
  connector = 'kafka', 'bootstrap.servers' = '127.0.0.1:9092', topic = 'large_payments',
  format = 'json', envelope = 'debezium');
