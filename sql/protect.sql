--
-- consent.protect / consent.unprotect / consent.protected_tables, and
-- consent.mask in a view: the happy path for every supported subject
-- type, replace semantics, every error with its SQLSTATE, the EXECUTE
-- grants protect() hands out, and what unprotect() leaves behind.
--
\set VERBOSITY terse
DROP EXTENSION IF EXISTS consent CASCADE;
CREATE EXTENSION consent;
SET max_parallel_workers_per_gather = 0;

-- Run a statement, report its SQLSTATE and message instead of failing.
CREATE FUNCTION try_sql(cmd text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE cmd;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
GRANT EXECUTE ON FUNCTION try_sql(text) TO PUBLIC;

SELECT consent.define_purpose('crm', 'Customer relationship') > 0 AS defined;
SELECT consent.define_purpose('crm.calls', 'Phone calls') > 0 AS defined;
SELECT consent.define_purpose('old', 'Old purpose') > 0 AS defined;
SELECT consent.retire_purpose('old');

-- owner: owns the tables and may administer consent; other: administers
-- consent but owns nothing; reader: gated; bystander: not gated.
CREATE ROLE prot_owner;
CREATE ROLE prot_other;
CREATE ROLE prot_reader;
CREATE ROLE prot_bystander;
GRANT consent_admin TO prot_owner, prot_other;

-- One table per supported subject type.  Subjects 1 and 2 consent to crm,
-- 3 refused, 4 has no record.
CREATE TABLE t_text (subject text, v text);
CREATE TABLE t_varchar (subject varchar(40), v text);
CREATE TABLE t_bigint (subject bigint, v text);
CREATE TABLE t_int (subject integer, v text);
CREATE TABLE t_uuid (subject uuid, v text);
CREATE TABLE t_numeric (subject numeric, v text);
CREATE VIEW v_text AS SELECT * FROM t_text;
INSERT INTO t_text SELECT g::text, 'row ' || g FROM generate_series(1, 4) g;
INSERT INTO t_varchar SELECT g::text, 'row ' || g FROM generate_series(1, 4) g;
INSERT INTO t_bigint SELECT g, 'row ' || g FROM generate_series(1, 4) g;
INSERT INTO t_int SELECT g, 'row ' || g FROM generate_series(1, 4) g;
INSERT INTO t_uuid SELECT ('00000000-0000-0000-0000-00000000000' || g)::uuid, 'row ' || g
  FROM generate_series(1, 4) g;
INSERT INTO t_numeric SELECT g, 'row ' || g FROM generate_series(1, 4) g;
DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['t_text', 't_varchar', 't_bigint', 't_int', 't_uuid', 't_numeric', 'v_text'] LOOP
		EXECUTE format('ALTER TABLE %I OWNER TO prot_owner', t);
		EXECUTE format('GRANT SELECT ON %I TO prot_reader, prot_bystander, prot_other', t);
	END LOOP;
END
$$;

SELECT consent.grant('1', 'crm'), consent.grant('2', 'crm'), consent.deny('3', 'crm');
SELECT consent.grant('00000000-0000-0000-0000-000000000001'::uuid, 'crm'),
	   consent.grant('00000000-0000-0000-0000-000000000002'::uuid, 'crm'),
	   consent.deny('00000000-0000-0000-0000-000000000003'::uuid, 'crm');

-- Before: nothing is gated, and the gated role cannot call has().
SET ROLE prot_reader;
SELECT count(*) AS visible_before FROM t_text;
RESET ROLE;
SELECT has_function_privilege('prot_reader', 'consent.has(text, consent.purpose_key)', 'EXECUTE') AS reader_may_call_has;

--
-- Happy path: the owner protects each table, for prot_reader only.
--
SET ROLE prot_owner;
SELECT consent.protect('t_text', 'subject', 'crm', ARRAY['prot_reader']);
SELECT consent.protect('t_varchar', 'subject', 'crm', ARRAY['prot_reader']);
SELECT consent.protect('t_bigint', 'subject', 'crm', ARRAY['prot_reader']);
SELECT consent.protect('t_int', 'subject', 'crm', ARRAY['prot_reader']);
SELECT consent.protect('t_uuid', 'subject', 'crm', ARRAY['prot_reader']);
RESET ROLE;

SELECT table_name, purpose, subject_column, command, roles, rls_enabled, rls_forced, policy_present
  FROM consent.protected_tables ORDER BY table_name, purpose;

-- The policies: one restrictive consent:crm, plus the permissive base.
SELECT c.relname, p.polname, p.polpermissive, p.polcmd,
	   pg_get_expr(p.polqual, p.polrelid) AS qual
  FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
 WHERE c.relname LIKE 't\_%'
 ORDER BY c.relname, p.polname;

-- The gated role sees subjects 1 and 2 only, whatever the subject type.
SET ROLE prot_reader;
SELECT 'text' AS t, array_agg(v ORDER BY v) FROM t_text
UNION ALL SELECT 'varchar', array_agg(v ORDER BY v) FROM t_varchar
UNION ALL SELECT 'bigint', array_agg(v ORDER BY v) FROM t_bigint
UNION ALL SELECT 'integer', array_agg(v ORDER BY v) FROM t_int
UNION ALL SELECT 'uuid', array_agg(v ORDER BY v) FROM t_uuid;
-- a role the policy does not name is not gated
SET ROLE prot_bystander;
SELECT count(*) AS bystander_sees FROM t_text;
RESET ROLE;

-- protect() granted EXECUTE on the has() overloads to the gated role, and
-- to nobody else.
SELECT r.rolname, f.sig,
	   has_function_privilege(r.rolname, f.sig, 'EXECUTE') AS may_execute
  FROM (VALUES ('prot_reader'), ('prot_bystander'), ('prot_other')) r(rolname),
	   (VALUES ('consent.has(text, consent.purpose_key)'),
			   ('consent.has(bigint, consent.purpose_key)'),
			   ('consent.has(uuid, consent.purpose_key)')) f(sig)
 ORDER BY 1, 2;
SELECT has_function_privilege('public', 'consent.has(text, consent.purpose_key)', 'EXECUTE') AS public_may_call_has;
SELECT has_schema_privilege('prot_reader', 'consent', 'USAGE') AS reader_usage,
	   has_schema_privilege('prot_bystander', 'consent', 'USAGE') AS bystander_usage;

-- Consent changes show at once.
SELECT consent.withdraw('2', 'crm');
SELECT consent.grant('4', 'crm');
SET ROLE prot_reader;
SELECT array_agg(subject ORDER BY subject) AS visible_after_changes FROM t_text;
RESET ROLE;

--
-- Replace semantics: protecting again for the same purpose replaces the
-- one policy (here: command ALL, and a second role).
--
SET ROLE prot_owner;
SELECT consent.protect('t_text', 'subject', 'crm', ARRAY['prot_reader', 'prot_bystander'], 'all');
RESET ROLE;
SELECT count(*) AS consent_crm_policies,
	   min(p.polcmd) AS polcmd,
	   min(array_to_string(ARRAY(SELECT rolname FROM pg_roles WHERE oid = ANY (p.polroles) ORDER BY 1), ',')) AS polroles
  FROM pg_policy p WHERE p.polrelid = 't_text'::regclass AND p.polname = 'consent:crm';
SELECT table_name, purpose, command, roles
  FROM consent.protected_tables WHERE table_name = 't_text';
SET ROLE prot_bystander;
SELECT array_agg(subject ORDER BY subject) AS bystander_now_gated FROM t_text;
RESET ROLE;
SELECT has_function_privilege('prot_bystander', 'consent.has(text, consent.purpose_key)', 'EXECUTE') AS bystander_may_call_has;

-- A second purpose on the same table is a second policy; both must hold.
SELECT consent.grant('1', 'crm.calls');
SET ROLE prot_owner;
SELECT consent.protect('t_text', 'subject', 'crm.calls', ARRAY['prot_reader']);
RESET ROLE;
SET ROLE prot_reader;
SELECT array_agg(subject ORDER BY subject) AS needs_both FROM t_text;
RESET ROLE;

--
-- Errors, each with its SQLSTATE.
--
SET ROLE prot_owner;
-- column missing
SELECT try_sql($$SELECT consent.protect('t_text', 'nosuch', 'crm')$$);
-- unsupported type
SELECT try_sql($$SELECT consent.protect('t_numeric', 'subject', 'crm')$$);
-- unknown purpose (the owner is an ordinary role holding consent_admin)
SELECT try_sql($$SELECT consent.protect('t_text', 'subject', 'crm.nosuch')$$);
-- retired purpose
SELECT try_sql($$SELECT consent.protect('t_text', 'subject', 'old')$$);
-- command not SELECT, UPDATE, DELETE or ALL
SELECT try_sql($$SELECT consent.protect('t_text', 'subject', 'crm', ARRAY['prot_reader'], 'INSERT')$$);
SELECT try_sql($$SELECT consent.protect('t_text', 'subject', 'crm', ARRAY['prot_reader'], 'TRUNCATE')$$);
SELECT try_sql($$SELECT consent.protect('t_text', 'subject', 'crm', ARRAY['prot_reader'], '')$$);
-- unknown role
SELECT try_sql($$SELECT consent.protect('t_text', 'subject', 'crm', ARRAY['prot_reader', 'no_such_role'])$$);
-- empty role list
SELECT try_sql($$SELECT consent.protect('t_text', 'subject', 'crm', ARRAY[]::name[])$$);
-- NULL arguments
SELECT try_sql($$SELECT consent.protect(NULL, 'subject', 'crm')$$);
SELECT try_sql($$SELECT consent.protect('t_text', NULL, 'crm')$$);
SELECT try_sql($$SELECT consent.protect('t_text', 'subject', NULL)$$);
SELECT try_sql($$SELECT consent.protect('t_text', 'subject', 'crm', NULL)$$);
SELECT try_sql($$SELECT consent.protect('t_text', 'subject', 'crm', ARRAY['prot_reader'], NULL)$$);
SELECT try_sql($$SELECT consent.unprotect(NULL, 'crm')$$);
SELECT try_sql($$SELECT consent.unprotect('t_text', NULL)$$);
-- not a table
SELECT try_sql($$SELECT consent.protect('v_text', 'subject', 'crm')$$);
-- not protected for that purpose
SELECT try_sql($$SELECT consent.unprotect('t_varchar', 'crm.calls')$$);
RESET ROLE;
-- unknown purpose, called by a superuser
SELECT try_sql($$SELECT consent.protect('t_text', 'subject', 'crm.nosuch')$$);
-- caller not owner (but holding consent_admin)
SET ROLE prot_other;
SELECT try_sql($$SELECT consent.protect('t_text', 'subject', 'crm')$$);
SELECT try_sql($$SELECT consent.unprotect('t_text', 'crm')$$);
RESET ROLE;
-- a role without consent_admin cannot call protect() at all
SET ROLE prot_reader;
SELECT try_sql($$SELECT consent.protect('t_text', 'subject', 'crm')$$);
RESET ROLE;
-- the failed calls changed nothing
SELECT table_name, purpose, command, roles
  FROM consent.protected_tables ORDER BY table_name, purpose;
SELECT count(*) AS policies FROM pg_policy WHERE polrelid = 't_numeric'::regclass;

--
-- unprotect: the policy goes, the view forgets the table, rows are visible
-- again.
--
SET ROLE prot_owner;
SELECT consent.unprotect('t_text', 'crm.calls');
RESET ROLE;
SET ROLE prot_reader;
SELECT array_agg(subject ORDER BY subject) AS only_crm_left FROM t_text;
RESET ROLE;
SET ROLE prot_owner;
SELECT consent.unprotect('t_text', 'crm');
SELECT consent.unprotect('t_varchar', 'crm');
RESET ROLE;
SELECT table_name, purpose FROM consent.protected_tables ORDER BY 1, 2;
SELECT c.relname, count(p.polname) AS policies
  FROM pg_class c LEFT JOIN pg_policy p ON p.polrelid = c.oid
 WHERE c.relname IN ('t_text', 't_varchar', 't_bigint')
 GROUP BY c.relname ORDER BY 1;
SET ROLE prot_reader;
SELECT array_agg(subject ORDER BY subject) AS text_visible_again FROM t_text;
SELECT array_agg(subject ORDER BY subject) AS varchar_visible_again FROM t_varchar;
SELECT array_agg(subject ORDER BY subject) AS bigint_still_gated FROM t_bigint;
RESET ROLE;
-- unprotecting twice is an error
SET ROLE prot_owner;
SELECT try_sql($$SELECT consent.unprotect('t_text', 'crm')$$);
RESET ROLE;

--
-- consent.mask in a view: the value shows only with consent.
--
CREATE TABLE contacts (id bigint, email text, phone text, score integer);
INSERT INTO contacts VALUES (1, 'one@example.org', '+41 1', 10), (2, 'two@example.org', '+41 2', 20),
	(3, 'three@example.org', '+41 3', 30), (4, 'four@example.org', NULL, 40);
CREATE VIEW contacts_masked AS
SELECT id,
	   consent.mask(email, id, 'crm') AS email,
	   consent.mask(phone, id::text, 'crm.calls') AS phone,
	   consent.mask(score, id, 'crm') AS score
  FROM contacts;
SELECT * FROM contacts_masked ORDER BY id;
-- mask keeps the value's type
SELECT pg_typeof(consent.mask(42, '1', 'crm')), pg_typeof(consent.mask(now()::date, 1::bigint, 'crm')),
	   consent.mask('00000000-0000-0000-0000-000000000001'::uuid, '00000000-0000-0000-0000-000000000001'::uuid, 'crm') IS NOT NULL AS uuid_shown,
	   consent.mask('x'::text, '00000000-0000-0000-0000-000000000003'::uuid, 'crm') IS NULL AS uuid_masked;
-- a consent_reader may read the view; a role without it may not call mask
GRANT SELECT ON contacts_masked TO prot_reader, prot_bystander;
GRANT consent_reader TO prot_reader;
SET ROLE prot_reader;
SELECT id, email, phone FROM contacts_masked ORDER BY id;
RESET ROLE;
REVOKE EXECUTE ON FUNCTION consent.has(text, consent.purpose_key), consent.has(bigint, consent.purpose_key),
	consent.has(uuid, consent.purpose_key) FROM prot_bystander;
SET ROLE prot_bystander;
SELECT try_sql($$SELECT * FROM contacts_masked$$);
RESET ROLE;
-- the answer follows consent changes
SELECT consent.withdraw('1', 'crm');
SELECT id, email, score FROM contacts_masked WHERE id = 1;

-- Clean up.
DROP VIEW contacts_masked;
DROP TABLE contacts, t_text, t_varchar, t_bigint, t_int, t_uuid, t_numeric CASCADE;
DROP FUNCTION try_sql(text);
DROP EXTENSION consent CASCADE;
-- protect() granted USAGE on schema consent, which outlives the extension
DROP OWNED BY prot_owner, prot_other, prot_reader, prot_bystander;
DROP ROLE prot_owner, prot_other, prot_reader, prot_bystander;
CREATE EXTENSION consent;
