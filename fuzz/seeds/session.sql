-- A psql session with a bit of everything the gateway reads.
CREATE TABLE customers (id serial PRIMARY KEY, email text UNIQUE, ssn text, notes jsonb, card text);
INSERT INTO customers (email, ssn, notes, card) VALUES
  ('alice@example.com', '123-45-6789', '{"api_key": "k3y-V4lue-0f-4n-4p1"}', '4111 1111 1111 1111'),
  ('bob@example.org', '234-56-7890', '{"note": "call AKIAIOSFODNN7EXAMPLE"}', NULL);
SELECT * FROM customers WHERE email LIKE '%@example.%';
SELECT email AS e, lower(email), row_to_json(c) FROM customers c;
INSERT INTO customers (email) VALUES ('alice@example.com');
COPY customers TO STDOUT;
COPY customers (email, ssn) TO STDOUT WITH (FORMAT csv, HEADER, DELIMITER ';', NULL 'NULL');
COPY (SELECT id, card FROM customers) TO STDOUT WITH (FORMAT binary);
COPY customers (email) FROM STDIN;
carol@example.net
dave@example.com
\.
BEGIN;
UPDATE customers SET notes = '{"secret": "s3cr3t-v4lue"}' WHERE id = 1;
SAVEPOINT s; SELECT 1/0; ROLLBACK TO s;
COMMIT;
DO $$ BEGIN RAISE NOTICE 'card 4242 4242 4242 4242 for %', current_user; END $$;
DO $body$ DECLARE r record; BEGIN FOR r IN SELECT email FROM customers LOOP PERFORM length(r.email); END LOOP; END $body$;
CREATE FUNCTION mail_of(i int) RETURNS text LANGUAGE sql AS $f$ SELECT email FROM customers WHERE id = i $f$;
SELECT mail_of(1), E'it\'s', 'back\slash', U&'d\0061t\+000061', $q$ ; DROP TABLE decoy; $q$ /* /* nested */ */;
LISTEN events; NOTIFY events, 'user alice@example.com signed in'; UNLISTEN *;
SELECT set_config('application_name', 'bot 123-45-6789', false);
PREPARE p AS SELECT * FROM customers WHERE id = $1; EXECUTE p(1); DEALLOCATE p;
EXPLAIN (ANALYZE, COSTS OFF) SELECT count(*) FROM customers;
WITH d AS (DELETE FROM customers WHERE id > 100 RETURNING *) SELECT count(*) FROM d;
TRUNCATE customers;
DROP TABLE customers;
SELECT pg_sleep(0);
