-- The audit trail's contract: tables, columns, triggers, functions, the
-- BI views' plain types and comments, pg_dump registration, privileges of
-- the three capabilities, and current_consents against consent.explain()
-- on a random history.
BEGIN;
SELECT plan(71);

-- -----------------------------------------------------------------------
-- Tables and columns
-- -----------------------------------------------------------------------
SELECT has_table('consent', t, format('table consent.%s exists', t))
  FROM unnest(ARRAY['audit_events', 'audit_chains', 'seals', 'audit_key', 'activity_rollup']) AS t
 ORDER BY t;

SELECT results_eq(
	$$SELECT a.attname::text COLLATE "default", format_type(a.atttypid, a.atttypmod)
		FROM pg_attribute a WHERE a.attrelid = 'consent.audit_events'::regclass
		 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum$$,
	$$VALUES ('id', 'bigint'), ('at', 'timestamp with time zone'), ('xid', 'xid8'),
			 ('subject', 'text'), ('purpose', 'text'), ('action', 'text'),
			 ('old_status', 'consent.status'), ('new_status', 'consent.status'),
			 ('notice_key', 'text'), ('notice_version', 'integer'), ('notice_sha256', 'bytea'),
			 ('expires_at', 'timestamp with time zone'), ('row_stamp', 'timestamp with time zone'),
			 ('method', 'text'), ('source', 'text'), ('reason', 'text'), ('evidence', 'jsonb'),
			 ('db_user', 'text'), ('session_user', 'text'), ('application_name', 'text'),
			 ('client_addr', 'inet'), ('actor', 'text'), ('redactions', 'jsonb'),
			 ('prev_hash', 'bytea'), ('hash', 'bytea')$$,
	'consent.audit_events has the agreed columns, in order');
SELECT col_is_pk('consent', 'audit_events', 'id', 'audit_events.id is the primary key');
SELECT col_is_pk('consent', 'audit_chains', 'subject', 'audit_chains.subject is the primary key');
SELECT has_index('consent', 'audit_events', 'audit_events_subject_idx', ARRAY['subject', 'id'],
				 'audit_events has an index on (subject, id)');
SELECT is((SELECT seqcache FROM pg_sequence WHERE seqrelid = 'consent.audit_events_id_seq'::regclass),
		  1::bigint, 'the event id sequence hands out ids one at a time (CACHE 1)');

-- -----------------------------------------------------------------------
-- Triggers
-- -----------------------------------------------------------------------
SELECT trigger_is('consent', t, 'audit', 'consent', 'audit_trigger',
				  format('consent.%s has the audit trigger', t))
  FROM unnest(ARRAY['notices', 'purposes', 'records']) AS t ORDER BY t;
SELECT is_empty(
	$$SELECT tgrelid::regclass FROM pg_trigger
		WHERE tgname = 'audit' AND tgrelid IN ('consent.records'::regclass,
			  'consent.purposes'::regclass, 'consent.notices'::regclass)
		  AND tgtype <> (1 | 4 | 8 | 16)$$,
	'the audit triggers are AFTER INSERT OR UPDATE OR DELETE ... FOR EACH ROW');
SELECT trigger_is('consent', t, 'audit_truncate', 'consent', 'audit_trigger',
				  format('consent.%s audits TRUNCATE', t))
  FROM unnest(ARRAY['notices', 'purposes', 'records']) AS t ORDER BY t;
SELECT trigger_is('consent', t, 'append_only', 'consent', 'audit_guard',
				  format('consent.%s is guarded', t))
  FROM unnest(ARRAY['audit_chains', 'audit_events', 'audit_key', 'seals']) AS t ORDER BY t;
-- Row triggers fire in name order: "audit" comes before an "outbox" trigger.
SELECT ok('audit' < 'outbox' COLLATE "C", 'the audit trigger sorts before an outbox trigger');

