CREATE VIEW by_customer AS SELECT 1 AS one;
