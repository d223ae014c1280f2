CREATE VIEW v WITH ('pattern.max_rows' = 'lots') AS SELECT * FROM payments MATCH_RECOGNIZE (
  PARTITION BY customer_id ORDER BY ts
  MEASURES count(A.*) AS n
  PATTERN (A+ B)
  DEFINE A AS amount > 10);
