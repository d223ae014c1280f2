INSERT INTO payments VALUES (1, 2, 3.00, 'card', NULL);
