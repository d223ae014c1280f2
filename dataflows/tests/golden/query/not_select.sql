DELETE FROM by_customer
