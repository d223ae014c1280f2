CREATE TABLE t (a BIGINT, a TEXT) WITH (connector = 'log', topic = 't');
