CREATE TABLE k (a BIGINT)
  WITH (connector = 'kafka', topic = 'k', format = 'json');
