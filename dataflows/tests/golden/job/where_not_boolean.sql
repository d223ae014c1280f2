CREATE VIEW v AS SELECT * FROM payments WHERE amount;
