--
-- Attack: leaky functions and operators in WHERE (and elsewhere) that
-- RAISE NOTICE their arguments.  The planner evaluates the policy qual
-- before any qual that is not leakproof, so no NOTICE shows a gated row.
--
\i sql/include/attack_setup.sql

SET ROLE atk_owner;
SELECT consent.protect('customers', 'id', 'marketing');
RESET ROLE;
GRANT SELECT ON customers TO atk_attacker;
CREATE SCHEMA atk AUTHORIZATION atk_attacker;
ANALYZE customers;

SET ROLE atk_attacker;
-- Leaky functions: cheap (so the planner would like to run them first),
-- not leakproof, and telling everything they see.
CREATE FUNCTION atk.leak(v text) RETURNS boolean
	LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN
	RAISE NOTICE 'leak: %', v;
	RETURN true;
END
$$;
CREATE FUNCTION atk.leak_row(r public.customers) RETURNS boolean
	LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN
	RAISE NOTICE 'leak row: %', r;
	RETURN true;
END
$$;
CREATE FUNCTION atk.leak_op(a text, b text) RETURNS boolean
	LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN
	RAISE NOTICE 'leak op: %', a;
	RETURN a <> b;
END
$$;
CREATE OPERATOR atk.<<< (FUNCTION = atk.leak_op, LEFTARG = text, RIGHTARG = text,
						 RESTRICT = eqsel);
CREATE FUNCTION atk.leak_int(v bigint) RETURNS boolean
	LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN
	RAISE NOTICE 'leak id: %', v;
	RETURN true;
END
$$;

-- Control: the functions do leak where no policy applies (the owner is
-- not subject to row security), so silence below means something.
RESET ROLE;
GRANT USAGE ON SCHEMA atk TO atk_owner;
SET ROLE atk_owner;
SELECT count(*) AS owner_rows FROM customers WHERE atk.leak(name);
SET ROLE atk_attacker;

-- Only the names of visible rows may appear in a NOTICE.
SELECT id FROM customers WHERE atk.leak(name) ORDER BY id;
SELECT id FROM customers WHERE atk.leak_row(customers) ORDER BY id;
SELECT id FROM customers WHERE name OPERATOR(atk.<<<) 'x' ORDER BY id;
-- aimed at one gated row, by the key (an index scan may apply id = 4 first,
-- which reveals nothing; the leaky qual still comes after the policy)
SELECT id FROM customers WHERE id = 4 AND atk.leak(name);
SET enable_seqscan = off;
SELECT id FROM customers WHERE id = 4 AND atk.leak(name);
SELECT id FROM customers WHERE id >= 4 AND atk.leak_int(id);
RESET enable_seqscan;
-- in a join condition, an OR, a subquery in FROM, and a CTE
SELECT c.id FROM customers c JOIN generate_series(1, 8) g ON c.id = g AND atk.leak(c.name) ORDER BY 1;
SELECT id FROM customers WHERE atk.leak(name) OR atk.leak(email) ORDER BY id;
SELECT id FROM (SELECT * FROM customers) s WHERE atk.leak(s.email) ORDER BY id;
WITH c AS (SELECT * FROM customers) SELECT id FROM c WHERE atk.leak_int(c.id) ORDER BY id;
-- in the select list, ORDER BY, GROUP BY, HAVING and an aggregate filter
SELECT atk.leak(name) FROM customers ORDER BY id;
SELECT id FROM customers ORDER BY atk.leak(name), id;
SELECT count(*) FILTER (WHERE atk.leak(email)) FROM customers;
SELECT left(name, 3) FROM customers GROUP BY left(name, 3) HAVING atk.leak(min(name));
-- The plan shows why: the policy qual comes first, though it costs more.
EXPLAIN (COSTS OFF) SELECT id FROM customers WHERE atk.leak(name);
EXPLAIN (COSTS OFF) SELECT id FROM customers WHERE name OPERATOR(atk.<<<) 'x';
-- Same under the bulk map and under probes.
SET consent.bulk_threshold = 0;
SELECT id FROM customers WHERE atk.leak(name) ORDER BY id;
SET consent.bulk_threshold = -1;
SELECT id FROM customers WHERE atk.leak(name) ORDER BY id;
RESET consent.bulk_threshold;
RESET ROLE;

-- Clean up.
RESET ROLE;
DROP SCHEMA IF EXISTS atk CASCADE;
DROP TABLE customers CASCADE;
DROP EXTENSION consent CASCADE;
-- protect() granted USAGE on schema consent, which outlives the extension
DROP OWNED BY atk_owner, atk_attacker;
DROP ROLE atk_owner, atk_attacker;
CREATE EXTENSION consent;
