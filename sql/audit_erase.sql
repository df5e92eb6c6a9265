--
-- Erasure (GDPR Art. 17): consent.erase_subject() replaces a person's
-- identifier everywhere by a keyed pseudonym, records the erasure as an
-- event, and leaves counts, views and verify_audit() working.
--
\i sql/include/audit_setup.sql

-- Rows of every table of the extension whose text form contains s.
CREATE FUNCTION pg_temp.mentions(s text) RETURNS TABLE (tbl text, n bigint)
LANGUAGE plpgsql AS $$
DECLARE
	t regclass;
BEGIN
	FOR t IN SELECT c.oid FROM pg_class c
			  WHERE c.relnamespace = 'consent'::regnamespace AND c.relkind IN ('r', 'p')
			  ORDER BY c.relname
	LOOP
		tbl := t::text;
		EXECUTE format('SELECT count(*) FROM %s x WHERE strpos(to_jsonb(x)::text, $1) > 0', t)
			INTO n USING s;
		RETURN NEXT;
	END LOOP;
END
$$;

SELECT consent.define_purpose('marketing', 'Marketing') IS NOT NULL AS defined;
SELECT consent.define_purpose('marketing.email', 'E-mail') IS NOT NULL AS defined;
SELECT consent.define_purpose('research', 'Research', 'explicit_consent') IS NOT NULL AS defined;

-- The person acts for herself, and her address turns up in free text too.
SET consent.actor = 'self:alice.erasure@example.org';
SET application_name = 'portal alice.erasure@example.org';
SELECT consent.grant('alice.erasure@example.org', 'marketing.email', method => 'web_form',
					 source => 'newsletter box for alice.erasure@example.org',
					 evidence => '{"email": "alice.erasure@example.org", "ip": "198.51.100.7",
								   "alice.erasure@example.org": ["alice.erasure@example.org", 1]}');
SELECT consent.grant('alice.erasure@example.org', 'research');
SELECT consent.withdraw('alice.erasure@example.org', 'research',
						'mail from alice.erasure@example.org.');
RESET consent.actor;
RESET application_name;
SELECT consent.grant('bob', 'marketing', evidence => '{"referrer": "alice.erasure@example.org"}');
SELECT consent.grant('42', 'marketing');
SELECT consent.seal() AS sealed_before;

SELECT * FROM pg_temp.mentions('alice.erasure@example.org') WHERE n > 0;
CREATE TEMP TABLE before AS SELECT * FROM consent.purpose_summary;
SELECT count(*) AS events_before FROM consent.audit_events \gset

-- Refused: no subject, no reason, an empty subject, an actor naming her.
SELECT pg_temp.outcome($$SELECT consent.erase_subject(NULL, 'x')$$);
SELECT pg_temp.outcome($$SELECT consent.erase_subject('alice.erasure@example.org', NULL)$$);
SELECT pg_temp.outcome($$SELECT consent.erase_subject('', 'x')$$);
SET consent.actor = 'alice.erasure@example.org';
SELECT pg_temp.outcome($$SELECT consent.erase_subject('alice.erasure@example.org', 'x')$$);
RESET consent.actor;
SELECT count(*) = :events_before AS nothing_changed FROM consent.audit_events;

-- Erase.  The result is the id of the erase event.
SET consent.actor = 'dpo:jane';
SELECT consent.erase_subject('alice.erasure@example.org', 'Art. 17 request #7 from alice.erasure@example.org')
	AS erase_event \gset
RESET consent.actor;
SELECT consent.pseudonym('alice.erasure@example.org') AS p \gset
SELECT :'p' ~ '^erased:[0-9a-f]{64}$' AS pseudonym_format;
SELECT id = :erase_event AS returned_id, subject = :'p' AS by_pseudonym, action, reason = 'Art. 17 request #7 from ' || :'p' AS reason_redacted,
	   evidence, actor, method
  FROM consent.audit_events WHERE id = :erase_event;

-- The identifier is nowhere in any consent table, not even in bob's
-- evidence; bob's chain still verifies (the replaced value's commitment
-- is kept with the event).
SELECT count(*) >= 8 AS all_tables_searched,
	   count(*) FILTER (WHERE n > 0) AS tables_mentioning
  FROM pg_temp.mentions('alice.erasure@example.org');
