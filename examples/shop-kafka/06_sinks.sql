-- Changelogs of two views, written to Kafka topics (created if missing):
-- every change of an order's status, keyed by order_id (a compacted topic
-- holds exactly the view), and every fraud suspect the rules find, as
-- Debezium-style before/after records. Each record carries the engine
-- time of its change in the `weir.as_of` header.
CREATE SINK order_status_changes FROM order_status WITH (
  connector = 'kafka', 'bootstrap.servers' = '127.0.0.1:9092', topic = 'order_status',
  format = 'json', envelope = 'upsert');

CREATE SINK fraud_alerts FROM fraud_suspects WITH (
  connector = 'kafka', 'bootstrap.servers' = '127.0.0.1:9092', topic = 'fraud_alerts',
  format = 'json', envelope = 'debezium');
