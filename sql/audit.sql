--
-- The audit trail: one event per change of records, purposes and notices,
-- with the right action, statuses and fields; rollback writes nothing; the
-- audit tables refuse UPDATE, DELETE and TRUNCATE for everyone;
-- consent.last_event_id(); reloads of audited rows; verify_audit() and
-- seals on an untouched trail.
--
\i sql/include/audit_setup.sql

-- The trail in a stable form: no times, transaction ids or hashes.
CREATE VIEW pg_temp.trail AS
SELECT id, coalesce(subject, '(registry)') AS subject, purpose, action,
	   old_status, new_status, notice_key, notice_version, method, source,
	   reason, evidence, actor
  FROM consent.audit_events;

--
-- Registry events: define, publish, retire, update, on the registry chain.
--
SELECT consent.define_purpose('marketing', 'Marketing');
SELECT consent.define_purpose('marketing.email', 'E-mail newsletter', valid_for => '1 year');
SELECT consent.define_purpose('research', 'Research', 'explicit_consent', requires_confirmation => true);
SELECT consent.define_purpose('billing', 'Billing', 'contract');
SELECT consent.publish_notice('privacy', 1, 'We use your e-mail address.',
							  ARRAY['marketing', 'research']::consent.purpose_key[]);
SELECT consent.publish_notice('privacy', 1, 'Wir nutzen Ihre E-Mail-Adresse.',
							  ARRAY['marketing', 'research']::consent.purpose_key[], 'de');
SELECT id, subject, purpose, action, notice_key, notice_version FROM pg_temp.trail ORDER BY id;

-- The notice events carry the body hash of their own locale, the purpose
-- events the purpose row; neither has a status.
SELECT e.id, e.notice_sha256 = n.body_sha256 AS body_hash_matches, e.evidence->>'locale' AS locale,
	   e.evidence ? 'body' AS body_in_evidence
  FROM consent.audit_events e
  JOIN consent.notices n ON n.key = e.notice_key AND n.version = e.notice_version
						AND n.locale = e.evidence->>'locale'
 ORDER BY e.id;
SELECT id, evidence->>'title' AS title, evidence->>'legal_basis' AS legal_basis,
	   evidence->>'valid_for' AS valid_for, old_status IS NULL AND new_status IS NULL AS no_status
  FROM consent.audit_events WHERE action = 'define' ORDER BY id;

--
-- Choices through the API.
--
SET consent.actor = 'agent:7';
SET application_name = 'audit_regress';
SELECT consent.grant('alice', 'marketing.email', 'privacy', 'web_form', 'signup',
					 evidence => '{"ip": "192.0.2.1"}');
