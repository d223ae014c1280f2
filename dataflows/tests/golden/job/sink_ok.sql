CREATE MATERIALIZED VIEW v AS SELECT customer_id, count(*) AS n FROM payments GROUP BY customer_id;
CREATE SINK s FROM v WITH (connector = 'kafka', 'bootstrap.servers' = 'b:9092', topic = 's',
  envelope = 'upsert', 'sink.semantic' = 'exactly-once', 'topic.partitions' = '3');
