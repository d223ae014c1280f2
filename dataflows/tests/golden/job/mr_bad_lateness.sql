CREATE TABLE t (ts TIMESTAMP, v BIGINT)
  WITH (connector = 'log', 'watermark.lateness' = 'soon');
