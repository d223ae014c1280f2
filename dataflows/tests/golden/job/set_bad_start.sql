SET 'auto.offset.reset' = 'yesterday';
CREATE VIEW v AS SELECT * FROM payments;
