--
-- The direct writer (src/record.c, store_direct): the recording functions
-- store a record without planning a statement, doing what INSERT ... ON
-- CONFLICT DO UPDATE does.  Here: the same rows, audit events, outbox rows
-- and trigger firings as through the statement (which the writer falls
-- back to, with a DEBUG1 line saying why, when the table has a column it
-- does not set or of another type, or row security applies); the
-- privilege, replica identity and CHECK constraints the statement checks,
-- CHECK constraints added, dropped and redefined in the same session;
-- BEFORE triggers that change or skip the row, or change it underneath.
-- Concurrent writers: test/isolation/specs/recording_race.spec.
--
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS consent CASCADE;
DROP ROLE IF EXISTS rw_caller;
RESET client_min_messages;
CREATE EXTENSION consent;

SELECT consent.define_purpose('news', 'Newsletter', valid_for => interval '30 days');
SELECT consent.define_purpose('ads', 'Ads');
SELECT consent.publish_notice('privacy', 1, 'We send news.', '{news,ads}') > 0 AS published;

-- Every trigger event on consent.records, in firing order.
CREATE TABLE trigger_log (n serial, subject text, what text);
CREATE FUNCTION log_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_LEVEL = 'STATEMENT' THEN
		INSERT INTO public.trigger_log (what) VALUES (TG_WHEN || ' ' || TG_OP || ' statement');
		RETURN NULL;
	END IF;
	INSERT INTO public.trigger_log (subject, what)
	VALUES (NEW.subject, TG_WHEN || ' ' || TG_OP || ' row ' || TG_NAME
			|| CASE WHEN TG_OP = 'UPDATE' THEN ' ' || OLD.status || '->' || NEW.status ELSE ' ' || NEW.status END);
	IF TG_WHEN = 'BEFORE' AND NEW.subject LIKE 'skip%' THEN
		RETURN NULL;			-- "do nothing"
	END IF;
	IF TG_WHEN = 'BEFORE' AND NEW.source = 'rewrite-me' THEN
		NEW.source := 'rewritten by ' || TG_OP;
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER t_bs BEFORE INSERT OR UPDATE ON consent.records
	FOR EACH STATEMENT EXECUTE FUNCTION log_trigger();
CREATE TRIGGER t_as AFTER INSERT OR UPDATE ON consent.records
	FOR EACH STATEMENT EXECUTE FUNCTION log_trigger();
CREATE TRIGGER t_br BEFORE INSERT OR UPDATE ON consent.records
	FOR EACH ROW EXECUTE FUNCTION log_trigger();
CREATE TRIGGER t_ar AFTER INSERT OR UPDATE ON consent.records
	FOR EACH ROW EXECUTE FUNCTION log_trigger();
CREATE TRIGGER t_ar_status AFTER UPDATE OF status ON consent.records
	FOR EACH ROW EXECUTE FUNCTION log_trigger();
CREATE TRIGGER t_ar_subject AFTER UPDATE OF subject ON consent.records
	FOR EACH ROW EXECUTE FUNCTION log_trigger();

-- One sequence of choices for a subject, in one transaction each.
CREATE PROCEDURE choices(s text) LANGUAGE plpgsql AS $$
BEGIN
	PERFORM consent.grant(s, 'news', 'privacy', 'web_form', 'signup',
						  evidence => '{"ip": "192.0.2.1"}');
	COMMIT;
	PERFORM consent.grant(s, 'news', 'privacy@1', 'web_form', 'rewrite-me');
	COMMIT;
	PERFORM consent.deny(s, 'ads', source => 'settings');
	COMMIT;
	PERFORM consent.withdraw(s, 'news', 'too many mails');
	COMMIT;
	-- two writes of one record in one transaction
	PERFORM consent.grant(s, 'ads', expires_at => '2099-01-01 00:00+00');
	PERFORM consent.withdraw(s, 'ads');
	COMMIT;
	PERFORM consent.grant('skip-' || s, 'news');
	COMMIT;
END
$$;

