-- Privileges: an ordinary login role can neither read nor change consent
-- data until it is granted one of the three capabilities, and each
-- capability gives exactly what it names:
--
--   consent_reader    read tables, has/has_all/has_any/mask, status,
--                     decisions, explain
--   consent_recorder  grant, deny, withdraw, confirm, withdraw_all (and
--                     read purposes and notices, to know what to record)
--   consent_admin     define_purpose, retire_purpose, publish_notice (and
--                     read purposes and notices)
--
-- One LOGIN role, created in this transaction, walks through: nothing
-- granted; USAGE on the schema only (the table and function privileges
-- must hold on their own); then each capability in turn.  Every action
-- is tried in every phase: the ones the phase allows must work, all
-- others must fail with SQLSTATE 42501 (insufficient_privilege).  PUBLIC
-- is checked from the catalogs, so objects added later are covered too.
BEGIN;
SELECT plan(206);

-- -----------------------------------------------------------------------
-- Fixtures, as the superuser
-- -----------------------------------------------------------------------

DO $$
BEGIN
	PERFORM consent.define_purpose('pt_news', 'Newsletter');
	PERFORM consent.define_purpose('pt_news.email', 'Newsletter by e-mail');
	PERFORM consent.define_purpose('pt_dbl', 'Double opt-in', requires_confirmation => true);
	PERFORM consent.define_purpose('pt_old', 'To be retired');
	PERFORM consent.publish_notice('pt-notice', 1, 'We send news.', ARRAY['pt_news']::consent.purpose_key[]);
	PERFORM consent.grant('alice', 'pt_news', notice => 'pt-notice');
	PERFORM consent.grant('bob', 'pt_dbl');
END
$$;

-- A fingerprint of everything consent stores, to prove that failed
-- attempts changed nothing.
CREATE TEMP VIEW consent_state AS
	SELECT (SELECT string_agg(p::text, E'\n' ORDER BY p.id) FROM consent.purposes p) AS purposes,
		   (SELECT string_agg(n::text, E'\n' ORDER BY n.id) FROM consent.notices n) AS notices,
		   (SELECT string_agg(r::text, E'\n' ORDER BY r.subject, r.purpose_id) FROM consent.records r) AS records,
		   (SELECT last_value FROM consent.purposes_id_seq) AS purposes_seq,
		   (SELECT last_value FROM consent.notices_id_seq) AS notices_seq;
CREATE TEMP TABLE state_before AS SELECT * FROM consent_state;

