CREATE VIEW ok AS SELECT customer_id FROM payments;

CREATE VIEW bad AS
  SELECT customer_id FROM payments
  WHERE customer_id = 'seven' AND amount > 'lots';
