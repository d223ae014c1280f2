-- Order read models.

-- The current state of each order: its latest event.
CREATE MATERIALIZED VIEW order_status AS
SELECT order_id, customer_id, status, ts AS updated_at FROM (
  SELECT order_id, customer_id, type AS status, ts,
         ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY ts DESC) AS rn
  FROM orders
) latest
WHERE rn = 1;

-- Orders placed per customer, with what they were worth, and the customer's tier.
CREATE MATERIALIZED VIEW orders_per_customer AS
SELECT o.customer_id, c.name, c.tier, o.orders, o.items, o.total
FROM (
  SELECT customer_id, count(*) AS orders, sum(quantity) AS items, sum(quantity * price) AS total
  FROM orders WHERE type = 'OrderPlaced' GROUP BY customer_id
) o
LEFT JOIN customers c ON c.customer_id = o.customer_id;

-- Units sold per product, and the ten best sellers.
CREATE MATERIALIZED VIEW product_sales AS
SELECT product, sum(quantity) AS units, count(*) AS orders
FROM orders WHERE type = 'OrderPlaced' GROUP BY product;

CREATE MATERIALIZED VIEW top_products AS
SELECT product, units, rank FROM (
  SELECT product, units, ROW_NUMBER() OVER (ORDER BY units DESC, product) AS rank
  FROM product_sales
) ranked
WHERE rank <= 10;
