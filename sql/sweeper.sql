--
-- The sweeper without the background worker: the outbox trigger, one sweep
-- through consent.sweep() (expiry, warnings, pruning, sealing), consumers'
-- claim and acknowledgement, the settings' checks, the status view and
-- privileges.  (test/t/02x_*.pl test the worker on real clusters.)
--
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS consent CASCADE;
CREATE EXTENSION consent;
RESET client_min_messages;

-- The advisory lock that keeps two sweeps of a database apart: holding it
-- keeps the background sweeper (if one serves this database) from sweeping
-- while this test counts what its own sweeps did.
SELECT pg_advisory_lock(1668247155, 1937204581);

SELECT consent.define_purpose('marketing', 'Marketing') > 0 AS ok;
SELECT consent.define_purpose('marketing.email', 'Email marketing') > 0 AS ok;
SELECT consent.define_purpose('news', 'Newsletter', requires_confirmation => true) > 0 AS ok;
SELECT consent.publish_notice('privacy', 1, 'We use your email for marketing.', '{marketing}') > 0 AS ok;

-- The outbox as a test reads it: no timestamps, no volatile details.
CREATE VIEW ob AS
	SELECT id, event, subject, purpose, status, previous_status,
		   expires_at IS NOT NULL AS expires, event_id IS NOT NULL AS audited, payload
	  FROM consent.outbox;

--
-- 1. Every change of consent.records writes one outbox row, in its own
--    transaction's time, mapped from the old and new status.
--
BEGIN;
SELECT consent.grant('alice', 'marketing.email', notice => 'privacy', source => 'signup');
SELECT consent.grant('bob', 'news');
SELECT consent.confirm('bob', 'news');
SELECT consent.deny('carol', 'marketing');
SELECT consent.withdraw('alice', 'marketing.email', reason => 'too many mails');
SELECT * FROM ob ORDER BY id;
SELECT bool_and(at = now()) AS at_transaction_time FROM consent.outbox;
COMMIT;

-- A re-grant with an expiry is a grant, with previous_status.
SELECT consent.grant('alice', 'marketing.email', expires_at => now() + interval '1 year');
SELECT * FROM ob WHERE id > 5 ORDER BY id;

-- A change that rolls back leaves no outbox row.
BEGIN;
SELECT consent.grant('dave', 'marketing');
ROLLBACK;
SELECT count(*) AS dave_rows FROM consent.outbox WHERE subject = 'dave';

-- Direct DML by a privileged role is announced too, one row per row.
INSERT INTO consent.records (subject, purpose_id, status, method)
	SELECT 'eve', id, 'denied', 'paper' FROM consent.purposes WHERE key::text = 'marketing';
UPDATE consent.records SET status = 'withdrawn' WHERE subject IN ('eve', 'carol');
SELECT event, subject, purpose, status, previous_status, payload->>'method' AS method
  FROM consent.outbox WHERE id > 6 ORDER BY id;

-- COPY FROM into consent.records is how a dump is restored: no outbox row.
COPY consent.records (subject, purpose_id, status, method) FROM stdin;
restored-1	1	granted	paper
\.
SELECT count(*) AS restored_rows FROM consent.outbox WHERE subject = 'restored-1';
-- ... but a COPY whose query records a choice is announced like any other.
COPY (SELECT consent.deny('restored-1', 'marketing')) TO stdout;
SELECT event, subject, previous_status FROM consent.outbox WHERE subject = 'restored-1';

-- A change of details only (here: free text) is an "update"; a replaced
-- subject key is an "erase".
UPDATE consent.records SET source = 'corrected' WHERE subject = 'carol';
UPDATE consent.records SET subject = 'pseudonym-1' WHERE subject = 'eve';
SELECT event, subject, status, previous_status FROM consent.outbox ORDER BY id DESC LIMIT 2;

-- event_id is the audit event written for the same change (the audit
-- trigger fires just before the outbox trigger on each row).
SELECT count(*) AS outbox_rows,
	   count(*) FILTER (WHERE e.id IS NOT NULL
						  AND e.subject = o.subject AND e.purpose = o.purpose
						  AND e.new_status::text = o.status) AS matching_audit_events
  FROM consent.outbox o LEFT JOIN consent.audit_events e ON e.id = o.event_id;

-- Erasure: the outbox gets an "erase" event under the pseudonym, and the
-- identifier disappears from the outbox (consent.erase_subject() rewrites
-- every table with a subject).
SELECT consent.grant('zoe@example.org', 'marketing', source => 'form of zoe@example.org') IS NOT NULL AS granted;
SELECT consent.erase_subject('zoe@example.org', 'request 42') IS NOT NULL AS erased;
SELECT event, subject LIKE 'erased:%' AS pseudonym, status, previous_status, event_id IS NULL AS no_event_id
  FROM consent.outbox WHERE event = 'erase' AND subject <> 'pseudonym-1';
