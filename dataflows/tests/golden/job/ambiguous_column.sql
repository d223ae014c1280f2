CREATE VIEW v AS SELECT customer_id FROM payments JOIN customers ON payments.customer_id = customers.customer_id;
