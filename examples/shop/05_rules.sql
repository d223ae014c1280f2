-- The shop's pattern rules: a rule set, swapped live with
-- `weir submit examples/shop/05_rules.sql` after an edit. Matches are views
-- like any other. See docs/cep.md for the semantics.

-- Fraud: three or more failed payments of one customer, then a success,
-- all within 10 minutes.
CREATE MATERIALIZED VIEW fraud_suspects AS
SELECT * FROM payments MATCH_RECOGNIZE (
  PARTITION BY customer_id
  ORDER BY ts
  MEASURES
    count(FAILED.*) AS failed_attempts,
    FIRST(FAILED.ts) AS first_failure_at,
    OK.ts AS paid_at,
    OK.amount AS amount,
    OK.order_id AS order_id
  ONE ROW PER MATCH
  AFTER MATCH SKIP PAST LAST ROW
  PATTERN (FAILED{3,} OK) WITHIN INTERVAL '10' MINUTE
  DEFINE
    FAILED AS type = 'PaymentFailed',
    OK AS type = 'PaymentAuthorized'
);

-- Abandoned checkout: an order placed and not paid within 30 minutes. The
-- time-out row is the trigger for the saga's compensation. A paid order
-- matches the whole pattern (timed_out = false, filtered out here, so the
-- view holds abandoned orders only); a cancelled order neither matches nor
-- times out.
CREATE MATERIALIZED VIEW abandoned_checkouts AS
SELECT order_id, customer_id, placed_at FROM orders MATCH_RECOGNIZE (
  PARTITION BY order_id
  ORDER BY ts
  MEASURES
    PLACED.customer_id AS customer_id,
    PLACED.ts AS placed_at,
    TIMED_OUT() AS timed_out
  PATTERN (PLACED OTHER*? PAID) WITHIN INTERVAL '30' MINUTE EMIT TIMEOUTS
  DEFINE
    PLACED AS type = 'OrderPlaced',
    OTHER AS type NOT IN ('OrderCancelled', 'OrderPlaced'),
    PAID AS type = 'OrderPaid'
) AS checkout
WHERE timed_out;

-- Demand surge: five or more reservations in a row of one product, each of
-- three units or more, within 5 seconds.
CREATE MATERIALIZED VIEW stock_surges AS
SELECT * FROM inventory MATCH_RECOGNIZE (
  PARTITION BY product
  ORDER BY ts
  MEASURES
    FIRST(R.ts) AS started_at,
    LAST(R.ts) AS ended_at,
    count(R.*) AS reservations,
    sum(R.quantity) AS units
  PATTERN (R{5,}) WITHIN INTERVAL '5' SECOND
  DEFINE R AS type = 'StockReserved' AND quantity >= 3
);
