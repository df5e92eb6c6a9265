--
-- Attack: read gated rows with plain SELECTs (count, where on the key,
-- index and bitmap scans, sampling, cursors, prepared statements,
-- statistics).  A non-owner without BYPASSRLS sees only rows whose
-- subject consents.
--
\i sql/include/attack_setup.sql

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
