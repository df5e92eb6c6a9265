--
-- The C writer (src/record.c): a NULL in every argument of every
-- recording function, the internal writer called directly, the locks it
-- takes, the withdrawal cascade, the actor, and saved plans that outlive
-- DROP EXTENSION.
--
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS consent CASCADE;
RESET client_min_messages;
CREATE EXTENSION consent;

SELECT consent.define_purpose('news', 'Newsletter', valid_for => interval '30 days');
SELECT consent.define_purpose('news.email', 'Newsletter by e-mail');
SELECT consent.define_purpose('news.email.weekly', 'Weekly digest');
SELECT consent.define_purpose('dbl', 'Double opt-in', requires_confirmation => true);
SELECT consent.define_purpose('billing', 'Billing', 'contract');
SELECT consent.publish_notice('privacy', 1, 'We send news.', '{news,dbl}') > 0 AS published;

-- pg_temp.fp() and pg_temp.try(stmt): SQLSTATE, message, detail, hint, and
-- whether the consent state is unchanged.
\i sql/include/try.sql

-- A NULL where a value is required: 22004 and nothing written.  A NULL
-- where a value is optional: accepted.
SELECT s AS stmt, t.*
  FROM unnest(ARRAY[
	$$SELECT consent.grant(NULL::text, 'news')$$,
	$$SELECT consent.grant(NULL::bigint, 'news')$$,
	$$SELECT consent.grant(NULL::uuid, 'news')$$,
	$$SELECT consent.grant('a', NULL)$$,
	$$SELECT consent.grant('a', 'news', method => NULL)$$,
	$$SELECT consent.deny(NULL::text, 'news')$$,
	$$SELECT consent.deny('a', NULL)$$,
	$$SELECT consent.deny('a', 'news', method => NULL)$$,
	$$SELECT consent.confirm(NULL::text, 'dbl')$$,
	$$SELECT consent.confirm('a', NULL)$$,
	$$SELECT consent.confirm('a', 'dbl', method => NULL)$$,
	$$SELECT consent.deny(NULL::bigint, 'news')$$,
	$$SELECT consent.confirm(NULL::bigint, 'dbl')$$,
	$$SELECT consent.confirm(NULL::uuid, 'dbl')$$,
	$$SELECT consent.withdraw(NULL::text, 'news')$$,
	$$SELECT consent.withdraw(NULL::bigint, 'news')$$,
	$$SELECT consent.withdraw(NULL::uuid, 'news')$$,
	$$SELECT consent.withdraw(1::bigint, NULL)$$,
	$$SELECT consent.withdraw('a', 'news', method => NULL)$$,
	$$SELECT consent.withdraw_all(NULL::text)$$,
	$$SELECT consent.withdraw_all(NULL::uuid)$$]) WITH ORDINALITY AS u(s, i), LATERAL pg_temp.try(s) t ORDER BY i;

SELECT s AS stmt, t.*
  FROM unnest(ARRAY[
	$$SELECT consent.grant('n1', 'news', notice => NULL, source => NULL, expires_at => NULL, evidence => NULL)$$,
	$$SELECT consent.deny('n2', 'news', notice => NULL, source => NULL, evidence => NULL)$$,
	$$SELECT consent.withdraw('n3', 'news', reason => NULL)$$,
	$$SELECT consent.withdraw_all('n1', reason => NULL)$$]) WITH ORDINALITY AS u(s, i), LATERAL pg_temp.try(s) t ORDER BY i;
SELECT subject, status, expires_at IS NOT NULL AS expires, notice_key, source, reason, evidence
  FROM consent.records ORDER BY subject;

