CREATE SINK s FROM by_customer
  WITH (connector = 'kafka', 'bootstrap.servers' = 'b:9092', topic = 's', envelope = 'upsert');
