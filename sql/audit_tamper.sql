--
-- Tamper evidence.  A superuser with session_replication_role = replica
-- gets past the append-only guards; verify_audit() must still catch each
-- kind of tampering: a changed field, a deleted event, a forged inserted
-- event, swapped events, a truncated tail after a seal, and changed seals.
-- Each case runs in a transaction that is rolled back.
--
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS consent CASCADE;
CREATE EXTENSION consent;
RESET client_min_messages;

SELECT consent.define_purpose('marketing', 'Marketing') IS NOT NULL AS defined;
SELECT consent.define_purpose('analytics', 'Analytics') IS NOT NULL AS defined;
-- events: alice 3, 5, 6, 9; bob 4, 8; carol 10 (after the first seal)
SELECT consent.grant('alice', 'marketing', evidence => '{"ip": "192.0.2.1"}');
SELECT consent.grant('bob', 'marketing');
SELECT consent.grant('alice', 'analytics');
SELECT consent.withdraw('alice', 'marketing', 'changed my mind');
-- an id lost to a rollback leaves a gap (7) inside the first seal's range
BEGIN;
SELECT consent.deny('carol', 'marketing');
ROLLBACK;
SELECT consent.deny('bob', 'analytics');
SELECT consent.grant('alice', 'marketing');
SELECT consent.seal() AS seal_1;
SELECT consent.grant('carol', 'analytics');
SELECT consent.seal() AS seal_2;
SELECT id, subject, purpose, action FROM consent.audit_events ORDER BY id;
SELECT * FROM consent.verify_audit();

-- 1. A changed field: the hash no longer matches.
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE consent.audit_events SET method = 'paper' WHERE id = 5;
SELECT ok, bad_event_id, reason FROM consent.verify_audit();
SELECT ok, bad_event_id, reason FROM consent.verify_audit('alice');
ROLLBACK;

-- ... a personal field (committed to, not hashed in clear) ...
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE consent.audit_events SET evidence = '{"ip": "203.0.113.9"}' WHERE id = 3;
SELECT ok, bad_event_id, reason FROM consent.verify_audit();
ROLLBACK;

-- ... the status, the time, the transaction ...
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE consent.audit_events SET new_status = 'granted', action = 'grant' WHERE id = 6;
SELECT ok, bad_event_id, reason FROM consent.verify_audit();
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE consent.audit_events SET at = at - interval '1 year' WHERE id = 4;
SELECT ok, bad_event_id, reason FROM consent.verify_audit();
ROLLBACK;

-- ... or the subject, which moves the event to another chain.
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE consent.audit_events SET subject = 'bob' WHERE id = 6;
SELECT ok, bad_event_id, reason FROM consent.verify_audit();
ROLLBACK;

-- 2. A deleted event: the next one no longer links.
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM consent.audit_events WHERE id = 5;
SELECT ok, bad_event_id, reason FROM consent.verify_audit();
SELECT ok, bad_event_id, reason FROM consent.verify_audit('alice');
ROLLBACK;
-- the first event of a chain
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM consent.audit_events WHERE id = 4;
SELECT ok, bad_event_id, reason FROM consent.verify_audit();
ROLLBACK;

-- 3. A forged inserted event.  Naively: a copy of a real event with
-- another status.
BEGIN;
SET LOCAL session_replication_role = replica;
INSERT INTO consent.audit_events
SELECT 100, at, xid, subject, purpose, 'grant', old_status, 'granted', notice_key, notice_version,
	   notice_sha256, expires_at, row_stamp, method, source, reason, evidence, db_user,
	   "session_user", application_name, client_addr, actor, redactions, hash, hash
  FROM consent.audit_events WHERE id = 9;
SELECT ok, bad_event_id, reason FROM consent.verify_audit();
ROLLBACK;
-- Knowing the chain secret, the forger computes a valid hash, puts the
-- event into the gap the rollback left (id 7) and re-links the rest of the
-- chain: the chain verifies, the seal that covers id 7 does not.
BEGIN;
SET LOCAL session_replication_role = replica;
INSERT INTO consent.audit_events
SELECT 7, at, xid, subject, 'analytics', 'grant', NULL, 'granted', notice_key, notice_version,
	   notice_sha256, expires_at, row_stamp, method, source, reason, evidence, db_user,
	   "session_user", application_name, client_addr, actor, redactions, hash, '\x00'
  FROM consent.audit_events WHERE id = 4;
