CREATE TABLE k (a BIGINT PRIMARY KEY, b TEXT)
  WITH (connector = 'kafka', 'bootstrap.servers' = 'b:9092', topic = 'k',
        'scan.startup.mode' = 'offsets', 'scan.startup.specific-offsets' = 'partition:0,offset:42;partition:1,offset:7',
        'properties.group.id' = 'g', 'properties.security.protocol' = 'plaintext');
CREATE MATERIALIZED VIEW kv AS SELECT b, count(*) AS n FROM k GROUP BY b;
