DROP VIEW by_customer;
