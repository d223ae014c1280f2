SELECT * FROM by_customer b JOIN by_customer c ON b.customer_id = c.customer_id
