--
-- Recording choices: consent.grant, deny, withdraw, confirm, withdraw_all
-- and their bigint and uuid overloads; what they store in consent.records
-- and return; consent.status and consent.decisions.
--
-- Runs in a database of its own (see registry.sql).
--
\set origdb :DBNAME
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_consent_recording WITH (FORCE);
RESET client_min_messages;
CREATE DATABASE regress_consent_recording
	TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';
-- The settings pg_regress gives its own database, for stable output.
ALTER DATABASE regress_consent_recording SET lc_messages TO 'C';
ALTER DATABASE regress_consent_recording SET lc_monetary TO 'C';
ALTER DATABASE regress_consent_recording SET lc_numeric TO 'C';
ALTER DATABASE regress_consent_recording SET lc_time TO 'C';
ALTER DATABASE regress_consent_recording SET bytea_output TO 'hex';
ALTER DATABASE regress_consent_recording SET timezone_abbreviations TO 'Default';
\c regress_consent_recording
CREATE EXTENSION consent;
SET search_path = public, consent;
\set VERBOSITY terse

SELECT consent.define_purpose('newsletter', 'Newsletter');
SELECT consent.define_purpose('newsletter.weekly', 'Weekly newsletter');
SELECT consent.define_purpose('newsletter.weekly.digest', 'Weekly digest');
SELECT consent.define_purpose('newsletter.partners', 'Partner offers');
SELECT consent.define_purpose('profiling', 'Profiling', valid_for => '1 year');
SELECT consent.define_purpose('mailing', 'Postal mailing', valid_for => '30 days',
							  requires_confirmation => true);
SELECT consent.define_purpose('analytics', 'Analytics', 'legitimate_interests');
SELECT consent.define_purpose('billing', 'Billing', 'contract');
SELECT consent.publish_notice('privacy', 1, 'Privacy notice, first version.',
							  '{newsletter,profiling,mailing}');

-- The records, readably: the session user (whoever runs the suite) is
-- shown as such.
CREATE TEMP VIEW rec AS
SELECT r.subject, p.key AS purpose, r.status,
	   r.notice_key || '@' || r.notice_version AS notice,
	   r.method, r.source,
	   CASE WHEN r.actor = session_user THEN '(session user)' ELSE r.actor END AS actor,
	   r.reason, r.evidence
  FROM consent.records r JOIN consent.purposes p ON p.id = r.purpose_id;

--
-- grant returns the stored status.  Defaults: no notice, method 'api', no
-- source, no expiry (the purpose has no default validity), no evidence,
-- the session user as actor.  effective_at is the transaction's time.
--
BEGIN;
SELECT consent.grant('u1', 'newsletter');
SELECT *, (SELECT effective_at = now() AND expires_at IS NULL
			 AND recorded_at >= effective_at
			 FROM consent.records WHERE subject = 'u1') AS times_ok
  FROM rec WHERE subject = 'u1';
COMMIT;

-- Method, source and evidence are stored as given.
SELECT consent.grant('u2', 'newsletter', method => 'web_form', source => 'signup-page',
					 evidence => '{"ip": "192.0.2.7", "form": "signup-v3", "checkbox": true}');
SELECT * FROM rec WHERE subject = 'u2';
SELECT evidence->>'ip' AS ip, jsonb_typeof(evidence->'checkbox') AS checkbox
  FROM consent.records WHERE subject = 'u2';

-- consent.actor names who acts; empty or unset means the session user.
SET consent.actor = 'agent:7';
SELECT consent.grant('u3', 'newsletter');
SELECT subject, purpose, status, actor FROM rec WHERE subject = 'u3';
BEGIN;
SET LOCAL consent.actor = 'batch:import';
SELECT consent.deny('u3', 'newsletter');
COMMIT;
SELECT subject, purpose, status, actor FROM rec WHERE subject = 'u3';
SHOW consent.actor;
SET consent.actor = '';
SELECT consent.grant('u3', 'newsletter');
SELECT subject, purpose, status, actor FROM rec WHERE subject = 'u3';
RESET consent.actor;

