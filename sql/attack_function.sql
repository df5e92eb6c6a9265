--
-- Attack: read gated rows through functions the attacker writes: SQL
-- and PL/pgSQL, SECURITY INVOKER and SECURITY DEFINER (owned by the
-- attacker, so still the attacker), dynamic SQL, LEAKPROOF, triggers.
--
\i sql/include/attack_setup.sql

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
