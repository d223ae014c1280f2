CREATE VIEW v AS SELECT * FROM payments p FULL OUTER JOIN customers c ON p.customer_id = c.customer_id;
