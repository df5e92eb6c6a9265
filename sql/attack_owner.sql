--
-- Attack: the table owner.  The owner (and views and SECURITY DEFINER
-- functions it owns) reads every row until ALTER TABLE ... FORCE ROW LEVEL
-- SECURITY; then it is gated too.  Superusers and BYPASSRLS roles bypass
-- row security, as PostgreSQL documents.
--
\i sql/include/attack_setup.sql

SET ROLE atk_owner;
SELECT consent.protect('customers', 'id', 'marketing');
RESET ROLE;
GRANT SELECT ON customers TO atk_attacker;
-- The owner offers a view and a SECURITY DEFINER function over the table.
-- Both read as the owner.
CREATE VIEW customer_names AS SELECT id, name FROM customers;
ALTER VIEW customer_names OWNER TO atk_owner;
CREATE FUNCTION customer_count() RETURNS bigint
	LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
	AS $$ SELECT count(*) FROM public.customers $$;
ALTER FUNCTION customer_count() OWNER TO atk_owner;
GRANT SELECT ON customer_names TO atk_attacker;
-- A role with BYPASSRLS.
CREATE ROLE atk_bypass BYPASSRLS;
GRANT SELECT ON customers TO atk_bypass;

-- Without FORCE ROW LEVEL SECURITY the owner is not subject to row
-- security (PostgreSQL's documented behaviour), and so are its view and its
-- SECURITY DEFINER function.
SET ROLE atk_owner;
SELECT array_agg(id ORDER BY id) AS owner_sees FROM customers;
RESET ROLE;
SET ROLE atk_attacker;
SELECT array_agg(id ORDER BY id) AS attacker_sees FROM customers;
SELECT array_agg(id ORDER BY id) AS attacker_via_owner_view FROM customer_names;
SELECT customer_count() AS attacker_via_owner_function;
RESET ROLE;

-- FORCE: the owner is gated too, and with it everything that reads as the
-- owner.
ALTER TABLE customers FORCE ROW LEVEL SECURITY;
SELECT table_name, rls_enabled, rls_forced FROM consent.protected_tables;
SET ROLE atk_owner;
SELECT array_agg(id ORDER BY id) AS forced_owner_sees FROM customers;
SELECT count(*) AS forced_owner_count FROM customers WHERE id = 4;
COPY (SELECT id FROM customers) TO STDOUT;
RESET ROLE;
SET ROLE atk_attacker;
SELECT array_agg(id ORDER BY id) AS attacker_via_owner_view FROM customer_names;
SELECT customer_count() AS attacker_via_owner_function;
RESET ROLE;
-- the forced owner cannot switch row security off for itself either
SET ROLE atk_owner;
SET row_security = off;
SELECT count(*) FROM customers;
RESET row_security;
RESET ROLE;

-- A superuser and a BYPASSRLS role bypass row security: documented
-- PostgreSQL behaviour, FORCE or not.  Never give these to roles that
-- must be gated.
SELECT array_agg(id ORDER BY id) AS superuser_sees FROM customers;
SET ROLE atk_bypass;
SELECT array_agg(id ORDER BY id) AS bypassrls_sees FROM customers;
-- with row_security = off a bypassing role reads without the policy
SET row_security = off;
SELECT count(*) AS bypassrls_row_security_off FROM customers;
RESET row_security;
RESET ROLE;

-- NO FORCE returns to the default.
ALTER TABLE customers NO FORCE ROW LEVEL SECURITY;
SET ROLE atk_owner;
SELECT array_agg(id ORDER BY id) AS owner_sees_again FROM customers;
RESET ROLE;

-- Handing the table to another owner leaves the old owner an ordinary,
-- gated reader.
CREATE ROLE atk_owner2;
ALTER TABLE customers OWNER TO atk_owner2;
GRANT SELECT ON customers TO atk_owner;
SET ROLE atk_owner;
SELECT array_agg(id ORDER BY id) AS old_owner_sees FROM customers;
RESET ROLE;
ALTER TABLE customers OWNER TO atk_owner;
DROP VIEW customer_names;
DROP FUNCTION customer_count();
DROP OWNED BY atk_bypass, atk_owner2;
DROP ROLE atk_bypass, atk_owner2;

-- Clean up.
RESET ROLE;
DROP SCHEMA IF EXISTS atk CASCADE;
DROP TABLE customers CASCADE;
DROP EXTENSION consent CASCADE;
-- protect() granted USAGE on schema consent, which outlives the extension
DROP OWNED BY atk_owner, atk_attacker;
DROP ROLE atk_owner, atk_attacker;
CREATE EXTENSION consent;
