SELECT count(*) FROM by_customer