-- The internal writer, called directly (as superuser): every argument
-- NULL in turn, an unknown action, and the expire action.
SELECT s AS stmt, t.*
  FROM unnest(ARRAY[
	$$SELECT consent.apply_choice(NULL, 'd', 'news', NULL, 'api', NULL, NULL, NULL, NULL)$$,
	$$SELECT consent.apply_choice('grant', NULL, 'news', NULL, 'api', NULL, NULL, NULL, NULL)$$,
	$$SELECT consent.apply_choice('grant', 'd', NULL, NULL, 'api', NULL, NULL, NULL, NULL)$$,
	$$SELECT consent.apply_choice('grant', 'd', 'news', NULL, NULL, NULL, NULL, NULL, NULL)$$,
	$$SELECT consent.apply_choice('grant', 'd', 'news', 'nope', 'api', NULL, NULL, NULL, NULL)$$,
	$$SELECT consent.apply_choice('grant', 'd', 'news', NULL, 'api', NULL, now() - interval '1 day', NULL, NULL)$$,
	$$SELECT consent.apply_choice('grant', 'd', 'news', NULL, 'api', NULL, NULL, '1', NULL)$$,
	$$SELECT consent.apply_choice('grant', '', 'news', NULL, 'api', NULL, NULL, NULL, NULL)$$,
	$$SELECT consent.apply_choice('grant', repeat('x', 257), 'news', NULL, 'api', NULL, NULL, NULL, NULL)$$,
	$$SELECT consent.apply_choice('grant', 'd', 'news', NULL, '  ', NULL, NULL, NULL, NULL)$$,
	$$SELECT consent.apply_choice('grant', 'd', 'news', NULL, repeat('m', 65), NULL, NULL, NULL, NULL)$$,
	$$SELECT consent.apply_choice('grant', 'd', 'newz', NULL, 'api', NULL, NULL, NULL, NULL)$$,
	$$SELECT consent.apply_choice('grant', 'd', 'billing', NULL, 'api', NULL, NULL, NULL, NULL)$$,
	$$SELECT consent.apply_choice('expire', 'd', 'billing', NULL, 'api', NULL, NULL, NULL, NULL)$$,
	$$SELECT consent.apply_choice('revoke', 'd', 'news', NULL, 'api', NULL, NULL, NULL, NULL)$$,
	$$SELECT consent.apply_choice('expire', 'd', 'news', NULL, 'api', NULL, NULL, NULL, NULL)$$]) WITH ORDINALITY AS u(s, i), LATERAL pg_temp.try(s) t ORDER BY i;
SELECT subject, p.key, status, method FROM consent.records r JOIN consent.purposes p ON p.id = r.purpose_id
 WHERE subject = 'd' ORDER BY p.key;

-- Arguments are checked in a fixed order: the subject first, then the
-- purpose, the method, the evidence; the purpose's existence only then.
SELECT state FROM pg_temp.try($$SELECT consent.grant('', NULL, method => NULL, evidence => '[]')$$);
SELECT state FROM pg_temp.try($$SELECT consent.grant('a', NULL, method => NULL, evidence => '[]')$$);
SELECT state FROM pg_temp.try($$SELECT consent.grant('a', 'newz', method => NULL, evidence => '[]')$$);
SELECT state FROM pg_temp.try($$SELECT consent.grant('a', 'newz', evidence => '[]')$$);
SELECT state FROM pg_temp.try($$SELECT consent.grant('a', 'newz', notice => 'bad ref')$$);
SELECT state FROM pg_temp.try($$SELECT consent.grant('a', 'news', notice => 'bad ref', expires_at => now() - interval '1 day')$$);

-- Notices: the latest version, an explicit one, coverage by an ancestor.
SELECT consent.publish_notice('privacy', 2, 'We send more news.', '{news,dbl}') > 0 AS published;
SELECT consent.publish_notice('privacy', 2, 'Wir senden mehr.', '{news,dbl}', 'de') > 0 AS published;
SELECT consent.grant('v1', 'news.email.weekly', 'privacy'),
	   consent.grant('v2', 'news.email', 'privacy@1'),
	   consent.deny('v3', 'news', 'privacy@2');
SELECT subject, notice_key, notice_version FROM consent.records
 WHERE subject IN ('v1', 'v2', 'v3') ORDER BY subject;
SELECT consent.publish_notice('privacy', 3, 'Everything changed.', '{news}', material => true) > 0 AS published;
SELECT s AS stmt, t.*
  FROM unnest(ARRAY[
	$$SELECT consent.grant('v4', 'news', 'privacy@2')$$,
	$$SELECT consent.deny('v4', 'news', 'privacy@2')$$,
	$$SELECT consent.grant('v4', 'dbl', 'privacy')$$,
	$$SELECT consent.grant('v4', 'news.email', 'privacy')$$]) WITH ORDINALITY AS u(s, i), LATERAL pg_temp.try(s) t ORDER BY i;