RESET consent.actor;
SELECT consent.grant('alice', 'research', 'privacy@1');
SELECT consent.confirm('alice', 'research', 'email_link');
SELECT consent.deny('bob', 'marketing', source => 'banner');
SELECT consent.withdraw('alice', 'marketing', 'moved away');
SELECT consent.grant(42::bigint, 'marketing');
SELECT consent.grant('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, 'marketing');
SELECT id, subject, purpose, action, old_status, new_status, notice_key, notice_version,
	   method, source, reason, evidence, actor
  FROM pg_temp.trail WHERE subject <> '(registry)' ORDER BY id;

-- The session fields, and the notice hash of the first-published locale.
SELECT id, db_user = current_user AS db_user, "session_user" = session_user AS session_user,
	   application_name, client_addr IS NULL AS unix_socket,
	   notice_sha256 = consent.sha256_text('We use your e-mail address.') AS en_body_hash,
	   at <= clock_timestamp() AS at_past, expires_at IS NOT NULL AS has_expiry
  FROM consent.audit_events WHERE subject = 'alice' ORDER BY id;
RESET application_name;
-- the transaction id is the writing transaction's
BEGIN;
SELECT consent.deny('bob', 'marketing');
SELECT xid = pg_current_xact_id() AS this_xact FROM consent.audit_events WHERE id = consent.last_event_id();
ROLLBACK;

-- Each chain links event to event, from 32 zero bytes.
SELECT coalesce(subject, '(registry)') AS chain, count(*) AS events,
	   bool_and(octet_length(hash) = 32) AS hashes,
	   bool_and(prev_hash = coalesce(prev, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)) AS linked
  FROM (SELECT e.*, lag(e.hash) OVER (PARTITION BY e.subject ORDER BY e.id) AS prev
		  FROM consent.audit_events e) x
 GROUP BY subject ORDER BY 1;
SELECT subject, octet_length(secret) AS secret_bytes, erased_at FROM consent.audit_chains ORDER BY subject;

--
-- A rolled-back choice, and a failing one, leave nothing behind.
--
SELECT max(id) AS last_id FROM consent.audit_events \gset
BEGIN;
SELECT consent.grant('dave', 'marketing');
ROLLBACK;
SELECT pg_temp.outcome($$SELECT consent.grant('dave', 'nope')$$);
SELECT pg_temp.outcome($$SELECT consent.grant('dave', 'marketing', 'no-such-notice')$$);
SELECT pg_temp.outcome($$SELECT consent.withdraw('dave', 'billing')$$);
SELECT count(*) AS new_events FROM consent.audit_events WHERE id > :last_id;
SELECT count(*) AS dave_chains FROM consent.audit_chains WHERE subject = 'dave';

--
-- Direct DML by a privileged role is audited too.
--
UPDATE consent.records SET status = 'expired'
 WHERE subject = 'alice' AND purpose_id = (SELECT id FROM consent.purposes WHERE key::text = 'research');
UPDATE consent.records SET status = 'granted', reason = NULL
 WHERE subject = 'bob';
DELETE FROM consent.records WHERE subject = '42';
-- moving a record to another subject leaves one chain and joins another
UPDATE consent.records SET subject = 'carol' WHERE subject = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11';
INSERT INTO consent.records (subject, purpose_id, status, method)
SELECT 'erin', id, 'denied', 'paper' FROM consent.purposes WHERE key::text = 'marketing';
SELECT consent.retire_purpose('billing');
UPDATE consent.purposes SET title = 'Newsletter' WHERE key::text = 'marketing.email';
SELECT id, subject, purpose, action, old_status, new_status, method
  FROM pg_temp.trail WHERE id > :last_id ORDER BY id;

-- TRUNCATE is audited as one delete per row.
SELECT max(id) AS last_id FROM consent.audit_events \gset
BEGIN;
TRUNCATE consent.records;
SELECT subject, purpose, action, old_status, new_status
  FROM pg_temp.trail WHERE id > :last_id ORDER BY subject, purpose;
ROLLBACK;

--
-- Append-only, for every role, the owner (a superuser here) included.
--
SELECT pg_temp.outcome(s) FROM (VALUES
	($$UPDATE consent.audit_events SET reason = 'x' WHERE id = 1$$),
	($$UPDATE consent.audit_events SET reason = 'x' WHERE false$$),
	($$DELETE FROM consent.audit_events$$),
	($$TRUNCATE consent.audit_events$$),
	($$UPDATE consent.audit_chains SET secret = secret$$),
	($$DELETE FROM consent.audit_chains$$),
	($$TRUNCATE consent.seals$$),
	($$DELETE FROM consent.seals$$),
	($$UPDATE consent.audit_key SET key = key$$),
	($$TRUNCATE consent.audit_key CASCADE$$)) AS v(s);
-- even inside a function running as the owner
CREATE FUNCTION public.tamper() RETURNS void LANGUAGE sql SECURITY DEFINER
	AS $$ DELETE FROM consent.audit_events WHERE id = 1 $$;
SELECT pg_temp.outcome('SELECT public.tamper()');
DROP FUNCTION public.tamper();
SELECT count(*) AS events FROM consent.audit_events;

--
-- consent.last_event_id(): the event this backend wrote last in this
-- transaction, restored when a subtransaction rolls back.
--
SELECT consent.last_event_id() IS NULL AS null_outside;
BEGIN;
SELECT consent.last_event_id() IS NULL AS null_before_writing;
SELECT consent.grant('frank', 'marketing');
SELECT consent.last_event_id() = (SELECT max(id) FROM consent.audit_events) AS the_grant;
SELECT consent.last_event_id() AS after_grant \gset
SAVEPOINT s1;
SELECT consent.deny('frank', 'marketing');
SELECT consent.last_event_id() > :after_grant AS the_deny;
ROLLBACK TO s1;
SELECT consent.last_event_id() = :after_grant AS back_to_the_grant;
SAVEPOINT s2;
SELECT consent.withdraw('frank', 'marketing');
RELEASE s2;
SELECT consent.last_event_id() = (SELECT max(id) FROM consent.audit_events) AS released_keeps_it;
COMMIT;
SELECT consent.last_event_id() IS NULL AS null_after_commit;
BEGIN;
SAVEPOINT s3;
SELECT consent.grant('frank', 'marketing');
ROLLBACK TO s3;
SELECT consent.last_event_id() IS NULL AS null_after_rolled_back_only_write;
COMMIT;

--
-- A reload of audited rows (what pg_restore does) writes no events; a
-- backdated row with no history is audited.
--
CREATE TEMP TABLE saved AS SELECT * FROM consent.records;
SELECT max(id) AS last_id FROM consent.audit_events \gset
ALTER TABLE consent.records DISABLE TRIGGER audit;
DELETE FROM consent.records;
ALTER TABLE consent.records ENABLE TRIGGER audit;
INSERT INTO consent.records SELECT * FROM saved;
SELECT count(*) AS events_for_reload FROM consent.audit_events WHERE id > :last_id;
INSERT INTO consent.records (subject, purpose_id, status, method, recorded_at)
SELECT 'gina', id, 'granted', 'import', now() - interval '1 day' FROM consent.purposes WHERE key::text = 'marketing';
SELECT subject, purpose, action, new_status, method FROM pg_temp.trail WHERE id > :last_id;

--
-- An untouched trail verifies, chain by chain and with its seals.
--
SELECT * FROM consent.verify_audit();
SELECT * FROM consent.verify_audit('alice');
SELECT * FROM consent.verify_audit('nobody');
SELECT consent.seal() AS first_seal;
SELECT id, from_event_id, upto_event_id >= (SELECT max(id) FROM consent.audit_events) AS covers_all,
	   events = (SELECT count(*) FROM consent.audit_events) AS all_events,
	   heads = (SELECT count(DISTINCT coalesce(subject, '')) FROM consent.audit_events) AS one_head_per_chain,
	   prev_root = '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea AS genesis
  FROM consent.seals;
SELECT consent.seal() AS nothing_new_same_seal;
SELECT consent.grant('alice', 'marketing');
SELECT consent.seal() AS second_seal;
SELECT s.id, s.from_event_id = p.upto_event_id AS continues, s.prev_root = p.root AS chained,
	   s.events, s.heads
  FROM consent.seals s JOIN consent.seals p ON p.id = s.id - 1;
SELECT * FROM consent.verify_audit();
-- inside a transaction that wrote events, seal() stops below them
BEGIN;
SELECT consent.grant('hank', 'marketing');
SELECT consent.seal() AS still_second_seal;
COMMIT;
SELECT consent.seal() AS third_seal;
SELECT events, heads FROM consent.seals WHERE id = 3;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pg_temp.outcome('SELECT consent.seal()') AS seal_rr;
COMMIT;
SELECT * FROM consent.verify_audit();


-- Leave a fresh extension behind for the files that follow.
SET client_min_messages = warning;
DROP EXTENSION consent CASCADE;
CREATE EXTENSION consent;
RESET client_min_messages;
