CREATE VIEW v AS SELECT customer_id, rank() OVER (ORDER BY amount) AS r FROM payments;
