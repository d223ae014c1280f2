CREATE VIEW v AS SELECT customer_id FROM payments WHERE sum(amount) > 10;
