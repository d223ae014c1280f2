CREATE VIEW v AS SELECT frobnicate(amount) AS f FROM payments;