-- The trigger firings logged after "mark <s>", up to the next mark.
CREATE FUNCTION firings(s text) RETURNS TABLE (n integer, item text)
LANGUAGE sql AS $$
	SELECT t.n, coalesce(replace(t.subject, s, '<s>'), '') || ' ' || t.what
	  FROM trigger_log t
	 WHERE t.n > (SELECT max(n) FROM trigger_log WHERE what = 'mark ' || s)
	   AND t.n < coalesce((SELECT min(n) FROM trigger_log WHERE what LIKE 'mark %'
						   AND n > (SELECT max(n) FROM trigger_log WHERE what = 'mark ' || s)), 2147483647)
$$;

-- What the two paths must agree on, with the subject as a placeholder.
CREATE FUNCTION outcome(s text) RETURNS TABLE (what text, item text)
LANGUAGE sql AS $$
	SELECT 'record', format('%s %s %s %s@%s %s %s %s %s %s expires:%s effective=now:%s',
				p.key, r.status, r.method, r.notice_key, r.notice_version, r.source,
				r.actor = session_user, r.reason, r.evidence,
				r.recorded_at >= r.effective_at,
				r.expires_at IS NOT NULL, r.effective_at <= r.recorded_at)
	  FROM consent.records r JOIN consent.purposes p ON p.id = r.purpose_id
	 WHERE r.subject IN (s, 'skip-' || s)
	UNION ALL
	SELECT 'audit', format('%s %s %s->%s %s %s %s %s', e.purpose, e.action, e.old_status, e.new_status,
				e.source, e.reason, e.notice_sha256 IS NOT NULL,
				CASE WHEN e.expires_at IS NULL THEN 'no expiry'
					 WHEN e.expires_at = '2099-01-01 00:00+00' THEN '2099-01-01 00:00 UTC'
					 ELSE round(extract(epoch FROM e.expires_at - now()) / 86400) || ' days' END)
	  FROM consent.audit_events e
	 WHERE e.subject IN (s, 'skip-' || s)
	UNION ALL
	SELECT 'outbox', format('%s %s %s %s %s', o.purpose, o.event, o.previous_status, o.status,
				o.event_id = (SELECT max(e.id) FROM consent.audit_events e
							   WHERE e.id <= o.event_id AND e.subject = s))
	  FROM consent.outbox o
	 WHERE o.subject IN (s, 'skip-' || s)
	UNION ALL
	SELECT 'trigger', item FROM firings(s)
	UNION ALL
	SELECT 'trigger order', md5(string_agg(item, ' | ' ORDER BY n)) FROM firings(s)
	ORDER BY 1, 2
$$;

-- The direct path: no DEBUG1 line.
INSERT INTO trigger_log (what) VALUES ('mark direct');
SET client_min_messages = debug1;
CALL choices('direct');
RESET client_min_messages;

-- The statement, through SPI: a column the writer does not set.
ALTER TABLE consent.records ADD COLUMN note text DEFAULT 'a default';
INSERT INTO trigger_log (what) VALUES ('mark one');
SET client_min_messages = debug1;
SELECT consent.grant('one', 'ads');
RESET client_min_messages;
INSERT INTO trigger_log (what) VALUES ('mark spi');
CALL choices('spi');
SELECT subject, note FROM consent.records WHERE subject IN ('one', 'spi') ORDER BY 1, 2;
ALTER TABLE consent.records DROP COLUMN note;
INSERT INTO trigger_log (what) VALUES ('mark after');

-- Both paths: the same rows, events, notifications and trigger firings.
SELECT what, item, d.n AS direct, s.n AS spi
  FROM (SELECT what, item, count(*) AS n FROM outcome('direct') GROUP BY 1, 2) d
  FULL JOIN (SELECT what, item, count(*) AS n FROM outcome('spi') GROUP BY 1, 2) s USING (what, item)
 WHERE d.n IS DISTINCT FROM s.n
 ORDER BY 1, 2;
SELECT * FROM outcome('direct') WHERE what <> 'trigger order';
SELECT item FROM firings('direct') ORDER BY n;
SELECT ok FROM consent.verify_audit();
DROP TRIGGER t_bs ON consent.records;
DROP TRIGGER t_as ON consent.records;
DROP TRIGGER t_br ON consent.records;
DROP TRIGGER t_ar ON consent.records;
DROP TRIGGER t_ar_status ON consent.records;
DROP TRIGGER t_ar_subject ON consent.records;

