SET 'auto.commit' = 'true';
CREATE VIEW v AS SELECT * FROM payments;
