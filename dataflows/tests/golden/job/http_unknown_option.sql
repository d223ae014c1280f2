CREATE MATERIALIZED VIEW v AS SELECT customer_id, count(*) AS n FROM payments GROUP BY customer_id;
CREATE SINK s FROM v WITH (connector = 'http', url = 'http://svc/x', 'breaker.wait' = '1 s');
