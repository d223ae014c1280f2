CREATE VIEW v AS SELECT customer_id, customer_id FROM payments;
