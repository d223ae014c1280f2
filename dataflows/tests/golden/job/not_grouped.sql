CREATE VIEW v AS SELECT customer_id, method, count(*) AS n FROM payments GROUP BY customer_id;
