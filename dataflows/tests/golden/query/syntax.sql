SELECT * FROM by_customer WHERE
