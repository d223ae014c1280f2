CREATE VIEW v AS SELECT * FROM payments MATCH_RECOGNIZE (
  PARTITION BY customer_id ORDER BY ts
  MEASURES A.amount AS a
  PATTERN (A B)
  DEFINE B AS B.amount > X.amount);
