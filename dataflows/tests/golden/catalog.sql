CREATE TABLE payments (
  payment_id BIGINT, customer_id BIGINT, amount DECIMAL(12,2), method TEXT, ts TIMESTAMP
) WITH (connector = 'log', topic = 'payments', format = 'json');
CREATE TABLE customers (customer_id BIGINT PRIMARY KEY, name TEXT, tier TEXT)
  WITH (connector = 'log', topic = 'customers', format = 'json');
CREATE MATERIALIZED VIEW by_customer AS
  SELECT customer_id, count(*) AS payments, sum(amount) AS total FROM payments GROUP BY customer_id;
