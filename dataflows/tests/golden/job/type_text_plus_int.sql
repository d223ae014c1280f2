CREATE VIEW v AS SELECT name + 1 AS x FROM customers;