-- -----------------------------------------------------------------------
-- Functions
-- -----------------------------------------------------------------------
SELECT function_returns('consent', 'last_event_id', ARRAY[]::text[], 'bigint');
SELECT volatility_is('consent', 'last_event_id', ARRAY[]::text[], 'volatile');
SELECT function_returns('consent', 'seal', ARRAY[]::text[], 'bigint');
SELECT function_returns('consent', 'erase_subject', ARRAY['text', 'text'], 'bigint');
SELECT function_returns('consent', 'receipt', ARRAY['bigint'], 'jsonb');
SELECT function_returns('consent', 'export_subject', ARRAY['text'], 'jsonb');
SELECT function_returns('consent', 'verify_audit', ARRAY['text'], 'record');
SELECT is((SELECT pg_get_function_arguments('consent.verify_audit(text)'::regprocedure)),
		  'subject text DEFAULT NULL::text, OUT ok boolean, OUT bad_event_id bigint, OUT bad_seal_id bigint, '
		  'OUT reason text, OUT events_checked bigint, OUT seals_checked bigint',
		  'verify_audit(subject DEFAULT NULL) returns ok, the bad event or seal, and why');
SELECT function_returns('consent', 'expiring', ARRAY['interval'], 'setof record');

-- -----------------------------------------------------------------------
-- BI views: plain SQL types, every column commented
-- -----------------------------------------------------------------------
SELECT has_view('consent', v, format('view consent.%s exists', v))
  FROM unnest(ARRAY['activity_daily', 'audit_trail', 'current_consents', 'purpose_summary']) AS v
 ORDER BY v;
SELECT is_empty(
	$$SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
		FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
	   WHERE c.oid IN ('consent.audit_trail'::regclass, 'consent.current_consents'::regclass,
					   'consent.purpose_summary'::regclass, 'consent.activity_daily'::regclass)
		 AND a.atttypid NOT IN ('text'::regtype, 'bigint'::regtype, 'numeric'::regtype,
								'timestamptz'::regtype, 'boolean'::regtype, 'jsonb'::regtype)$$,
	'the BI views use only text, bigint, numeric, timestamptz, boolean and jsonb');
SELECT is_empty(
	$$SELECT t::regtype FROM pg_proc p, unnest(p.proallargtypes) t
	   WHERE p.oid = 'consent.expiring(interval)'::regprocedure AND t <> 'interval'::regtype
		 AND t NOT IN ('text'::regtype, 'bigint'::regtype, 'numeric'::regtype,
					   'timestamptz'::regtype, 'boolean'::regtype, 'jsonb'::regtype)$$,
	'consent.expiring() returns only plain SQL types');
SELECT is_empty(
	$$SELECT c.relname, a.attname
		FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
	   WHERE c.oid IN ('consent.audit_trail'::regclass, 'consent.current_consents'::regclass,
					   'consent.purpose_summary'::regclass, 'consent.activity_daily'::regclass)
		 AND coalesce(col_description(c.oid, a.attnum), '') = ''$$,
	'every column of the BI views has a comment');
SELECT is_empty(
	$$SELECT v FROM unnest(ARRAY['consent.audit_trail', 'consent.current_consents',
								 'consent.purpose_summary', 'consent.activity_daily']) v
	   WHERE coalesce(obj_description(v::regclass, 'pg_class'), '') = ''$$,
	'every BI view has a comment');

-- -----------------------------------------------------------------------
-- pg_dump: the trail is dumped, the pseudonymisation key is not
-- -----------------------------------------------------------------------
SELECT set_has(
	$$SELECT c::regclass::text FROM pg_extension e, unnest(e.extconfig) c WHERE e.extname = 'consent'$$,
	$$VALUES ('consent.audit_events'), ('consent.audit_events_id_seq'), ('consent.audit_chains'),
			 ('consent.seals'), ('consent.seals_id_seq'), ('consent.activity_rollup')$$,
	'the audit tables and sequences are registered with pg_extension_config_dump');
SELECT ok(NOT EXISTS (SELECT 1 FROM pg_extension e, unnest(e.extconfig) c
					   WHERE e.extname = 'consent' AND c = 'consent.audit_key'::regclass),
		  'consent.audit_key is deliberately not dumped');