-- No row lock on the purpose: a choice that updates an existing record
-- leaves the purpose's row untouched (a new record still has the foreign
-- key check lock it FOR KEY SHARE), and holds consent.purposes in ROW
-- SHARE mode; retire_purpose holds it in EXCLUSIVE mode.
SELECT consent.grant('lk', 'news');
BEGIN;
SELECT consent.deny('lk', 'news');
SELECT xmax <> pg_current_xact_id()::xid AS purpose_row_not_locked
  FROM consent.purposes WHERE key::text = 'news';
SELECT mode FROM pg_locks
 WHERE locktype = 'relation' AND relation = 'consent.purposes'::regclass
   AND pid = pg_backend_pid() AND mode IN ('RowShareLock', 'ExclusiveLock')
 ORDER BY mode;
ROLLBACK;
BEGIN;
SELECT consent.define_purpose('gone', 'Gone');
SELECT consent.retire_purpose('gone');
SELECT mode FROM pg_locks
 WHERE locktype = 'relation' AND relation = 'consent.purposes'::regclass
   AND pid = pg_backend_pid() AND mode = 'ExclusiveLock';
ROLLBACK;

-- Withdrawal: a leaf, and a purpose with descendants (each withdrawn on
-- its own, granted and pending alike; denied ones stay denied).
SELECT consent.grant('w', 'news'), consent.grant('w', 'news.email'),
	   consent.deny('w', 'news.email.weekly');
SELECT consent.withdraw('w', 'news.email.weekly', 'leaf');
SELECT p.key, r.status, r.reason FROM consent.records r JOIN consent.purposes p ON p.id = r.purpose_id
 WHERE r.subject = 'w' ORDER BY p.key;
SELECT consent.grant('w', 'news.email.weekly');
SELECT consent.withdraw('w', 'news', 'tree');
SELECT p.key, r.status, r.reason FROM consent.records r JOIN consent.purposes p ON p.id = r.purpose_id
 WHERE r.subject = 'w' ORDER BY p.key;

-- The actor: consent.actor when set, else the session user.
SET consent.actor = 'agent:9';
SELECT consent.grant('act', 'news');
SELECT actor FROM consent.records WHERE subject = 'act';
SET consent.actor = '';
SELECT consent.deny('act', 'news');
SELECT actor = session_user AS session_user_recorded FROM consent.records WHERE subject = 'act';
RESET consent.actor;

-- Expiry: the purpose's default validity, an explicit one, none.
SELECT consent.grant('e1', 'news'), consent.grant('e2', 'news', expires_at => now() + interval '1 hour'),
	   consent.grant('e3', 'news.email');
SELECT subject, expires_at - effective_at AS valid_for FROM consent.records
 WHERE subject IN ('e1', 'e2', 'e3') ORDER BY subject;

-- Every write fires the triggers of consent.records: one audit event and
-- one outbox row per call.
SELECT count(*) AS events_before FROM consent.audit_events WHERE subject = 'trig' \gset
SELECT consent.grant('trig', 'news'), consent.withdraw('trig', 'news');
SELECT count(*) - :events_before AS new_events FROM consent.audit_events WHERE subject = 'trig';
SELECT count(*) AS outbox_rows FROM consent.outbox WHERE subject = 'trig';

-- A read-only transaction: the write fails with 25006, as any write does.
BEGIN READ ONLY;
SELECT state, message FROM pg_temp.try($$SELECT consent.grant('ro', 'news')$$);
ROLLBACK;

-- Saved plans and cached catalog entries survive the extension being
-- dropped and created again in the same session.
SET client_min_messages = warning;
DROP EXTENSION consent CASCADE;
RESET client_min_messages;
CREATE EXTENSION consent;
SELECT consent.define_purpose('news', 'Newsletter');
SELECT consent.define_purpose('news.weekly', 'Weekly digest');
SELECT consent.grant('again', 'news'), consent.withdraw('again', 'news'), consent.grant('again', 'news');
-- withdraw's saved cascade plan, planned before the DROP, runs again
SELECT consent.grant('again', 'news.weekly'), consent.withdraw('again', 'news');
SELECT subject, purpose_id, status FROM consent.records ORDER BY purpose_id;
-- the triggers' per-backend catalog caches followed too: an outbox row and
-- an audit event per call, with the new tables
SELECT (SELECT count(*) FROM consent.outbox WHERE subject = 'again') AS outbox_rows,
	   (SELECT count(*) FROM consent.audit_events WHERE subject = 'again') AS audit_events;

SET client_min_messages = warning;
DROP EXTENSION consent CASCADE;
RESET client_min_messages;
CREATE EXTENSION consent;
