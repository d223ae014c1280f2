CREATE VIEW v AS
  SELECT customer_id,
         amout
  FROM payments;