-- The stored times: effective_at is the transaction's, recorded_at the
-- wall clock's.
BEGIN;
SELECT consent.grant('times', 'ads');
SELECT effective_at = now() AS effective_now,
	   recorded_at BETWEEN now() AND clock_timestamp() AS recorded_in_call
  FROM consent.records WHERE subject = 'times';
COMMIT;

-- A column of another type than the writer's: through the statement,
-- whose input checks apply; the direct path again once the type is back.
ALTER TABLE consent.records ALTER COLUMN reason TYPE varchar(20);
\i sql/include/try.sql
SET client_min_messages = debug1;
SELECT state, message, unchanged FROM pg_temp.try($$SELECT consent.withdraw('typed', 'ads', repeat('x', 30))$$);
RESET client_min_messages;
ALTER TABLE consent.records ALTER COLUMN reason TYPE text;
SET client_min_messages = debug1;
SELECT state, message, unchanged FROM pg_temp.try($$SELECT consent.withdraw('typed', 'ads', repeat('x', 30))$$);
RESET client_min_messages;

-- CHECK constraints are prepared once per session and follow DDL, and the
-- functions they call.
CREATE FUNCTION source_ok(s text) RETURNS boolean LANGUAGE sql IMMUTABLE
	AS $$ SELECT s IS DISTINCT FROM 'kiosk' $$;
ALTER TABLE consent.records ADD CONSTRAINT no_kiosk CHECK (public.source_ok(source));
ALTER TABLE consent.records ADD CONSTRAINT own_table CHECK (tableoid = 'consent.records'::regclass);
SET client_min_messages = debug1;
SELECT state, message, unchanged FROM pg_temp.try($$SELECT consent.grant('k1', 'ads', source => 'kiosk')$$);
SELECT state, message, unchanged FROM pg_temp.try($$SELECT consent.grant('k1', 'ads', source => 'web')$$);
SELECT state, message, unchanged FROM pg_temp.try($$SELECT consent.deny('k1', 'ads', source => 'kiosk')$$);
RESET client_min_messages;
CREATE OR REPLACE FUNCTION source_ok(s text) RETURNS boolean LANGUAGE sql IMMUTABLE
	AS $$ SELECT s IS DISTINCT FROM 'web' $$;
SELECT state, message, unchanged FROM pg_temp.try($$SELECT consent.deny('k1', 'ads', source => 'web')$$);
ALTER TABLE consent.records DROP CONSTRAINT no_kiosk, DROP CONSTRAINT own_table;
SELECT state, message, unchanged FROM pg_temp.try($$SELECT consent.deny('k1', 'ads', source => 'web')$$);
SELECT status, source FROM consent.records WHERE subject = 'k1';
DROP FUNCTION source_ok(text);

-- Constraints whose expressions keep state between rows (a whole-row
-- reference, a long IN list), over several calls of one session.
ALTER TABLE consent.records
	ADD CONSTRAINT whole_row CHECK (octet_length(records::text) < 2000),
	ADD CONSTRAINT long_list CHECK (method IN ('api', 'web_form', 'paper', 'phone', 'email',
											  'sms', 'kiosk', 'letter', 'import', 'app'));
SET client_min_messages = debug1;
SELECT state, message, unchanged FROM pg_temp.try($$SELECT consent.grant('w1', 'ads')$$);
SELECT state, message, unchanged FROM pg_temp.try($$SELECT consent.grant('w2', 'ads', method => 'paper')$$);
SELECT state, message, unchanged FROM pg_temp.try($$SELECT consent.grant('w3', 'ads', method => 'fax')$$);
SELECT state, message, unchanged FROM pg_temp.try($$SELECT consent.deny('w1', 'ads', source => repeat('x', 3000))$$);
SELECT state, message, unchanged FROM pg_temp.try($$SELECT consent.deny('w1', 'ads', method => 'app')$$);
RESET client_min_messages;

