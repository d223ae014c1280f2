CREATE MATERIALIZED VIEW v AS SELECT customer_id, count(*) AS n FROM payments GROUP BY customer_id;
CREATE SINK s FROM v WITH (connector = 'http', url = 'http://svc/c/{customer_id}', 'retry.attempts' = '0');
