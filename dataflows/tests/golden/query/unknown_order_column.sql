SELECT customer_id FROM by_customer ORDER BY nope
