SELECT * FROM payments
