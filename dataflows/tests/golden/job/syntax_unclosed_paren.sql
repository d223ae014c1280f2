CREATE VIEW v AS SELECT (amount FROM payments;