UPDATE consent.audit_events e SET hash = consent.audit_event_hash(e, c.secret)
  FROM consent.audit_chains c WHERE c.subject = e.subject AND e.id = 7;
UPDATE consent.audit_events SET prev_hash = (SELECT hash FROM consent.audit_events WHERE id = 7)
 WHERE id = 8;
UPDATE consent.audit_events e SET hash = consent.audit_event_hash(e, c.secret)
  FROM consent.audit_chains c WHERE c.subject = e.subject AND e.id = 8;
SELECT * FROM consent.verify_audit('bob');
SELECT ok, bad_event_id, bad_seal_id, reason FROM consent.verify_audit();
ROLLBACK;
-- A forgery at the end of a chain, after the last seal, with a valid hash,
-- is what seals cannot see yet: the next seal commits to whatever is there.
BEGIN;
SET LOCAL session_replication_role = replica;
INSERT INTO consent.audit_events
SELECT 100, at, xid, subject, purpose, 'withdraw', 'granted', 'withdrawn', notice_key, notice_version,
	   notice_sha256, expires_at, row_stamp, method, source, reason, evidence, db_user,
	   "session_user", application_name, client_addr, actor, redactions, hash, '\x00'
  FROM consent.audit_events WHERE id = 10;
UPDATE consent.audit_events e SET hash = consent.audit_event_hash(e, c.secret)
  FROM consent.audit_chains c WHERE c.subject = e.subject AND e.id = 100;
SELECT ok, bad_event_id, reason FROM consent.verify_audit();
ROLLBACK;

-- 4. Swapped events: two events of a chain exchange places.
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE consent.audit_events SET id = -5 WHERE id = 5;
UPDATE consent.audit_events SET id = 5 WHERE id = 6;
UPDATE consent.audit_events SET id = 6 WHERE id = -5;
SELECT ok, bad_event_id, reason FROM consent.verify_audit();
ROLLBACK;
-- ... or exchange their contents.
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE consent.audit_events a
   SET purpose = b.purpose, action = b.action, old_status = b.old_status, new_status = b.new_status,
	   reason = b.reason, evidence = b.evidence, prev_hash = b.prev_hash, hash = b.hash
  FROM consent.audit_events b
 WHERE (a.id, b.id) IN ((6, 9), (9, 6));
SELECT ok, bad_event_id, reason FROM consent.verify_audit();
ROLLBACK;

-- 5. A truncated tail after a seal: alice's last two events go.  Her chain
-- still links; the seal that committed its head catches it.
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM consent.audit_events WHERE id IN (6, 9);
SELECT * FROM consent.verify_audit('alice');
SELECT ok, bad_event_id, bad_seal_id, reason FROM consent.verify_audit();
ROLLBACK;
-- the newest event alone (a whole chain), sealed by the second seal
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM consent.audit_events WHERE id = 10;
SELECT ok, bad_event_id, bad_seal_id, reason FROM consent.verify_audit();
ROLLBACK;

-- 6. Seals: changed, deleted, or re-made after a truncation.
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE consent.seals SET root = sha256(root) WHERE id = 1;
SELECT ok, bad_seal_id, reason FROM consent.verify_audit();
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM consent.seals WHERE id = 1;
SELECT ok, bad_seal_id, reason FROM consent.verify_audit();
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM consent.audit_events WHERE id = 10;
DELETE FROM consent.seals WHERE id = 2;
-- the last seal is the anchor: once it is gone too, the tail is unprovable
-- (docs/audit.md: publish seal roots outside the database)
SELECT ok, bad_seal_id, reason FROM consent.verify_audit();
ROLLBACK;

-- 7. A chain whose secret is gone cannot be checked, and says so.
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM consent.audit_chains WHERE subject = 'bob';
SELECT ok, bad_event_id, reason FROM consent.verify_audit();
ROLLBACK;

-- Untouched after all that.
SELECT * FROM consent.verify_audit();


-- Leave a fresh extension behind for the files that follow.
SET client_min_messages = warning;
DROP EXTENSION consent CASCADE;
CREATE EXTENSION consent;
RESET client_min_messages;
