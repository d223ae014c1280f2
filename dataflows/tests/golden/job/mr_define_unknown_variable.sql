CREATE VIEW v AS SELECT * FROM payments MATCH_RECOGNIZE (
  PARTITION BY customer_id ORDER BY ts
  MEASURES A.amount AS a
  PATTERN (A B)
  DEFINE A AS amount > 10, C AS amount < 5);
