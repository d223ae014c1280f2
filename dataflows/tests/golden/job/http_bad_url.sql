CREATE MATERIALIZED VIEW v AS SELECT customer_id, count(*) AS n FROM payments GROUP BY customer_id;
CREATE SINK s FROM v WITH (connector = 'http', url = 'ftp://svc/x');