-- A constraint violation caught by the caller, then more choices in the
-- same transaction and the next: the failed evaluation is not reused.
DO $$
BEGIN
	BEGIN
		PERFORM consent.grant('caught', 'ads', method => 'fax');
	EXCEPTION WHEN check_violation THEN
		RAISE NOTICE 'caught: %', SQLERRM;
	END;
	PERFORM consent.grant('caught', 'ads', method => 'phone');
	PERFORM consent.deny('caught', 'news', method => 'sms');
END
$$;
SELECT state, message, unchanged FROM pg_temp.try($$SELECT consent.withdraw('caught', 'ads', method => 'fax')$$);
SELECT state, message, unchanged FROM pg_temp.try($$SELECT consent.withdraw('caught', 'ads', method => 'email')$$);
SELECT p.key, r.status, r.method FROM consent.records r JOIN consent.purposes p ON p.id = r.purpose_id
 WHERE r.subject = 'caught' ORDER BY 1;

-- A choice recorded from a trigger of another choice (nested calls, the
-- inner one with constraints of its own preparing) under the same checks.
CREATE FUNCTION also_news() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.subject LIKE 'nest%' AND NEW.purpose_id <> (SELECT id FROM consent.purposes WHERE key::text = 'news') THEN
		PERFORM consent.grant(NEW.subject, 'news', method => 'letter');
	END IF;
	RETURN NULL;
END
$$;
CREATE TRIGGER also_news AFTER INSERT ON consent.records FOR EACH ROW EXECUTE FUNCTION also_news();
SET client_min_messages = debug1;
SELECT state, message, unchanged FROM pg_temp.try($$SELECT consent.grant('nest1', 'ads', method => 'app')$$);
SELECT state, message, unchanged FROM pg_temp.try($$SELECT consent.grant('nest2', 'ads', method => 'kiosk', source => repeat('x', 3000))$$);
RESET client_min_messages;
DROP TRIGGER also_news ON consent.records;
DROP FUNCTION also_news();
SELECT r.subject, p.key, r.status, r.method FROM consent.records r JOIN consent.purposes p ON p.id = r.purpose_id
 WHERE r.subject LIKE 'nest%' ORDER BY 1, 2;
SELECT e.subject, e.purpose, e.action, e.method FROM consent.audit_events e
 WHERE e.subject LIKE 'nest%' ORDER BY e.id;
ALTER TABLE consent.records DROP CONSTRAINT whole_row, DROP CONSTRAINT long_list;

-- Another unique index on the key, or another default for recorded_at:
-- the statement, which honours them.
CREATE UNIQUE INDEX records_again ON consent.records (purpose_id, subject);
SET client_min_messages = debug1;
SELECT consent.grant('u1', 'ads');
RESET client_min_messages;
DROP INDEX consent.records_again;
ALTER TABLE consent.records ALTER COLUMN recorded_at SET DEFAULT '2000-01-01 00:00+00';
SET client_min_messages = debug1;
SELECT consent.grant('u2', 'ads');
RESET client_min_messages;
SELECT recorded_at = '2000-01-01 00:00+00' AS default_used FROM consent.records WHERE subject = 'u2';
ALTER TABLE consent.records ALTER COLUMN recorded_at SET DEFAULT pg_catalog.clock_timestamp();
SET client_min_messages = debug1;
SELECT consent.grant('u3', 'ads');
RESET client_min_messages;

-- A rule on the table: the statement, which refuses ON CONFLICT then.
CREATE RULE note_insert AS ON INSERT TO consent.records DO ALSO NOTIFY records_changed;
SET client_min_messages = debug1;
SELECT state, message, unchanged FROM pg_temp.try($$SELECT consent.grant('ruled', 'ads')$$);
RESET client_min_messages;
DROP RULE note_insert ON consent.records;

-- A BEFORE UPDATE trigger that updates the row itself: the statement's
-- error (27000), nothing stored.
CREATE FUNCTION touch_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF pg_trigger_depth() = 1 AND NEW.subject = 'touchy' THEN
		UPDATE consent.records SET reason = 'touched' WHERE subject = NEW.subject;
	END IF;
	RETURN NEW;
