CREATE MATERIALIZED VIEW big AS SELECT payment_id, amount FROM payments WHERE amount > 100;
CREATE SINK s FROM big WITH (connector = 'kafka', 'bootstrap.servers' = 'b:9092', topic = 's',
  envelope = 'upsert');
