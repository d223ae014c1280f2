CREATE TABLE t (a GEOMETRY) WITH (connector = 'log', topic = 't');