-- Every action, with the capabilities that may perform it.  Order
-- matters within a phase: the actions that succeed change the state the
-- next ones see (publish before retire, confirm while still pending).
CREATE TEMP TABLE actions (n serial, what text NOT NULL, allowed text[] NOT NULL, sql text NOT NULL);
INSERT INTO actions (what, allowed, sql) VALUES
	-- reading
	('SELECT from consent.records', '{read}', 'SELECT * FROM consent.records'),
	('SELECT from consent.purposes', '{read,record,admin}', 'SELECT * FROM consent.purposes'),
	('SELECT from consent.notices', '{read,record,admin}', 'SELECT * FROM consent.notices'),
	('call consent.has(text)', '{read}', $$SELECT consent.has('alice'::text, 'pt_news')$$),
	('call consent.has(bigint)', '{read}', $$SELECT consent.has(7::bigint, 'pt_news')$$),
	('call consent.has(uuid)', '{read}',
		$$SELECT consent.has('00000000-0000-0000-0000-000000000007'::uuid, 'pt_news')$$),
	('call consent.has_all', '{read}',
		$$SELECT consent.has_all('alice'::text, ARRAY['pt_news']::consent.purpose_key[])$$),
	('call consent.has_any', '{read}',
		$$SELECT consent.has_any('alice'::text, ARRAY['pt_news']::consent.purpose_key[])$$),
	('call consent.mask', '{read}', $$SELECT consent.mask('x'::text, 'alice'::text, 'pt_news')$$),
	('call consent.status', '{read}', $$SELECT consent.status('alice'::text, 'pt_news')$$),
	('call consent.decisions', '{read}', $$SELECT * FROM consent.decisions('alice'::text)$$),
	('call consent.explain', '{read}', $$SELECT * FROM consent.explain('alice', 'pt_news')$$),
	('call consent.cache_info', '{read}', $$SELECT consent.cache_info()$$),
	('call consent.closest_purposes (protect''s hints)', '{admin}', $$SELECT consent.closest_purposes('pt_new')$$),
	-- recording
	('call consent.grant(text)', '{record}', $$SELECT consent.grant('mallory'::text, 'pt_news')$$),
	('call consent.grant(bigint)', '{record}', $$SELECT consent.grant(42::bigint, 'pt_news')$$),
	('call consent.grant(uuid)', '{record}',
		$$SELECT consent.grant('00000000-0000-0000-0000-000000000042'::uuid, 'pt_news')$$),
	('call consent.deny', '{record}', $$SELECT consent.deny('carol'::text, 'pt_news')$$),
	('call consent.confirm', '{record}', $$SELECT consent.confirm('bob'::text, 'pt_dbl')$$),
	('call consent.withdraw', '{record}', $$SELECT consent.withdraw('dave'::text, 'pt_news')$$),
	('call consent.withdraw_all', '{record}', $$SELECT consent.withdraw_all('alice'::text)$$),
	('call consent.apply_choice (internal)', '{}',
		$$SELECT consent.apply_choice('grant', 'mallory', 'pt_news', NULL, 'api', NULL, NULL, NULL, NULL)$$),
	-- administration
	('call consent.define_purpose', '{admin}', $$SELECT consent.define_purpose('pt_new', 'New purpose')$$),
	('call consent.publish_notice', '{admin}',
		$$SELECT consent.publish_notice('pt-notice', 2, 'We send more news.', ARRAY['pt_news']::consent.purpose_key[])$$),
	('call consent.retire_purpose', '{admin}', $$SELECT consent.retire_purpose('pt_old')$$),
	-- writing the tables directly: nobody, whatever the capability
	('INSERT INTO consent.records', '{}',
		format($$INSERT INTO consent.records (subject, purpose_id, status) VALUES ('mallory', %s, 'granted')$$,
			   (SELECT id FROM consent.purposes WHERE key::text = 'pt_news'))),
	('UPDATE consent.records', '{}', $$UPDATE consent.records SET status = 'granted'$$),
	('DELETE FROM consent.records', '{}', $$DELETE FROM consent.records$$),
	('TRUNCATE consent.records', '{}', $$TRUNCATE consent.records$$),
	('INSERT INTO consent.purposes', '{}', $$INSERT INTO consent.purposes (key, title) VALUES ('pt_evil', 'Evil')$$),
	('UPDATE consent.purposes', '{}', $$UPDATE consent.purposes SET retired_at = NULL$$),
	('DELETE FROM consent.purposes', '{}', $$DELETE FROM consent.purposes$$),
	('INSERT INTO consent.notices', '{}',
		$$INSERT INTO consent.notices (key, version, body, purposes) VALUES ('pt-notice', 9, 'evil', '{pt_news}')$$),
	('UPDATE consent.notices', '{}', $$UPDATE consent.notices SET body = 'evil'$$),
	('DELETE FROM consent.notices', '{}', $$DELETE FROM consent.notices$$),
	('advance consent.purposes_id_seq', '{}', $$SELECT nextval('consent.purposes_id_seq')$$),
	('set consent.notices_id_seq', '{}', $$SELECT setval('consent.notices_id_seq', 1000)$$);
GRANT SELECT ON actions TO PUBLIC;

-- Each phase: what the role may do must work, the rest must be refused.
CREATE TEMP VIEW phase_tests AS
	SELECT a.n, a.what, a.sql, c.cap, c.cap = ANY (a.allowed) AS may
	  FROM actions a
	 CROSS JOIN (VALUES ('none'), ('usage'), ('read'), ('record'), ('admin')) AS c(cap);
