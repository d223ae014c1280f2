CREATE MATERIALIZED VIEW v AS SELECT customer_id, count(*) AS n FROM payments GROUP BY customer_id;
CREATE SINK s FROM v WITH (connector = 'http', url = 'https://svc/c/{customer_id}?n={n}', method = 'put',
  changes = 'insert,update,delete', 'header.X-Api-Key' = 'k', timeout = '2 s', 'fallback.topic' = 'failed', 'response.topic' = 'results');