SELECT count(*) AS outbox_rows_naming_zoe FROM consent.outbox o WHERE strpos(o::text, 'zoe@example.org') > 0;

-- The trigger function checks how it is fired.
CREATE TABLE not_records (x integer);
CREATE TRIGGER wrong BEFORE INSERT ON not_records FOR EACH ROW EXECUTE FUNCTION consent.outbox_trigger();
INSERT INTO not_records VALUES (1);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
DROP TABLE not_records;

--
-- 2. Expiry.  Grants whose expiry has passed become "expired" through a
--    plain UPDATE (so audit and outbox see it), in batches.
--
TRUNCATE consent.outbox;
SELECT count(consent.grant('s' || g, 'marketing', expires_at => now() + interval '1 hour')) AS granted
  FROM generate_series(1, 5) g;
UPDATE consent.records SET expires_at = now() - interval '1 minute' * (6 - substr(subject, 2)::integer)
 WHERE subject ~ '^s[0-9]$';
-- pending and withdrawn records with a past expiry are left alone
INSERT INTO consent.records (subject, purpose_id, status, expires_at)
	SELECT 'p1', id, 'pending', now() - interval '1 day' FROM consent.purposes WHERE key::text = 'news';
SET consent.sweep_batch_size = 2;
SELECT * FROM consent.sweep();
SELECT subject, status, effective_at = expires_at AS effective_at_expiry, method, actor = session_user AS actor_is_me,
	   source, evidence
  FROM consent.records WHERE subject ~ '^(s[0-9]|p1)$' ORDER BY subject;
SELECT event, subject, status, previous_status, expires FROM ob WHERE event = 'expire' ORDER BY id;
-- nothing left: a second sweep expires nothing
SELECT * FROM consent.sweep();
RESET consent.sweep_batch_size;

-- consent.actor is recorded as the actor of an expiry
UPDATE consent.records SET status = 'granted', expires_at = now() - interval '1 second' WHERE subject = 's1';
SET consent.actor = 'cron:nightly';
SELECT expired FROM consent.sweep();
RESET consent.actor;
SELECT actor FROM consent.records WHERE subject = 's1';

-- The batch function, called directly, returns how many it expired (its
-- SKIP LOCKED behaviour is in test/isolation/specs/outbox_sweep.spec).
SELECT expired, last_expires_at FROM consent.expire_batch(10);

-- Parts.  A sweep with helpers (consent.sweep_workers, background worker
-- only) splits the subjects between its processes by consent.sweep_part:
-- every subject is in exactly one part, whatever the number of parts ...
SELECT count(*) AS subjects,
	   count(*) FILTER (WHERE (SELECT count(*) FROM generate_series(0, 2) k
							   WHERE consent.sweep_part('subject-' || g, 3, k)) = 1) AS in_one_of_3_parts,
	   count(*) FILTER (WHERE (SELECT count(*) FROM generate_series(0, 6) k
							   WHERE consent.sweep_part('subject-' || g, 7, k)) = 1) AS in_one_of_7_parts,
	   count(*) FILTER (WHERE consent.sweep_part('subject-' || g, 1, 0)) AS in_the_one_part,
	   count(*) FILTER (WHERE consent.sweep_part('subject-' || g, 2, 0)) BETWEEN 400 AND 600 AS halves_about_even
  FROM generate_series(1, 1000) g;
-- ... and a part that does not exist is an error
SELECT consent.sweep_part('x', 2, 2);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT consent.sweep_part('x', 0, 0);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM consent.expire_batch(10, 2, -1);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM consent.expire_batch(10, NULL, 0);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM consent.expire_batch(NULL);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM consent.expire_batch(0);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
-- A batch of one part expires the records of that part's subjects only,
-- all records of a subject; "after" resumes after the last expiry taken.
-- 12 people with two records each, expiries 1 to 12 minutes ago.
CREATE TEMP TABLE part_subjects AS
	SELECT 'pt' || g AS subject, g, consent.sweep_part('pt' || g, 2, 0) AS in_part_0
	  FROM generate_series(1, 12) g;
INSERT INTO consent.records (subject, purpose_id, status, expires_at)
	SELECT s.subject, p.id, 'granted', now() - interval '1 minute' * (13 - s.g)
	  FROM part_subjects s, consent.purposes p WHERE p.key::text IN ('marketing', 'marketing.email');
