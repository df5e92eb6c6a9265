--
-- Attack: change or delete gated rows.  Under command ALL, UPDATE and
-- DELETE cannot touch rows whose subject does not consent, and cannot
-- move rows onto such subjects; commands UPDATE and DELETE gate only
-- themselves.
--
\i sql/include/attack_setup.sql

-- command ALL: SELECT, UPDATE and DELETE see only consenting rows, and new
-- or changed rows must satisfy the policy too.
SET ROLE atk_owner;
SELECT consent.protect('customers', 'id', 'marketing', command => 'ALL');
RESET ROLE;
GRANT SELECT, INSERT, UPDATE, DELETE ON customers TO atk_attacker;
CREATE SCHEMA atk AUTHORIZATION atk_attacker;
SELECT table_name, command FROM consent.protected_tables;

SET ROLE atk_attacker;
CREATE FUNCTION atk.leak(v text) RETURNS boolean
	LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN
	RAISE NOTICE 'leak: %', v;
	RETURN true;
END
$$;
-- UPDATE of every row touches the visible ones only
UPDATE customers SET email = 'pwned@example.org' RETURNING id, name;
-- aimed at gated rows
UPDATE customers SET name = 'pwned' WHERE id = 4;
UPDATE customers SET name = 'pwned' WHERE id IN (5, 6, 7, 8) RETURNING *;
UPDATE customers SET name = 'pwned' WHERE name LIKE 'SECRET%';
-- with a leaky qual, and from a join
UPDATE customers SET name = name WHERE atk.leak(name) AND id >= 3;
UPDATE customers c SET name = 'pwned' FROM generate_series(4, 8) g WHERE c.id = g;
-- DELETE likewise
DELETE FROM customers WHERE id = 4;
DELETE FROM customers WHERE id >= 4 RETURNING *;
DELETE FROM customers WHERE atk.leak(name) AND id = 3 RETURNING id;
-- A visible row cannot be moved onto a subject without consent (the
-- policy's USING expression is its WITH CHECK too) ...
UPDATE customers SET id = 9 WHERE id = 1;
-- ... and a row for a subject without consent cannot be inserted under
-- command ALL (see protect(): INSERT itself is not a command to gate, but
-- FOR ALL checks new rows).
INSERT INTO customers VALUES (10, 'new', 'new@example.org');
-- MERGE: the gated row counts as absent, so WHEN MATCHED never runs on it.
MERGE INTO customers c USING (SELECT 4::bigint AS id) s ON c.id = s.id
	WHEN MATCHED THEN UPDATE SET name = 'pwned'
	WHEN NOT MATCHED THEN DO NOTHING;
-- Probing a gated key with INSERT fails the policy check before the
-- unique check, with the same error as for the absent key 10 above, so it
-- does not even tell that row 4 exists.
INSERT INTO customers VALUES (4, 'probe', 'probe@example.org');
INSERT INTO customers VALUES (4, 'probe', 'probe@example.org')
	ON CONFLICT (id) DO UPDATE SET name = 'pwned';
RESET ROLE;

-- The gated rows are as they were; the attacker changed and deleted only
-- visible ones.
SELECT id, name, email FROM customers ORDER BY id;

-- command UPDATE or DELETE alone gates only that command.
CREATE TABLE notes (subject bigint, note text);
INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 8) g;
ALTER TABLE notes OWNER TO atk_owner;
CREATE TABLE logs (subject bigint, line text);
INSERT INTO logs SELECT g, 'line ' || g FROM generate_series(1, 8) g;
ALTER TABLE logs OWNER TO atk_owner;
SET ROLE atk_owner;
SELECT consent.protect('notes', 'subject', 'marketing', command => 'UPDATE');
SELECT consent.protect('logs', 'subject', 'marketing', command => 'delete');
RESET ROLE;
GRANT SELECT, UPDATE, DELETE ON notes, logs TO atk_attacker;
SET ROLE atk_attacker;
SELECT count(*) AS notes_readable FROM notes;
UPDATE notes SET note = 'changed' RETURNING subject;
SELECT count(*) AS logs_readable FROM logs;
DELETE FROM logs RETURNING subject;
-- UPDATE through a SELECT-visible row that the UPDATE policy hides
UPDATE notes SET note = 'changed' WHERE subject = 4;
RESET ROLE;
SELECT array_agg(subject ORDER BY subject) FILTER (WHERE note = 'changed') AS notes_changed FROM notes;
SELECT array_agg(subject ORDER BY subject) AS logs_left FROM logs;
DROP TABLE notes, logs;

-- Clean up.
RESET ROLE;
DROP SCHEMA IF EXISTS atk CASCADE;
DROP TABLE customers CASCADE;
DROP EXTENSION consent CASCADE;
-- protect() granted USAGE on schema consent, which outlives the extension
DROP OWNED BY atk_owner, atk_attacker;
DROP ROLE atk_owner, atk_attacker;
CREATE EXTENSION consent;
