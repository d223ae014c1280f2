SELECT * FROM by_customer; SELECT * FROM by_customer