GRANT SELECT ON phase_tests TO PUBLIC;

CREATE ROLE consent_t20_user LOGIN;

-- -----------------------------------------------------------------------
-- Phase "none": a fresh login role, nothing granted
-- -----------------------------------------------------------------------

SELECT ok(NOT has_schema_privilege('consent_t20_user', 'consent', 'USAGE'),
		  'a fresh login role has no USAGE on schema consent');
SELECT ok(NOT has_schema_privilege('consent_t20_user', 'consent', 'CREATE'),
		  'a fresh login role has no CREATE on schema consent');

SET ROLE consent_t20_user;
SELECT throws_ok(sql, '42501', NULL, 'no privilege: ' || what || ' is refused')
  FROM phase_tests WHERE cap = 'none' ORDER BY n;
RESET ROLE;

-- -----------------------------------------------------------------------
-- Phase "usage": USAGE on the schema alone opens nothing
-- -----------------------------------------------------------------------

GRANT USAGE ON SCHEMA consent TO consent_t20_user;
SET ROLE consent_t20_user;
SELECT throws_ok(sql, '42501', NULL, 'USAGE on the schema only: ' || what || ' is refused')
  FROM phase_tests WHERE cap = 'usage' ORDER BY n;
RESET ROLE;
REVOKE USAGE ON SCHEMA consent FROM consent_t20_user;

SELECT is((SELECT s::text FROM consent_state s), (SELECT s::text FROM state_before s),
		  'refused attempts changed nothing');

-- -----------------------------------------------------------------------
-- Phase "read": consent_reader
-- -----------------------------------------------------------------------

GRANT consent_reader TO consent_t20_user;
SET ROLE consent_t20_user;
SELECT CASE WHEN may THEN lives_ok(sql, 'consent_reader: ' || what || ' works')
			ELSE throws_ok(sql, '42501', NULL, 'consent_reader: ' || what || ' is refused') END
  FROM phase_tests WHERE cap = 'read' ORDER BY n;
SELECT is(consent.has('alice'::text, 'pt_news'), true, 'consent_reader sees alice''s grant through consent.has');
SELECT is(consent.status('alice'::text, 'pt_news.email'), 'granted'::consent.status,
		  'consent_reader sees the stored status through consent.status');
SELECT is((SELECT count(*)::int FROM consent.records WHERE subject = 'alice'), 1,
		  'consent_reader reads consent.records');
RESET ROLE;
REVOKE consent_reader FROM consent_t20_user;

SELECT is((SELECT s::text FROM consent_state s), (SELECT s::text FROM state_before s),
		  'consent_reader changed nothing');

-- -----------------------------------------------------------------------
-- Phase "record": consent_recorder
-- -----------------------------------------------------------------------

GRANT consent_recorder TO consent_t20_user;
SET ROLE consent_t20_user;
SELECT CASE WHEN may THEN lives_ok(sql, 'consent_recorder: ' || what || ' works')
			ELSE throws_ok(sql, '42501', NULL, 'consent_recorder: ' || what || ' is refused') END
  FROM phase_tests WHERE cap = 'record' ORDER BY n;
RESET ROLE;
REVOKE consent_recorder FROM consent_t20_user;

SELECT results_eq(
	$$SELECT r.subject COLLATE "default", p.key::text, r.status::text FROM consent.records r
		JOIN consent.purposes p ON p.id = r.purpose_id ORDER BY 1, 2$$,
	$$VALUES ('00000000-0000-0000-0000-000000000042', 'pt_news', 'granted'),
			 ('42', 'pt_news', 'granted'),
			 ('alice', 'pt_news', 'withdrawn'),
			 ('bob', 'pt_dbl', 'granted'),
			 ('carol', 'pt_news', 'denied'),
			 ('dave', 'pt_news', 'withdrawn'),
			 ('mallory', 'pt_news', 'granted')$$,
	'consent_recorder recorded exactly the choices it was allowed to');
