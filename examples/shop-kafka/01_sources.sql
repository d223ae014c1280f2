-- The shop's event streams, read from Kafka topics (bootstrap server
-- 127.0.0.1:9092: edit it for your cluster). Each table reads the topic of
-- the same name from its earliest offset; events are JSON objects.
-- Pattern rules (05_rules.sql) order events by `ts`: events may arrive up
-- to 5 seconds out of order, and after 1 second without events the event
-- clock moves on with the wall clock (so time-outs fire on a quiet stream).

CREATE TABLE orders (
  type TEXT,              -- OrderPlaced | OrderPaid | OrderShipped | OrderCancelled
  order_id BIGINT NOT NULL,
  customer_id BIGINT,
  product TEXT,
  quantity INT,
  price DECIMAL(10,2),
  ts TIMESTAMP
) WITH (connector = 'kafka', 'bootstrap.servers' = '127.0.0.1:9092', topic = 'orders', format = 'json',
        'watermark.lateness' = '5 seconds', 'watermark.idle' = '1 second');

CREATE TABLE payments (
  type TEXT,              -- PaymentAuthorized | PaymentFailed | PaymentRefunded
  payment_id BIGINT,
  order_id BIGINT,
  customer_id BIGINT,
  amount DECIMAL(12,2),
  method TEXT,
  ts TIMESTAMP
) WITH (connector = 'kafka', 'bootstrap.servers' = '127.0.0.1:9092', topic = 'payments', format = 'json',
        'watermark.lateness' = '5 seconds', 'watermark.idle' = '1 second');

CREATE TABLE inventory (
  type TEXT,              -- StockReserved | StockReleased | StockReceived
  product TEXT,
  quantity INT,
  order_id BIGINT,
  ts TIMESTAMP
) WITH (connector = 'kafka', 'bootstrap.servers' = '127.0.0.1:9092', topic = 'inventory', format = 'json',
        'watermark.lateness' = '5 seconds', 'watermark.idle' = '1 second');

-- Customers are an upsert table: the latest event per customer_id wins,
-- and {"customer_id": 7, "__op": "delete"} removes customer 7.
CREATE TABLE customers (
  customer_id BIGINT PRIMARY KEY,
  name TEXT,
  tier TEXT,
  ts TIMESTAMP
) WITH (connector = 'kafka', 'bootstrap.servers' = '127.0.0.1:9092', topic = 'customers', format = 'json');
