--
-- Attack: read gated rows with plain SELECTs (count, where on the key,
-- index and bitmap scans, sampling, cursors, prepared statements,
-- statistics).  A non-owner without BYPASSRLS sees only rows whose
-- subject consents.
--
\set VERBOSITY terse
DROP EXTENSION IF EXISTS consent CASCADE;
CREATE EXTENSION consent;
SET max_parallel_workers_per_gather = 0;

-- The table owner and the attacker: an ordinary role, no BYPASSRLS.
CREATE ROLE atk_owner;
CREATE ROLE atk_attacker;
GRANT consent_admin TO atk_owner;
SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'atk_attacker';

-- Customers 1-3 consent to marketing; 4 refused, 5 withdrew, 6 was
-- granted until yesterday, 7 consented under a notice since materially
-- changed, 8 has no record.  Every row the attacker must not see carries
-- the word SECRET.
SELECT consent.define_purpose('marketing', 'Marketing') > 0 AS defined;
SELECT consent.publish_notice('privacy', 1, 'Privacy notice v1', ARRAY['marketing']::consent.purpose_key[]) > 0 AS published;
CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, email text);
INSERT INTO customers
SELECT g, CASE WHEN g <= 3 THEN 'visible-' ELSE 'SECRET-' END || g,
	   CASE WHEN g <= 3 THEN 'visible' ELSE 'secret' END || g || '@example.org'
  FROM generate_series(1, 8) g;
ALTER TABLE customers OWNER TO atk_owner;
SELECT consent.grant(g, 'marketing') FROM generate_series(1, 3) g;
SELECT consent.deny(4::bigint, 'marketing'), consent.grant(5::bigint, 'marketing'),
	   consent.withdraw(5::bigint, 'marketing'), consent.grant(6::bigint, 'marketing'),
	   consent.grant(7::bigint, 'marketing', 'privacy');
UPDATE consent.records SET expires_at = now() - interval '1 day' WHERE subject = '6';
SELECT consent.publish_notice('privacy', 2, 'Privacy notice v2', ARRAY['marketing']::consent.purpose_key[],
							  material => true) > 0 AS published;
SELECT id, consent.has(id, 'marketing') AS consents FROM customers ORDER BY id;

-- The owner protects the table for everyone (the default role list).
SET ROLE atk_owner;
SELECT consent.protect('customers', 'id', 'marketing');
RESET ROLE;
GRANT SELECT ON customers TO atk_attacker;
ANALYZE customers;

-- The owner still sees every row (row security does not apply to owners
-- unless forced, see attack_owner).
SET ROLE atk_owner;
SELECT count(*) AS owner_sees FROM customers;

SET ROLE atk_attacker;
-- plain select
SELECT * FROM customers ORDER BY id;
-- aggregates
SELECT count(*), min(id), max(id), sum(id), string_agg(name, ',' ORDER BY id) FROM customers;
-- where on the key, one gated id at a time and all together
SELECT * FROM customers WHERE id = 4;
SELECT * FROM customers WHERE id IN (4, 5, 6, 7, 8);
SELECT * FROM customers WHERE name LIKE 'SECRET%' OR email LIKE 'secret%';
SELECT count(*) AS gated_ids_found FROM customers WHERE id BETWEEN 4 AND 8;
-- through the primary key index, and through a bitmap scan
SET enable_seqscan = off;
SELECT * FROM customers WHERE id = 4;
SELECT id FROM customers WHERE id > 0 ORDER BY id;
SET enable_indexscan = off;
SELECT id FROM customers WHERE id IN (1, 4, 7) ORDER BY id;
RESET enable_indexscan;
RESET enable_seqscan;
-- sampling, DISTINCT, window functions, grouping sets
SELECT id FROM customers TABLESAMPLE SYSTEM (100) ORDER BY id;
SELECT DISTINCT left(name, 6) AS prefix FROM customers;
SELECT id, count(*) OVER () AS total FROM customers ORDER BY id;
SELECT left(name, 6) AS prefix, count(*) FROM customers GROUP BY ROLLUP (left(name, 6)) ORDER BY 1;
-- an error raised by a gated row would tell that it exists: 1 / (id - 4)
-- divides by zero only on row 4, which the policy removes first
SELECT count(*) AS no_division_by_zero FROM customers WHERE 1 / (id - 4) IS NOT NULL;
-- the planner's statistics are hidden too (pg_stats hides tables whose
-- row security applies to the caller)
SELECT count(*) AS stats_rows FROM pg_stats WHERE tablename = 'customers';
-- a cursor fetches the same rows
BEGIN;
DECLARE c CURSOR FOR SELECT id FROM customers ORDER BY id;
FETCH ALL FROM c;
COMMIT;
-- a prepared statement, executed more than five times so that a generic
-- plan is used too
PREPARE one(bigint) AS SELECT name FROM customers WHERE id = $1;
EXECUTE one(4); EXECUTE one(4); EXECUTE one(4); EXECUTE one(4); EXECUTE one(4);
EXECUTE one(4); EXECUTE one(4); EXECUTE one(1);
DEALLOCATE one;
-- the plan shows the policy as a filter
EXPLAIN (COSTS OFF) SELECT * FROM customers WHERE id = 4;
-- both cache modes give the same answer
SET consent.bulk_threshold = 0;
SELECT array_agg(id ORDER BY id) AS bulk_map FROM customers;
SET consent.bulk_threshold = -1;
SELECT array_agg(id ORDER BY id) AS probes FROM customers;
RESET consent.bulk_threshold;
-- and the attacker cannot turn row security off
SET row_security = off;
SELECT * FROM customers WHERE id = 4;
RESET row_security;
RESET ROLE;

-- Consent given later opens the row at once; withdrawal closes it again.
SELECT consent.grant(8::bigint, 'marketing');
SET ROLE atk_attacker;
SELECT array_agg(id ORDER BY id) AS after_grant_8 FROM customers;
RESET ROLE;
SELECT consent.withdraw(8::bigint, 'marketing');
SET ROLE atk_attacker;
SELECT array_agg(id ORDER BY id) AS after_withdraw_8 FROM customers;

-- Clean up.
RESET ROLE;
DROP SCHEMA IF EXISTS atk CASCADE;
DROP TABLE customers CASCADE;
DROP EXTENSION consent CASCADE;
-- protect() granted USAGE on schema consent, which outlives the extension
DROP OWNED BY atk_owner, atk_attacker;
DROP ROLE atk_owner, atk_attacker;
CREATE EXTENSION consent;