SELECT is((SELECT s.purposes || s.notices FROM consent_state s),
		  (SELECT s.purposes || s.notices FROM state_before s),
		  'consent_recorder changed no purpose and no notice');

-- -----------------------------------------------------------------------
-- Phase "admin": consent_admin
-- -----------------------------------------------------------------------

CREATE TEMP TABLE records_before AS SELECT records FROM consent_state;
GRANT consent_admin TO consent_t20_user;
SET ROLE consent_t20_user;
SELECT CASE WHEN may THEN lives_ok(sql, 'consent_admin: ' || what || ' works')
			ELSE throws_ok(sql, '42501', NULL, 'consent_admin: ' || what || ' is refused') END
  FROM phase_tests WHERE cap = 'admin' ORDER BY n;
RESET ROLE;
REVOKE consent_admin FROM consent_t20_user;

SELECT ok(EXISTS (SELECT 1 FROM consent.purposes WHERE key::text = 'pt_new' AND retired_at IS NULL),
		  'consent_admin defined a purpose');
SELECT ok(EXISTS (SELECT 1 FROM consent.purposes WHERE key::text = 'pt_old' AND retired_at IS NOT NULL),
		  'consent_admin retired a purpose');
SELECT is((SELECT max(version) FROM consent.notices WHERE key = 'pt-notice'), 2,
		  'consent_admin published a notice version');
SELECT is((SELECT records FROM consent_state), (SELECT records FROM records_before),
		  'consent_admin recorded no choice');

-- -----------------------------------------------------------------------
-- PUBLIC and the capability roles, from the catalogs
-- -----------------------------------------------------------------------

-- A NULL ACL means the built-in default, which for functions includes
-- EXECUTE for PUBLIC; acldefault() makes that explicit.
SELECT is_empty(
	$$SELECT p.oid::regprocedure FROM pg_proc p,
			 aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
		WHERE p.pronamespace = 'consent'::regnamespace
		  AND a.grantee = 0 AND a.privilege_type = 'EXECUTE'
		  AND NOT (p.proname LIKE 'purpose\_key\_%' OR p.proname IN ('parent', 'depth'))
		ORDER BY 1::text$$,
	'PUBLIC may execute no function in consent but the purpose_key support functions');

SELECT is_empty(
	$$SELECT c.oid::regclass, a.privilege_type FROM pg_class c,
			 aclexplode(coalesce(c.relacl, acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char",
													   c.relowner))) a
		WHERE c.relnamespace = 'consent'::regnamespace
		  AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
		  AND a.grantee = 0
		ORDER BY 1::text, 2$$,
	'PUBLIC has no privilege on any table, view or sequence in consent');

SELECT is_empty(
	$$SELECT c.oid::regclass, a.attname, x.privilege_type FROM pg_class c
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND a.attacl IS NOT NULL,
			 aclexplode(a.attacl) x
		WHERE c.relnamespace = 'consent'::regnamespace AND x.grantee = 0$$,
	'PUBLIC has no column privilege in consent');

SELECT ok(NOT has_schema_privilege('public', 'consent', 'USAGE'), 'PUBLIC has no USAGE on schema consent');
SELECT ok(NOT has_schema_privilege('public', 'consent', 'CREATE'), 'PUBLIC has no CREATE on schema consent');

SELECT is_empty(
	$$SELECT rolname FROM pg_roles
		WHERE rolname IN ('consent_admin', 'consent_recorder', 'consent_reader')
		  AND (rolcanlogin OR rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb)$$,
	'the capability roles cannot log in and carry no special attribute');

SELECT is((SELECT count(*)::int FROM pg_roles
			WHERE rolname IN ('consent_admin', 'consent_recorder', 'consent_reader')),
		  3, 'the three capability roles exist');

SELECT is_empty(
	$$SELECT r.rolname FROM pg_roles r
		WHERE r.rolname IN ('consent_admin', 'consent_recorder', 'consent_reader')
		  AND has_schema_privilege(r.oid, 'consent', 'CREATE')$$,
	'no capability role may create objects in schema consent');

SELECT * FROM finish();
ROLLBACK;