SELECT * FROM pg_temp.mentions('alice.erasure@example.org') WHERE n > 0;
SELECT replace(source, :'p', 'P') AS source, replace(reason, :'p', 'P') AS reason,
	   replace(actor, :'p', 'P') AS actor, replace(application_name, :'p', 'P') AS application_name,
	   replace(evidence::text, :'p', 'P') AS evidence
  FROM consent.audit_events WHERE subject = :'p' ORDER BY id;
SELECT replace(subject, :'p', 'P') AS subject, replace(source, :'p', 'P') AS source,
	   replace(actor, :'p', 'P') AS actor, replace(evidence::text, :'p', 'P') AS evidence
  FROM consent.records ORDER BY 1, purpose_id;
SELECT subject, replace(evidence::text, :'p', 'P') AS evidence,
	   (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(redactions) k) AS redacted
  FROM consent.audit_events WHERE subject = 'bob';
-- Which fields were replaced (commitment kept) and which kept (key kept).
SELECT e.id, f.key AS field, (SELECT k FROM jsonb_object_keys(f.value) k) AS stored
  FROM consent.audit_events e, jsonb_each(e.redactions) f
 WHERE e.subject = :'p' ORDER BY e.id, f.key;
SELECT replace(subject, :'p', 'P') AS chain, erased_at IS NOT NULL AS erased
  FROM consent.audit_chains ORDER BY 1;

-- Counts, views and verification still work.
SELECT count(*) - :events_before AS new_events FROM consent.audit_events;
SELECT (SELECT count(*) FROM (SELECT * FROM before EXCEPT SELECT * FROM consent.purpose_summary) d) AS summary_changes;
SELECT * FROM consent.verify_audit();
SELECT ok, events_checked FROM consent.verify_audit(:'p');
SELECT replace(subject, :'p', 'P') AS subject, purpose, status, allowed FROM consent.current_consents ORDER BY 1, 2;
SELECT consent.seal() AS sealed_after;
SELECT * FROM consent.verify_audit();
SELECT jsonb_array_length(consent.export_subject(:'p')->'history') AS exported_history;

-- A kept field of an erased event is still protected; the chain secret
-- is new, so the old commitments cannot be tested against guesses.
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE consent.audit_events SET method = 'paper' WHERE subject = :'p' AND action = 'grant' AND purpose = 'research';
SELECT ok, reason FROM consent.verify_audit(:'p');
ROLLBACK;

-- The person comes back and is erased again: a second pseudonym, since
-- the first chain is closed.
SELECT consent.grant('alice.erasure@example.org', 'marketing');
SELECT consent.erase_subject('alice.erasure@example.org', 'second request') IS NOT NULL AS erased_again;
SELECT replace(subject, :'p', 'P') AS subject, count(*) AS events
  FROM consent.audit_events WHERE subject LIKE 'erased:%' GROUP BY 1 ORDER BY 1;
SELECT * FROM pg_temp.mentions('alice.erasure@example.org') WHERE n > 0;
SELECT * FROM consent.verify_audit();

-- Someone we never heard of: the request is still recorded.
SELECT consent.erase_subject('nobody@example.org', 'request #9') IS NOT NULL AS recorded;
SELECT action, reason, evidence FROM consent.audit_events
 WHERE subject = consent.pseudonym('nobody@example.org');

-- bigint and uuid subjects.
SELECT consent.erase_subject(42::bigint, 'request #10') IS NOT NULL AS erased_bigint;
SELECT count(*) AS left_for_42 FROM consent.records WHERE subject = '42';
SELECT consent.erase_subject('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, 'request #11') IS NOT NULL AS erased_uuid;

-- Whole tokens only: another identifier that merely contains this one,
-- or a number that contains 42, is left alone.
SELECT consent.audit_redact('42, 4242, id-42, 42-x, 42.5, (42). x@42', '42', 'P') AS text_redacted;
SELECT consent.audit_redact('{"n": 42, "m": 420, "42": "a 42"}'::jsonb, '42', 'P') AS jsonb_redacted;
SELECT consent.audit_redact('to a@b.org, not a@b.org.uk; a@b.org.', 'a@b.org', 'P') AS email_redacted;

-- Only erase_subject() opens the guards, and only for its own statements.
SELECT pg_temp.outcome($$UPDATE consent.audit_events SET reason = 'x' WHERE id = 1$$);
SELECT * FROM consent.verify_audit();


-- Leave a fresh extension behind for the files that follow.
SET client_min_messages = warning;
DROP EXTENSION consent CASCADE;
CREATE EXTENSION consent;
RESET client_min_messages;
