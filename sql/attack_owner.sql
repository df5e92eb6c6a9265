--
-- Attack: the table owner.  The owner (and views and SECURITY DEFINER
-- functions it owns) reads every row until ALTER TABLE ... FORCE ROW LEVEL
-- SECURITY; then it is gated too.  Superusers and BYPASSRLS roles bypass
-- row security, as PostgreSQL documents.
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