END
$$;
SELECT consent.grant('touchy', 'ads');
CREATE TRIGGER touch BEFORE UPDATE ON consent.records FOR EACH ROW EXECUTE FUNCTION touch_row();
SELECT state, message, unchanged FROM pg_temp.try($$SELECT consent.withdraw('touchy', 'ads')$$);
DROP TRIGGER touch ON consent.records;
DROP FUNCTION touch_row();

-- A publication that needs a replica identity for updates: checked before
-- anything is written, as the statement checks it when it starts.
SET client_min_messages = error;
CREATE PUBLICATION rw_pub FOR TABLE consent.records WHERE (method = 'api');
RESET client_min_messages;
SELECT state, message, unchanged FROM pg_temp.try($$SELECT consent.grant('published', 'ads')$$);
DROP PUBLICATION rw_pub;

-- Run one statement as the current role; its SQLSTATE and message.
CREATE FUNCTION pg_temp.err(stmt text, OUT state text, OUT message text)
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	state := '00000';
	message := 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
END
$$;
CREATE ROLE rw_caller;
GRANT USAGE ON SCHEMA consent TO rw_caller;

-- A caller that does not own the table (apply_choice called directly):
-- its privileges are checked as the statement checks them (INSERT,
-- UPDATE, and SELECT of the key columns).
GRANT EXECUTE ON FUNCTION consent.apply_choice(text, text, consent.purpose_key, text, text, text, timestamptz, jsonb, text)
	TO rw_caller;
GRANT INSERT, UPDATE ON consent.records TO rw_caller;
SET ROLE rw_caller;
SET client_min_messages = debug1;
SELECT * FROM pg_temp.err($$SELECT consent.apply_choice('grant', 'nonowner', 'ads', NULL, 'api', NULL, NULL, NULL, NULL)$$);
RESET client_min_messages;
RESET ROLE;
GRANT SELECT (subject, purpose_id) ON consent.records TO rw_caller;
SET ROLE rw_caller;
SET client_min_messages = debug1;
SELECT * FROM pg_temp.err($$SELECT consent.apply_choice('grant', 'nonowner', 'ads', NULL, 'api', NULL, NULL, NULL, NULL)$$);
RESET client_min_messages;
RESET ROLE;
SELECT subject, status FROM consent.records WHERE subject = 'nonowner';

-- Row security: the owner is exempt unless it is forced, and needs its
-- privileges like anyone else.  A table owned by a role that is not a
-- superuser (rolled back at the end).
BEGIN;
ALTER TABLE consent.records OWNER TO rw_caller;
ALTER FUNCTION consent.deny(text, consent.purpose_key, text, text, text, jsonb) OWNER TO rw_caller;
CREATE POLICY no_denials ON consent.records USING (true) WITH CHECK (status <> 'denied');
ALTER TABLE consent.records ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
SET ROLE rw_caller;
SET client_min_messages = debug1;
SELECT * FROM pg_temp.err($$SELECT consent.deny('rls', 'ads')$$);
RESET client_min_messages;
RESET ROLE;
ALTER TABLE consent.records NO FORCE ROW LEVEL SECURITY;
SET ROLE rw_caller;
SET client_min_messages = debug1;
SELECT * FROM pg_temp.err($$SELECT consent.deny('rls', 'ads')$$);
RESET client_min_messages;
REVOKE UPDATE ON consent.records FROM rw_caller;
SELECT * FROM pg_temp.err($$SELECT consent.deny('rls2', 'ads')$$);
RESET ROLE;
SELECT subject, status FROM consent.records WHERE subject IN ('rls', 'rls2');
ROLLBACK;
SELECT ok FROM consent.verify_audit();

SET client_min_messages = warning;
DROP EXTENSION consent CASCADE;
DROP OWNED BY rw_caller;
DROP ROLE rw_caller;
DROP TABLE trigger_log;
DROP FUNCTION log_trigger();
DROP PROCEDURE choices(text);
DROP FUNCTION outcome(text);
DROP FUNCTION firings(text);