-- -----------------------------------------------------------------------
-- Privileges
-- -----------------------------------------------------------------------
SELECT table_privs_are('consent', v, 'consent_reader', ARRAY['SELECT'],
					   format('consent_reader may read consent.%s', v))
  FROM unnest(ARRAY['activity_daily', 'audit_trail', 'current_consents', 'purpose_summary', 'seals']) AS v
 ORDER BY v;
SELECT is_empty(
	$$SELECT c.relname, r.rolname, p.privilege_type
		FROM pg_class c
		CROSS JOIN (VALUES ('consent_reader'), ('consent_recorder'), ('consent_admin'), ('public')) r(rolname)
		CROSS JOIN (VALUES ('SELECT'), ('INSERT'), ('UPDATE'), ('DELETE'), ('TRUNCATE')) p(privilege_type)
	   WHERE c.oid IN ('consent.audit_chains'::regclass, 'consent.audit_key'::regclass,
					   'consent.audit_events'::regclass, 'consent.activity_rollup'::regclass)
		 AND has_table_privilege(r.rolname, c.oid, p.privilege_type)$$,
	'no capability (nor PUBLIC) may touch the audit tables directly');
SELECT ok(has_function_privilege('consent_reader', f, 'EXECUTE'), format('consent_reader may call %s', f))
  FROM unnest(ARRAY['consent.verify_audit(text)', 'consent.receipt(bigint)', 'consent.export_subject(text)',
					'consent.expiring(interval)']) AS f ORDER BY f;
SELECT ok(has_function_privilege('consent_admin', f, 'EXECUTE'), format('consent_admin may call %s', f))
  FROM unnest(ARRAY['consent.seal()', 'consent.erase_subject(text,text)', 'consent.pseudonym(text)']) AS f
 ORDER BY f;
SELECT is_empty(
	$$SELECT r.rolname, f FROM (VALUES ('consent_reader'), ('consent_recorder'), ('public')) r(rolname),
			 unnest(ARRAY['consent.seal()', 'consent.erase_subject(text,text)', 'consent.pseudonym(text)',
						  'consent.audit_erase(text,text)',
						  'consent.audit_event_hash(consent.audit_events,bytea)']) f
	   WHERE has_function_privilege(r.rolname, f::regprocedure, 'EXECUTE')$$,
	'only consent_admin may seal, erase or compute pseudonyms; nobody calls the internals');

-- What a login role can do with each capability.
CREATE ROLE pgtap_audit_reader LOGIN IN ROLE consent_reader;
CREATE ROLE pgtap_audit_recorder LOGIN IN ROLE consent_recorder;
CREATE ROLE pgtap_audit_nobody LOGIN;
SELECT consent.define_purpose('pgtap_a', 'Purpose A');
SET ROLE pgtap_audit_recorder;
SELECT is(consent.grant('pgtap_subject', 'pgtap_a'), 'granted', 'a recorder records a choice');
SELECT ok(consent.last_event_id() IS NOT NULL, 'and sees the id of the event it wrote');
SELECT consent.last_event_id() AS recorder_event \gset
SELECT throws_ok('SELECT * FROM consent.audit_trail', '42501', NULL, 'a recorder cannot read the trail');
RESET ROLE;
SELECT is((SELECT db_user || ' ' || "session_user" FROM consent.audit_events WHERE id = :recorder_event),
		  'pgtap_audit_recorder ' || session_user, 'the event names the role that called the API');
SET ROLE pgtap_audit_reader;
SELECT is((SELECT action FROM consent.audit_trail WHERE id = :recorder_event), 'grant', 'a reader reads the trail');
SELECT ok((SELECT ok FROM consent.verify_audit('pgtap_subject')), 'a reader verifies a chain');
SELECT throws_ok('SELECT * FROM consent.audit_chains', '42501', NULL, 'a reader cannot see the chain secrets');
SELECT throws_ok('SELECT * FROM consent.audit_key', '42501', NULL, 'nor the pseudonymisation key');
SELECT throws_ok($$SELECT consent.erase_subject('pgtap_subject', 'x')$$, '42501', NULL, 'nor erase');
SELECT throws_ok('SELECT consent.seal()', '42501', NULL, 'nor seal');
RESET ROLE;
SET ROLE pgtap_audit_nobody;
SELECT throws_ok('SELECT * FROM consent.audit_trail', '42501', NULL, 'a role without a capability reads nothing');
RESET ROLE;

