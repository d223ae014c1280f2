-- Stock levels: movements per product since the log began.
CREATE MATERIALIZED VIEW stock_levels AS
SELECT product,
       sum(CASE type WHEN 'StockReserved' THEN -quantity ELSE quantity END) AS net_change,
       sum(CASE WHEN type = 'StockReserved' THEN quantity ELSE 0 END) AS reserved,
       count(*) AS movements
FROM inventory GROUP BY product;
