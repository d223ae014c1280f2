CREATE VIEW v AS SELECT amount AS x FROM payments UNION ALL SELECT name FROM customers;
