CREATE TABLE k (a BIGINT)
  WITH (connector = 'log', 'scan.startup.mode' = 'latest');
