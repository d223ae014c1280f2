CREATE TABLE k (a BIGINT)
  WITH (connector = 'kafka', 'bootstrap.servers' = 'b:9092', topic = 'k',
        'scan.startup.mode' = 'yesterday');
