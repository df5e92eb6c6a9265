--
-- Attack: read gated rows through functions the attacker writes: SQL
-- and PL/pgSQL, SECURITY INVOKER and SECURITY DEFINER (owned by the
-- attacker, so still the attacker), dynamic SQL, LEAKPROOF, triggers.
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
CREATE SCHEMA atk AUTHORIZATION atk_attacker;

SET ROLE atk_attacker;
-- SECURITY INVOKER functions the attacker writes run as the attacker
CREATE FUNCTION atk.names_sql() RETURNS SETOF text
	LANGUAGE sql STABLE AS $$ SELECT name FROM public.customers ORDER BY id $$;
CREATE FUNCTION atk.names_plpgsql() RETURNS SETOF text
	LANGUAGE plpgsql AS $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT name FROM public.customers ORDER BY id LOOP
		RETURN NEXT r.name;
	END LOOP;
END
$$;
CREATE FUNCTION atk.name_of(bigint) RETURNS text
	LANGUAGE plpgsql AS $$
DECLARE
	v text;
BEGIN
	EXECUTE 'SELECT name FROM public.customers WHERE id = $1' INTO v USING $1;
	RETURN coalesce(v, '(none)');
END
$$;
SELECT * FROM atk.names_sql();
SELECT * FROM atk.names_plpgsql();
SELECT g, atk.name_of(g) FROM generate_series(1, 8) g ORDER BY g;
-- a scalar SQL function
CREATE FUNCTION atk.count_sql() RETURNS bigint
	LANGUAGE sql AS $$ SELECT count(*) FROM public.customers $$;
SELECT atk.count_sql();

-- A SECURITY DEFINER function owned by the attacker runs as the attacker:
-- still gated.
CREATE FUNCTION atk.names_definer() RETURNS SETOF text
	LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
	AS $$ SELECT name FROM public.customers ORDER BY id $$;
SELECT * FROM atk.names_definer();
SELECT proname, prosecdef, pg_get_userbyid(proowner) AS owner
  FROM pg_proc WHERE proname = 'names_definer';

-- The attacker cannot declare a function LEAKPROOF (only superusers can),
-- so it cannot make the planner run its code before the policy.
CREATE FUNCTION atk.lp(text) RETURNS boolean LANGUAGE sql LEAKPROOF AS $$ SELECT true $$;

-- A trigger is no way in either: the attacker cannot create one on a
-- table it does not own.
CREATE FUNCTION atk.trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER spy BEFORE INSERT ON public.customers FOR EACH ROW EXECUTE FUNCTION atk.trg();

-- Functions called from a query under the bulk map see the same rows.
SET consent.bulk_threshold = 0;
SELECT * FROM atk.names_plpgsql();
SELECT g, atk.name_of(g) FROM generate_series(1, 8) g ORDER BY g;
RESET consent.bulk_threshold;

-- Another role calling the attacker's SECURITY DEFINER function gets the
-- attacker's view, never more.
RESET ROLE;
CREATE ROLE atk_victim;
GRANT USAGE ON SCHEMA atk TO atk_victim;
GRANT SELECT ON customers TO atk_victim;
SET ROLE atk_victim;
SELECT * FROM atk.names_definer();
RESET ROLE;
DROP OWNED BY atk_victim;
DROP ROLE atk_victim;

-- Clean up.
RESET ROLE;
DROP SCHEMA IF EXISTS atk CASCADE;
DROP TABLE customers CASCADE;
DROP EXTENSION consent CASCADE;
-- protect() granted USAGE on schema consent, which outlives the extension
DROP OWNED BY atk_owner, atk_attacker;
DROP ROLE atk_owner, atk_attacker;
CREATE EXTENSION consent;
