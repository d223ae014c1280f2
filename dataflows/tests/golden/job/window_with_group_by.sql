CREATE VIEW v AS SELECT customer_id, count(*) AS n, row_number() OVER (ORDER BY customer_id) AS r FROM payments GROUP BY customer_id;