SELECT count(*) FILTER (WHERE in_part_0) BETWEEN 1 AND 11 AS both_parts_have_people FROM part_subjects;
BEGIN;
SELECT * FROM consent.expire_batch(1000, 2, 0, now() + interval '1 day') AS nothing_after_tomorrow;
SELECT expired = 2 * (SELECT count(*) FROM part_subjects WHERE in_part_0) AS all_of_part_0,
	   last_expires_at = (SELECT max(r.expires_at) FROM consent.records r JOIN part_subjects s USING (subject)
						   WHERE s.in_part_0) AS last_is_the_latest_of_part_0
  FROM consent.expire_batch(1000, 2, 0);
SELECT count(*) = 24 AS records,
	   bool_and(r.status = 'expired') FILTER (WHERE s.in_part_0) AS part_0_expired,
	   bool_and(r.status = 'granted') FILTER (WHERE NOT s.in_part_0) AS part_1_granted
  FROM consent.records r JOIN part_subjects s USING (subject);
ROLLBACK;
-- batches of 2 from "after": each resumes after the previous one's last
-- expiry, and together they take every record of the part once
DO $$
DECLARE
	after timestamptz := '-infinity';
	k integer;
	last timestamptz;
	total integer := 0;
	batches integer := 0;
BEGIN
	LOOP
		SELECT b.expired, b.last_expires_at INTO k, last FROM consent.expire_batch(2, 2, 1, after) b;
		total := total + k;
		batches := batches + 1;
		EXIT WHEN k < 2;
		IF last < after THEN
			RAISE EXCEPTION 'batch % went back from % to %', batches, after, last;
		END IF;
		after := last;
	END LOOP;
	RAISE NOTICE 'part 1: % in % batches',
		CASE WHEN total = 2 * (SELECT count(*) FROM part_subjects WHERE NOT in_part_0)
			 THEN 'all its records' ELSE total || ' records' END,
		CASE WHEN batches = total / 2 + 1 THEN 'records / 2 + 1' ELSE batches::text END;
END
$$;
SELECT count(*) = 24 AS records,
	   bool_and(r.status = 'granted') FILTER (WHERE s.in_part_0) AS part_0_granted,
	   bool_and(r.status = 'expired') FILTER (WHERE NOT s.in_part_0) AS part_1_expired
  FROM consent.records r JOIN part_subjects s USING (subject);
SELECT count(*) = 2 * (SELECT count(*) FROM part_subjects WHERE NOT in_part_0) AS one_expire_event_per_record_of_part_1,
	   count(DISTINCT (subject, purpose)) = count(*) AS no_record_twice
  FROM ob WHERE event = 'expire' AND subject IN (SELECT subject FROM part_subjects);
-- the rest, by the pass over all parts that ends a sweep
SELECT expired = 2 * (SELECT count(*) FROM part_subjects WHERE in_part_0) AS the_rest FROM consent.expire_batch(1000);
DELETE FROM consent.records WHERE subject IN (SELECT subject FROM part_subjects);
DROP TABLE part_subjects;

--
-- 3. Warnings: once per grant whose expiry falls within consent.warn_before.
--
TRUNCATE consent.outbox;
SELECT consent.grant('w1', 'marketing', expires_at => now() + interval '3 days');
SELECT consent.grant('w2', 'marketing', expires_at => now() + interval '20 days');
SELECT consent.grant('w3', 'marketing');
SELECT * FROM consent.sweep();
SELECT event, subject, purpose, status, previous_status, expires, audited, payload FROM ob WHERE event = 'warning';
SELECT subject, expires_at = (SELECT expires_at FROM consent.records r WHERE r.subject = w.subject) AS same_expiry
  FROM consent.expiry_warnings w ORDER BY subject;
-- once: the next sweep sends none
SELECT warned FROM consent.sweep();
-- a renewed grant (new expiry) is warned again
SELECT consent.grant('w1', 'marketing', expires_at => now() + interval '4 days');
SELECT warned FROM consent.sweep();
-- a wider window reaches w2; 0 sends none
SET consent.warn_before = '30d';
SELECT warned FROM consent.sweep();
SET consent.warn_before = 0;
SELECT consent.grant('w4', 'marketing', expires_at => now() + interval '1 day');
SELECT warned FROM consent.sweep();
RESET consent.warn_before;
SELECT subject, count(*) AS warnings FROM consent.outbox WHERE event = 'warning' GROUP BY subject ORDER BY subject;
-- batches resume after the last expiry seen and still warn every grant
SET consent.sweep_batch_size = 2;
SELECT count(consent.grant('x' || g, 'marketing', expires_at => now() + interval '1 day' + g * interval '1 minute')) AS granted
  FROM generate_series(1, 5) g;
