CREATE VIEW v AS SELECT abs(amount, 2) AS a FROM payments;