-- One current row per (subject, purpose): a new choice replaces the old
-- one, fields and all.
SELECT consent.grant('u2', 'newsletter');
SELECT * FROM rec WHERE subject = 'u2';
SELECT count(*) FROM consent.records WHERE subject = 'u2';

--
-- bigint and uuid subjects are stored as their canonical text.
--
SELECT consent.grant(42::bigint, 'newsletter');
SELECT consent.grant(-9007199254740993::bigint, 'newsletter');
SELECT consent.grant('A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'::uuid, 'newsletter');
SELECT subject FROM consent.records
 WHERE subject IN ('42', '-9007199254740993', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11')
 ORDER BY subject;
-- The text and the typed forms name one person.
SELECT consent.deny('42', 'newsletter');
SELECT consent.status(42::bigint, 'newsletter') AS by_bigint,
	   consent.status('42', 'newsletter') AS by_text;
SELECT consent.withdraw('{a0eebc999c0b4ef8bb6d6bb9bd380a11}'::uuid, 'newsletter');
SELECT consent.status('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, 'newsletter') AS by_uuid,
	   consent.status('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'newsletter') AS by_text;
SELECT subject, purpose, status FROM rec
 WHERE subject IN ('42', '-9007199254740993', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11')
 ORDER BY subject;
-- Every overload, once.
SELECT consent.grant(7::bigint, 'mailing') AS grant_bigint,
	   consent.confirm(7::bigint, 'mailing') AS confirm_bigint,
	   consent.deny(7::bigint, 'profiling') AS deny_bigint,
	   consent.withdraw(7::bigint, 'newsletter') AS withdraw_bigint,
	   consent.withdraw_all(7::bigint) AS withdraw_all_bigint;
SELECT consent.grant('00000000-0000-0000-0000-00000000000a'::uuid, 'mailing') AS grant_uuid,
	   consent.confirm('00000000-0000-0000-0000-00000000000a'::uuid, 'mailing') AS confirm_uuid,
	   consent.deny('00000000-0000-0000-0000-00000000000a'::uuid, 'profiling') AS deny_uuid,
	   consent.withdraw('00000000-0000-0000-0000-00000000000a'::uuid, 'newsletter') AS withdraw_uuid,
	   consent.withdraw_all('00000000-0000-0000-0000-00000000000a'::uuid) AS withdraw_all_uuid;
SELECT subject, purpose, status FROM rec
 WHERE subject IN ('7', '00000000-0000-0000-0000-00000000000a')
 ORDER BY subject, purpose;
-- A NULL literal goes to the text overload.
SELECT consent.grant(NULL, 'newsletter');

--
-- Notices: "key" means its latest version, "key@N" exactly version N.
--
SELECT consent.grant('n1', 'newsletter', 'privacy');
SELECT consent.publish_notice('privacy', 2, 'Privacy notice, second version.',
							  '{newsletter,profiling}');
SELECT consent.grant('n2', 'newsletter', 'privacy');
SELECT consent.grant('n3', 'newsletter', 'privacy@1');
SELECT consent.grant('n4', 'newsletter.weekly.digest', 'privacy@2');
SELECT subject, purpose, status, notice FROM rec WHERE subject LIKE 'n_' ORDER BY subject;
-- Version 2 no longer covers mailing; version 1 still does.
SELECT consent.grant('n5', 'mailing', 'privacy@1');
SELECT consent.grant('n5', 'mailing', 'privacy');
-- deny takes a notice too.
SELECT consent.deny('n6', 'profiling', 'privacy@2', 'phone', 'call-center', '{"agent": "a-17"}');
SELECT * FROM rec WHERE subject = 'n6';

--
-- Expiry: explicit, else the purpose's default validity, else none.
-- Inside one transaction now() is fixed, so exact equality holds.
--
BEGIN;
SELECT consent.grant('e1', 'newsletter', expires_at => now() + interval '3 days');
SELECT consent.grant('e1', 'profiling');
SELECT consent.grant('e2', 'profiling', expires_at => now() + interval '1 day');
SELECT consent.grant('e3', 'newsletter');
SELECT r.subject, p.key AS purpose, r.status,
	   r.expires_at - now() AS valid_for,
	   r.expires_at = now() + interval '1 year' AS one_year
  FROM consent.records r JOIN consent.purposes p ON p.id = r.purpose_id
 WHERE r.subject LIKE 'e_' ORDER BY 1, 2;
COMMIT;
-- deny and withdraw store no expiry, whatever the purpose's validity.
SELECT consent.deny('e1', 'profiling');
SELECT consent.withdraw('e2', 'profiling');
SELECT r.subject, p.key AS purpose, r.status, r.expires_at
  FROM consent.records r JOIN consent.purposes p ON p.id = r.purpose_id
 WHERE r.subject LIKE 'e_' AND p.key = 'profiling' ORDER BY 1;

--
-- Double opt-in: on a purpose that requires confirmation, grant stores
-- pending until confirm.
--
BEGIN;
SELECT consent.grant('d1', 'mailing', 'privacy@1', 'web_form', 'shop', evidence => '{"step": 1}');
SELECT * FROM rec WHERE subject = 'd1';
SELECT consent.status('d1', 'mailing'), consent.has('d1', 'mailing');
SELECT expires_at = now() + interval '30 days' AS expires_30_days_after_grant
  FROM consent.records WHERE subject = 'd1';
COMMIT;
-- confirm returns the stored status.  It keeps the notice and the expiry,
-- and records its own method, source, evidence and actor.
SET consent.actor = 'mailer';
SELECT consent.confirm('d1', 'mailing', 'email_link', evidence => '{"step": 2}');
RESET consent.actor;
SELECT * FROM rec WHERE subject = 'd1';
SELECT consent.status('d1', 'mailing'), consent.has('d1', 'mailing');
-- Confirming again fails: nothing is pending.
SELECT consent.confirm('d1', 'mailing');
-- So does confirming where nothing was ever granted.
SELECT consent.confirm('d2', 'mailing');
-- A grant on a granted double opt-in purpose is pending again.
SELECT consent.grant('d1', 'mailing');
-- A denial leaves nothing to confirm.
SELECT consent.deny('d1', 'mailing');
SELECT consent.confirm('d1', 'mailing');
SELECT subject, purpose, status FROM rec WHERE subject LIKE 'd_';

--
-- Withdrawal is as easy as granting: it works where nothing was granted,
-- and is recorded, with its reason and method.
--
SELECT consent.withdraw('w1', 'profiling');
SELECT consent.withdraw('w2', 'newsletter', 'too many e-mails', 'unsubscribe_link');
SELECT * FROM rec WHERE subject IN ('w1', 'w2') ORDER BY subject;

-- Withdrawing a parent also withdraws its descendants' grants (granted or
-- pending), each recorded on its own row with the same reason; a denial
-- stays a denial, and other people are untouched.
SELECT consent.define_purpose('newsletter.weekly.confirmed', 'Confirmed weekly',
							  requires_confirmation => true);
SELECT consent.grant('w3', 'newsletter.weekly');
SELECT consent.grant('w3', 'newsletter.weekly.digest');
SELECT consent.grant('w3', 'newsletter.weekly.confirmed');
SELECT consent.deny('w3', 'newsletter.partners');
SELECT consent.grant('w3', 'profiling');
SELECT consent.grant('w4', 'newsletter.weekly.digest');
SELECT consent.withdraw('w3', 'newsletter', 'moving away');
SELECT subject, purpose, status, reason FROM rec WHERE subject IN ('w3', 'w4')
 ORDER BY subject, purpose;
-- Withdrawing a leaf touches nothing above it.
SELECT consent.grant('w5', 'newsletter');
SELECT consent.grant('w5', 'newsletter.weekly');
SELECT consent.withdraw('w5', 'newsletter.weekly');
SELECT subject, purpose, status FROM rec WHERE subject = 'w5' ORDER BY purpose;

-- Legitimate interests: the person objects with deny or withdraw, also
-- where nothing was recorded.
SELECT consent.withdraw('w6', 'analytics', 'objection');
SELECT consent.deny('w7', 'analytics');
SELECT subject, purpose, status, reason FROM rec WHERE subject IN ('w6', 'w7') ORDER BY subject;

-- A purpose resting on a contract cannot be granted, withdrawn or denied:
-- its answer does not rest on consent.
SELECT consent.grant('w8', 'billing');
SELECT consent.withdraw('w8', 'billing');
SELECT consent.deny('w8', 'billing');

--
-- withdraw_all withdraws every granted or pending choice of a person and
-- returns how many; denials, withdrawals and purposes that do not rest on
-- consent are left alone.
--
SELECT consent.grant('a1', 'newsletter');
SELECT consent.grant('a1', 'newsletter.weekly');
SELECT consent.grant('a1', 'profiling');
SELECT consent.grant('a1', 'mailing');
SELECT consent.deny('a1', 'newsletter.partners');
SELECT consent.withdraw('a1', 'analytics');
SELECT consent.grant('a2', 'newsletter');
SELECT subject, purpose, status FROM rec WHERE subject IN ('a1', 'a2') ORDER BY subject, purpose;
SELECT consent.withdraw_all('a1', 'account closed');
SELECT subject, purpose, status, reason FROM rec WHERE subject IN ('a1', 'a2')
 ORDER BY subject, purpose;
-- Nothing left to withdraw.
SELECT consent.withdraw_all('a1');
SELECT consent.withdraw_all('nobody');

--
-- consent.status: the stored status of the nearest record on the path from
-- the purpose up to its root, or NULL.
--
SELECT consent.grant('s1', 'newsletter');
SELECT consent.deny('s1', 'newsletter.weekly');
SELECT k AS purpose, consent.status('s1', k) AS status
  FROM unnest('{newsletter,newsletter.weekly,newsletter.weekly.digest,newsletter.partners,profiling,analytics,billing}'::consent.purpose_key[]) k;
SELECT consent.status('nobody', 'newsletter') IS NULL AS no_record;

--
-- consent.decisions: one row per purpose, the effective decision and why.
--
SELECT consent.grant('s1', 'mailing');
SELECT consent.withdraw('s1', 'analytics');
SELECT purpose, title, legal_basis, allowed, status, decided_by, reason,
	   expires_at IS NOT NULL AS expires
  FROM consent.decisions('s1');
SELECT purpose, allowed, status, decided_by, reason FROM consent.decisions('nobody');
-- The bigint and uuid overloads read the same rows as the text form.
SELECT purpose, allowed, status, reason FROM consent.decisions(42::bigint)
 WHERE purpose = 'newsletter';
SELECT purpose, allowed, status, reason
  FROM consent.decisions('A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'::uuid)
 WHERE purpose = 'newsletter';
SELECT purpose, allowed, status, reason FROM consent.decisions(-9007199254740993)
 WHERE purpose = 'newsletter';

-- A withdrawal that cascades to many descendants: 17,000 keys, more than
-- fit in the memory the cascade's query used (its list must outlive it).
SELECT consent.define_purpose('bulk', 'Bulk parent') > 0 AS defined;
SELECT count(consent.define_purpose(('bulk.c' || lpad(g::text, 5, '0'))::consent.purpose_key, 'child'))
  FROM generate_series(1, 17000) g;
SELECT count(consent.grant('bulk-1', ('bulk.c' || lpad(g::text, 5, '0'))::consent.purpose_key))
  FROM generate_series(1, 17000) g;
SELECT consent.withdraw('bulk-1', 'bulk', 'all of it');
SELECT status, reason, count(*) FROM consent.records WHERE subject = 'bulk-1' GROUP BY 1, 2;
-- one event each, in key order
SELECT count(*) AS events,
	   bool_and(purpose = 'bulk.c' || lpad((id - first_id)::text, 5, '0')) AS in_key_order
  FROM (SELECT id, purpose, min(id) OVER () - 1 AS first_id FROM consent.audit_events
		 WHERE subject = 'bulk-1' AND action = 'withdraw' AND purpose LIKE 'bulk.%') e;

\c :origdb
DROP DATABASE regress_consent_recording WITH (FORCE);
