CREATE TABLE t (a BIGINT) WITH (connector = 'carrier-pigeon', topic = 't');
