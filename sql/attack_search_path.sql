--
-- Attack: search_path.  The attacker plants its own has() first on the
-- search_path (its schema, pg_temp); the policy still calls consent.has,
-- because it stored the function by OID, and protect() pins its own
-- search_path even when its caller's is hostile.
--
\i sql/include/attack_setup.sql

GRANT SELECT ON customers TO atk_attacker;
CREATE SCHEMA atk AUTHORIZATION atk_attacker;
GRANT USAGE ON SCHEMA atk TO PUBLIC;

-- The attacker plants look-alikes of has() that always say yes in its own
-- schema.
SET ROLE atk_attacker;
CREATE FUNCTION atk.has(subject bigint, purpose text) RETURNS boolean
	LANGUAGE sql AS $$ SELECT true $$;
CREATE FUNCTION atk.has(subject anyelement, purpose anyelement) RETURNS boolean
	LANGUAGE sql AS $$ SELECT true $$;
RESET ROLE;

-- The owner protects the table while its search_path puts the attacker's
-- schema first: protect() pins its own search_path and names consent.has.
SET ROLE atk_owner;
SET search_path = atk, public;
SELECT consent.protect('customers', 'id', 'marketing');
RESET search_path;
RESET ROLE;
SELECT pg_get_expr(p.polqual, p.polrelid) AS qual
  FROM pg_policy p WHERE p.polname = 'consent:marketing';
-- the policy stored the function by OID: it depends on consent.has(bigint, ...)
SELECT d.refobjid::regprocedure AS policy_calls
  FROM pg_depend d JOIN pg_policy p ON d.classid = 'pg_policy'::regclass AND d.objid = p.oid
 WHERE p.polname = 'consent:marketing' AND d.refclassid = 'pg_proc'::regclass;

SET ROLE atk_attacker;
-- Now that the policy applies to PUBLIC, the attacker may use the consent
-- types, and plants exact look-alikes too.
CREATE FUNCTION atk.has(subject bigint, purpose consent.purpose_key) RETURNS boolean
	LANGUAGE sql AS $$ SELECT true $$;
CREATE FUNCTION atk.has(subject text, purpose consent.purpose_key) RETURNS boolean
	LANGUAGE sql AS $$ SELECT true $$;
-- it cannot put them into schema consent
CREATE FUNCTION consent.has(subject bigint, purpose text) RETURNS boolean
	LANGUAGE sql AS $$ SELECT true $$;
-- the attacker's schema first on the search_path
SET search_path = atk, public, consent;
SELECT has(4::bigint, 'marketing'::consent.purpose_key) AS unqualified_has_is_planted;
SELECT consent.has(4::bigint, 'marketing') AS consent_has;
SELECT array_agg(id ORDER BY id) AS with_atk_first FROM customers;
SELECT * FROM customers WHERE id = 4;
-- a temporary look-alike, pg_temp first
CREATE FUNCTION pg_temp.has(subject bigint, purpose consent.purpose_key) RETURNS boolean
	LANGUAGE sql AS $$ SELECT true $$;
SET search_path = pg_temp, atk, public;
SELECT array_agg(id ORDER BY id) AS with_pg_temp_first FROM customers;
DROP FUNCTION pg_temp.has(bigint, consent.purpose_key);
-- and with an empty search_path
SET search_path = '';
SELECT array_agg(id ORDER BY id) AS with_empty_path FROM public.customers;
RESET search_path;
-- nor can the attacker rewrite or drop the policy, or turn RLS off
ALTER POLICY "consent:marketing" ON customers USING (true);
DROP POLICY "consent:marketing" ON customers;
ALTER TABLE customers DISABLE ROW LEVEL SECURITY;
-- and protect()/unprotect() are not the attacker's to call
SELECT consent.unprotect('customers', 'marketing');
SELECT consent.protect('customers', 'id', 'marketing', ARRAY['atk_owner']);
SELECT array_agg(id ORDER BY id) AS still_gated FROM customers;
RESET ROLE;
SELECT count(*) AS consent_policies FROM pg_policy WHERE polname = 'consent:marketing';

-- Clean up.
RESET ROLE;
DROP SCHEMA IF EXISTS atk CASCADE;
DROP TABLE customers CASCADE;
DROP EXTENSION consent CASCADE;
-- protect() granted USAGE on schema consent, which outlives the extension
DROP OWNED BY atk_owner, atk_attacker;
DROP ROLE atk_owner, atk_attacker;
CREATE EXTENSION consent;
