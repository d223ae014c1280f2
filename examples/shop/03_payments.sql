-- Payment read models. Money is DECIMAL: sums are exact.

CREATE MATERIALIZED VIEW payments_by_customer AS
SELECT customer_id,
       count(*) AS payments,
       sum(CASE type WHEN 'PaymentAuthorized' THEN amount WHEN 'PaymentRefunded' THEN -amount ELSE 0 END) AS net_paid,
       sum(CASE WHEN type = 'PaymentFailed' THEN 1 ELSE 0 END) AS failed,
       max(ts) AS last_payment_at
FROM payments GROUP BY customer_id;

CREATE MATERIALIZED VIEW payments_by_method AS
SELECT method, count(*) AS payments, sum(amount) AS total, avg(amount) AS average, max(amount) AS largest
FROM payments WHERE type = 'PaymentAuthorized' GROUP BY method;

CREATE MATERIALIZED VIEW revenue_per_minute AS
SELECT date_trunc('minute', ts) AS minute, sum(amount) AS revenue, count(*) AS payments
FROM payments WHERE type = 'PaymentAuthorized' GROUP BY date_trunc('minute', ts);