-- -----------------------------------------------------------------------
-- current_consents against consent.explain() on a random history
-- -----------------------------------------------------------------------
SELECT setseed(0.4242);
SELECT consent.define_purpose(k::consent.purpose_key, initcap(k), b::consent.legal_basis)
  FROM (VALUES ('pgtap_m', 'consent'), ('pgtap_m.email', 'consent'), ('pgtap_m.email.weekly', 'consent'),
			   ('pgtap_r', 'explicit_consent'), ('pgtap_li', 'legitimate_interests')) AS v(k, b);
SELECT consent.publish_notice('pgtap_n', 1, 'v1', ARRAY['pgtap_m']::consent.purpose_key[]);
DO $$
DECLARE
	keys text[] := ARRAY['pgtap_m', 'pgtap_m.email', 'pgtap_m.email.weekly', 'pgtap_r', 'pgtap_li'];
	s text;
	k text;
	x float8;
BEGIN
	FOR i IN 1..300 LOOP
		s := 'pgtap_s' || (1 + floor(random() * 40))::int;
		k := keys[1 + floor(random() * 5)::int];
		x := random();
		IF x < 0.45 AND k <> 'pgtap_li' THEN
			PERFORM consent.grant(s, k::consent.purpose_key,
								  CASE WHEN k LIKE 'pgtap_m%' AND random() < 0.5 THEN 'pgtap_n' END,
								  expires_at => CASE WHEN random() < 0.3 THEN now() + interval '1 day' END);
		ELSIF x < 0.7 THEN
			PERFORM consent.deny(s, k::consent.purpose_key);
		ELSE
			PERFORM consent.withdraw(s, k::consent.purpose_key);
		END IF;
	END LOOP;
END
$$;
-- some grants lapse, a material notice version supersedes others, a
-- purpose retires
UPDATE consent.records SET expires_at = now() - interval '1 hour'
 WHERE expires_at IS NOT NULL AND subject IN ('pgtap_s1', 'pgtap_s2', 'pgtap_s3', 'pgtap_s4', 'pgtap_s5');
SELECT consent.publish_notice('pgtap_n', 2, 'v2', ARRAY['pgtap_m']::consent.purpose_key[], material => true);
SELECT consent.retire_purpose('pgtap_m.email.weekly');
SELECT cmp_ok((SELECT count(*)::int FROM consent.current_consents WHERE subject LIKE 'pgtap_s%'), '>', 100,
			  'the random history left over a hundred records');
SELECT cmp_ok((SELECT count(DISTINCT reason)::int FROM consent.current_consents WHERE subject LIKE 'pgtap_s%'), '>=', 6,
			  'with every kind of reason');
SELECT is_empty(
	$$SELECT c.subject, c.purpose, c.allowed, c.reason, e.allowed, e.reason
		FROM consent.current_consents c
	   CROSS JOIN LATERAL consent.explain(c.subject, c.purpose::consent.purpose_key) e
	   WHERE c.subject LIKE 'pgtap_s%'
		 AND (e.allowed IS DISTINCT FROM c.allowed OR e.reason IS DISTINCT FROM c.reason
			  OR e.status IS DISTINCT FROM c.status)$$,
	'current_consents gives the decision of consent.explain() for every record');
SELECT is((SELECT count(*) FROM consent.audit_events WHERE subject LIKE 'pgtap_s%'),
		  (SELECT count(*) FROM consent.audit_events WHERE subject LIKE 'pgtap_s%' AND action IN
				('grant', 'deny', 'withdraw', 'confirm', 'expire')),
		  'every event of the random history is a choice');
SELECT ok((SELECT ok FROM consent.verify_audit()), 'and the whole trail verifies');

SELECT * FROM finish();
ROLLBACK;