-- x1..x5, and w4 granted while warnings were off
SELECT warned FROM consent.sweep();
RESET consent.sweep_batch_size;
-- a warning whose expiry has passed is forgotten by the sweep
UPDATE consent.records SET expires_at = now() - interval '1 minute' WHERE subject = 'w1';
UPDATE consent.expiry_warnings SET expires_at = expires_at - interval '10 days' WHERE subject = 'w1';
SELECT expired, warned FROM consent.sweep();
SELECT count(*) AS w1_warnings_kept FROM consent.expiry_warnings WHERE subject = 'w1';

--
-- 4. Consumers: claim for a lease, acknowledge; at least once.
--
TRUNCATE consent.outbox;
ALTER SEQUENCE consent.outbox_id_seq RESTART;
SELECT count(consent.grant('c' || g, 'marketing')) AS granted FROM generate_series(1, 5) g;
SELECT id, subject, attempts, claimed_by FROM consent.claim_notifications(2, '1 minute', 'relay-a');
SELECT id, subject, attempts, claimed_by = session_user AS by_me FROM consent.claim_notifications(2, '1 minute');
SELECT consent.ack_notifications('{1,2,3}');
-- acknowledging again is harmless
SELECT consent.ack_notifications('{1,2,3}');
SELECT consent.ack_notifications(NULL);
-- row 4 is still leased; 5 is free
SELECT id FROM consent.claim_notifications(10, '1 minute');
-- an expired lease offers the row again
UPDATE consent.outbox SET claimed_until = now() - interval '1 second' WHERE id = 4;
SELECT id, attempts FROM consent.claim_notifications(10, '1 minute');
SELECT id, acked_at IS NOT NULL AS acked, claimed_until IS NOT NULL AS leased FROM consent.outbox ORDER BY id;
-- bad arguments
SELECT * FROM consent.claim_notifications(0, '1 minute');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM consent.claim_notifications(NULL, '1 minute');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM consent.claim_notifications(1, '-1 minute');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM consent.claim_notifications(1, NULL);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;

--
-- 5. Pruning: acknowledged rows and rows nobody holds, older than
--    consent.outbox_retention; never a row under a lease.
--
UPDATE consent.outbox SET at = now() - interval '8 days' WHERE id IN (1, 2, 4, 5);
UPDATE consent.outbox SET claimed_until = now() + interval '1 hour' WHERE id = 5;
UPDATE consent.outbox SET claimed_until = NULL, acked_at = NULL WHERE id = 4;
SET consent.outbox_retention = -1;
SELECT pruned FROM consent.sweep();
RESET consent.outbox_retention;
SELECT pruned FROM consent.sweep();
SELECT id FROM consent.outbox ORDER BY id;
SET consent.outbox_retention = '10d';
UPDATE consent.outbox SET at = now() - interval '9 days', claimed_until = NULL WHERE id = 5;
SELECT pruned FROM consent.sweep();
RESET consent.outbox_retention;

--
-- 6. Sealing: every sweep ends with consent.seal() when it exists (the
--    audit trail); not in a REPEATABLE READ transaction, where a seal
--    cannot see what others commit.  An error in a sweep reaches the
--    caller and is kept in consent.sweeper_status.
--
SELECT count(*) AS seals_before FROM consent.seals \gset
SELECT consent.grant('sealme', 'marketing');
SELECT sealed FROM consent.sweep();
SELECT count(*) - :seals_before AS new_seals FROM consent.seals;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT sealed FROM consent.sweep();
COMMIT;

CREATE FUNCTION refuse_warnings() RETURNS trigger LANGUAGE plpgsql
	AS $$BEGIN RAISE EXCEPTION 'no warnings today'; END$$;
CREATE TRIGGER refuse BEFORE INSERT ON consent.outbox
	FOR EACH ROW WHEN (NEW.event = 'warning') EXECUTE FUNCTION refuse_warnings();
SELECT consent.grant('late', 'marketing', expires_at => now() + interval '1 day');
SELECT * FROM consent.sweep();
SELECT last_error, last_error_at IS NOT NULL AS when_known
  FROM consent.sweeper_status WHERE database = current_database();
DROP TRIGGER refuse ON consent.outbox;
DROP FUNCTION refuse_warnings();

