CREATE VIEW v AS SELECT p.nope FROM payments p;
