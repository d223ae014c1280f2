DROP VIEW by_customer CASCADE;
