-- The shop's event streams, as they arrive in the embedded log.
-- Each table reads the topic of the same name; events are JSON objects.

CREATE TABLE orders (
  type TEXT,              -- OrderPlaced | OrderPaid | OrderShipped | OrderCancelled
  order_id BIGINT NOT NULL,
  customer_id BIGINT,
  product TEXT,
  quantity INT,
  price DECIMAL(10,2),
  ts TIMESTAMP
) WITH (connector = 'log', topic = 'orders', format = 'json');

CREATE TABLE payments (
  type TEXT,              -- PaymentAuthorized | PaymentFailed | PaymentRefunded
  payment_id BIGINT,
  order_id BIGINT,
  customer_id BIGINT,
  amount DECIMAL(12,2),
  method TEXT,
  ts TIMESTAMP
) WITH (connector = 'log', topic = 'payments', format = 'json');

CREATE TABLE inventory (
  type TEXT,              -- StockReserved | StockReleased | StockReceived
  product TEXT,
  quantity INT,
  order_id BIGINT,
  ts TIMESTAMP
) WITH (connector = 'log', topic = 'inventory', format = 'json');

-- Customers are an upsert table: the latest event per customer_id wins,
-- and {"customer_id": 7, "__op": "delete"} removes customer 7.
CREATE TABLE customers (
  customer_id BIGINT PRIMARY KEY,
  name TEXT,
  tier TEXT,
  ts TIMESTAMP
) WITH (connector = 'log', topic = 'customers', format = 'json');
