CREATE VIEW v WITH ('pattern.max_rows' = '100') AS SELECT customer_id FROM payments;