-- The status view: the last sweep's counts, no sweep running now.
UPDATE consent.records SET status = 'granted', expires_at = now() - interval '1 second' WHERE subject IN ('s2', 's3');
SELECT expired FROM consent.sweep();
SELECT database = current_database() AS this_db, pid, state, sweeps > 0 AS swept,
	   last_end >= last_start AS ended, last_expired, last_warned, last_pruned, expired >= 2 AS counted,
	   longest_batch_ms >= 0 AS timed
  FROM consent.sweeper_status WHERE database = current_database();

--
-- 7. Settings are checked.
--
SET consent.outbox_retention = '30s';
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SET consent.warn_before = '400d';
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SET consent.sweep_batch_size = 0;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SET consent.sweep_workers = 0;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SET consent.sweep_workers = 65;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SET consent.sweep_workers = 1;
SHOW consent.sweep_workers;
SET consent.sweep_workers = 64;
SHOW consent.sweep_workers;
RESET consent.sweep_workers;
SHOW consent.sweep_workers;
SET consent.databases = '*';
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SET consent.sweep_interval = '5s';
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
ALTER SYSTEM SET consent.databases = '*, postgres';
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
ALTER SYSTEM SET consent.databases = 'a,,b';
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT name, boot_val, unit, context FROM pg_settings
 WHERE name IN ('consent.databases', 'consent.sweep_interval', 'consent.max_sweepers',
				'consent.sweep_batch_size', 'consent.warn_before', 'consent.outbox_retention',
				'consent.notify', 'consent.sweep_workers')
 ORDER BY name;

--
-- 8. Privileges: sweep() for administrators, the status view for readers
--    too, claim and ack for relays; nothing for others.
--
CREATE ROLE sweeper_test_admin LOGIN IN ROLE consent_admin;
CREATE ROLE sweeper_test_reader LOGIN IN ROLE consent_reader;
CREATE ROLE sweeper_test_relay LOGIN IN ROLE consent_relay;
CREATE ROLE sweeper_test_nobody LOGIN;
GRANT USAGE ON SCHEMA consent TO sweeper_test_nobody;
SET ROLE sweeper_test_admin;
SELECT expired FROM consent.sweep();
SELECT count(*) > 0 AS sees_status FROM consent.sweeper_status;
SET ROLE sweeper_test_reader;
SELECT count(*) > 0 AS sees_status FROM consent.sweeper_status;
SELECT count(*) > 0 AS sees_outbox FROM consent.outbox;
SELECT * FROM consent.sweep();
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT count(*) FROM consent.claim_notifications(1, '1 minute');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SET ROLE sweeper_test_relay;
SELECT count(*) AS claimed FROM consent.claim_notifications(1, '1 minute');
SELECT consent.ack_notifications('{}');
SELECT count(*) FROM consent.outbox;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT count(*) FROM consent.records;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM consent.expire_batch(1);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT consent.sweep_part('x', 1, 0);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SET ROLE sweeper_test_nobody;
SELECT count(*) FROM consent.sweeper_status;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT consent.ack_notifications('{1}');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
RESET ROLE;

-- Every object of this part has a comment.
SELECT c.relname AS uncommented
  FROM pg_class c
 WHERE c.relnamespace = 'consent'::regnamespace
   AND c.relname IN ('outbox', 'outbox_pending_idx', 'outbox_at_idx', 'expiry_warnings',
					 'expiry_warnings_expires_at_idx', 'sweeper_status')
   AND obj_description(c.oid, 'pg_class') IS NULL;
SELECT p.oid::regprocedure AS uncommented
  FROM pg_proc p
 WHERE p.pronamespace = 'consent'::regnamespace
   AND p.proname IN ('outbox_trigger', 'expire_batch', 'sweep_part', 'warn_batch', 'prune_batch', 'sweep',
					 'sweeper_stats', 'claim_notifications', 'ack_notifications')
   AND obj_description(p.oid, 'pg_proc') IS NULL;
SELECT a.attrelid::regclass, a.attname AS uncommented
  FROM pg_attribute a
 WHERE a.attrelid IN ('consent.outbox'::regclass, 'consent.expiry_warnings'::regclass,
					  'consent.sweeper_status'::regclass)
   AND a.attnum > 0 AND NOT a.attisdropped
   AND col_description(a.attrelid, a.attnum) IS NULL;

-- Clean up.
DROP VIEW ob;
DROP ROLE sweeper_test_admin, sweeper_test_reader, sweeper_test_relay;
REVOKE USAGE ON SCHEMA consent FROM sweeper_test_nobody;
DROP ROLE sweeper_test_nobody;
SELECT pg_advisory_unlock(1668247155, 1937204581);
