--
-- The canonical encoding of docs/audit.md, recomputed in plain SQL with
-- PostgreSQL's own sha256() (OpenSSL) and an HMAC written out in SQL, must
-- give the hash every event carries and the root every seal carries.  This
-- checks the documentation and the extension's SHA-256 (src/sha256.c)
-- independently of the C code that verify_audit() uses: messages of many
-- lengths (evidence of 1 to 140 characters) cross every block boundary.
--
\i sql/include/audit_setup.sql

-- key XOR a repeated pad byte, the key first padded to 64 bytes
CREATE FUNCTION pg_temp.pad(key bytea, b integer) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
	r bytea := key || ('\x' || repeat('00', 64 - length(key)))::bytea;
BEGIN
	FOR i IN 0..63 LOOP
		r := set_byte(r, i, get_byte(r, i) # b);
	END LOOP;
	RETURN r;
END
$$;
CREATE FUNCTION pg_temp.hmac(key bytea, msg bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT AS $$
	SELECT sha256(pg_temp.pad(key, 92) || sha256(pg_temp.pad(key, 54) || msg))
$$;
-- E(v): 0x00 for NULL, else 0x01, the length (4 bytes, big-endian), the bytes
CREATE FUNCTION pg_temp.e(v bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE WHEN v IS NULL THEN '\x00'::bytea
				ELSE '\x01'::bytea || int4send(length(v)) || v END
$$;
CREATE FUNCTION pg_temp.ts(t timestamptz) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
	SELECT int8send(((extract(epoch FROM t) - 946684800) * 1000000)::bigint)
$$;
-- P(v): 0x02 and the commitment SHA-256(K || E(v)), K from the redactions
-- when erasure left one there, else HMAC(chain secret, tag || id || name)
CREATE FUNCTION pg_temp.p(e consent.audit_events, secret bytea, field text, v bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
	SELECT '\x02'::bytea || coalesce(
		decode(e.redactions -> field ->> 'commitment', 'hex'),
		sha256(coalesce(decode(e.redactions -> field ->> 'key', 'hex'),
						pg_temp.hmac(secret, 'consent.audit.v1'::bytea || '\x00'::bytea
											 || int8send(e.id) || convert_to(field, 'UTF8')))
			   || pg_temp.e(v)))
$$;
CREATE FUNCTION pg_temp.ref_hash(e consent.audit_events, secret bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
	SELECT sha256('consent.audit.v1'::bytea || '\x00'::bytea || e.prev_hash
		|| pg_temp.e(int8send(e.id))
		|| pg_temp.e(pg_temp.ts(e.at))
		|| pg_temp.e(int8send(e.xid::text::bigint))
		|| pg_temp.p(e, secret, 'subject', textsend(e.subject))
		|| pg_temp.e(textsend(e.purpose))
		|| pg_temp.e(textsend(e.action))
		|| pg_temp.e(textsend(e.old_status::text))
		|| pg_temp.e(textsend(e.new_status::text))
		|| pg_temp.e(textsend(e.notice_key))
		|| pg_temp.e(int4send(e.notice_version))
		|| pg_temp.e(e.notice_sha256)
		|| pg_temp.e(pg_temp.ts(e.expires_at))
		|| pg_temp.e(pg_temp.ts(e.row_stamp))
		|| pg_temp.e(textsend(e.method))
		|| pg_temp.p(e, secret, 'source', textsend(e.source))
		|| pg_temp.p(e, secret, 'reason', textsend(e.reason))
		|| pg_temp.p(e, secret, 'evidence', textsend(e.evidence::text))
		|| pg_temp.e(textsend(e.db_user))
		|| pg_temp.e(textsend(e."session_user"))
		|| pg_temp.p(e, secret, 'application_name', textsend(e.application_name))
		|| pg_temp.e(textsend(CASE WHEN e.client_addr IS NOT NULL THEN format('%s', e.client_addr) END))
		|| pg_temp.p(e, secret, 'actor', textsend(e.actor)))
$$;

-- A history with every kind of field: registry events, a notice, choices
-- with source, reason, evidence and actor, an expiry, an erasure.
SELECT consent.define_purpose('marketing', 'Marketing') IS NOT NULL AS defined;
SELECT consent.publish_notice('privacy', 1, 'We use your e-mail address.', ARRAY['marketing']::consent.purpose_key[]) IS NOT NULL AS published;
SET application_name = 'encoding test';
SET consent.actor = 'agent:7';
SELECT count(*) AS granted
  FROM generate_series(1, 140) i,
	   LATERAL consent.grant('person-' || i, 'marketing', notice => 'privacy@1', source => 'form ' || i,
							 evidence => jsonb_build_object('k', repeat('x', i))) g;
RESET consent.actor;
-- the rest of the history through the portable SHA-256 code (the first
-- part used the CPU's SHA instructions where it has them)
SET consent.sha256_portable = on;
SELECT consent.withdraw('person-7', 'marketing', reason => 'no longer interested, person-7 says');
SELECT consent.deny('alice@example.org', 'marketing', source => 'mail from alice@example.org');
SELECT consent.grant('bob', 'marketing', evidence => '{"ip": "192.0.2.1", "note": "friend of alice@example.org"}');
SELECT consent.seal() IS NOT NULL AS sealed;
UPDATE consent.records SET expires_at = now() - interval '1 second' WHERE subject = 'person-9';
SELECT expired FROM consent.sweep();
SELECT consent.erase_subject('alice@example.org', 'request of alice@example.org') IS NOT NULL AS erased;
SELECT consent.seal() IS NOT NULL AS sealed;
RESET application_name;
RESET consent.sha256_portable;

-- every event: the recomputed hash, and the link to its chain's previous event
SELECT count(*) AS events,
	   count(*) FILTER (WHERE pg_temp.ref_hash(e, c.secret) = e.hash) AS hash_matches,
	   count(*) FILTER (WHERE e.prev_hash = coalesce(
			(SELECT p.hash FROM consent.audit_events p
			  WHERE p.subject IS NOT DISTINCT FROM e.subject AND p.id < e.id
			  ORDER BY p.id DESC LIMIT 1), '\x0000000000000000000000000000000000000000000000000000000000000000')) AS links_match,
	   count(*) FILTER (WHERE e.redactions IS NOT NULL) AS erased_events,
	   count(DISTINCT length(e.evidence::text)) >= 140 AS many_lengths
  FROM consent.audit_events e
  LEFT JOIN consent.audit_chains c ON c.subject = coalesce(e.subject, '');

-- the check can fail: a changed field, plain or personal, changes the hash
SELECT pg_temp.ref_hash(e, c.secret) = e.hash AS original,
	   pg_temp.ref_hash(jsonb_populate_record(e, '{"source": "form 4"}'), c.secret) = e.hash AS changed_source,
	   pg_temp.ref_hash(jsonb_populate_record(e, '{"method": "paper"}'), c.secret) = e.hash AS changed_method,
	   pg_temp.ref_hash(e, sha256(c.secret)) = e.hash AS other_secret
  FROM consent.audit_events e
  JOIN consent.audit_chains c ON c.subject = e.subject
 WHERE e.subject = 'person-3' AND e.action = 'grant';

-- notice_version is covered too: an integer field once entered the hash as
-- its length instead of its value, so a changed version went unnoticed
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE consent.audit_events SET notice_version = 2 WHERE subject = 'person-5';
SELECT ok, bad_event_id = (SELECT min(id) FROM consent.audit_events WHERE subject = 'person-5') AS at_person_5, reason
  FROM consent.verify_audit();
ROLLBACK;

-- every seal: the root over its range, recomputed
SELECT count(*) AS seals,
	   count(*) FILTER (WHERE s.root = sha256('consent.seal.v1'::bytea || '\x00'::bytea || s.prev_root
			|| int8send(s.from_event_id) || int8send(s.upto_event_id)
			|| int8send((SELECT count(*) FROM consent.audit_events e
						  WHERE e.id > s.from_event_id AND e.id <= s.upto_event_id))
			|| coalesce((SELECT string_agg(int8send(h.id) || h.hash, ''::bytea ORDER BY h.id)
						   FROM (SELECT DISTINCT ON (coalesce(e.subject, '')) e.id, e.hash
								   FROM consent.audit_events e
								  WHERE e.id > s.from_event_id AND e.id <= s.upto_event_id
								  ORDER BY coalesce(e.subject, ''), e.id DESC) h), ''::bytea))) AS roots_match
  FROM consent.seals s;

SELECT ok, events_checked, seals_checked FROM consent.verify_audit();

-- The seal finds the chains' last events in one pass with a hash table
-- when that fits in maintenance_work_mem, and by sorting otherwise: one
-- root either way.  1 MB is too little for a range of 1,000,000 ids.
CREATE FUNCTION pg_temp.seal_both_ways(OUT in_memory bytea, OUT sorted bytea, OUT heads bigint, OUT events bigint)
LANGUAGE plpgsql AS $$
BEGIN
	SET LOCAL maintenance_work_mem = '256MB';
	SELECT r.root, r.heads, r.events INTO in_memory, heads, events
	  FROM consent.audit_seal_root(0, 1000000, '\x00'::bytea) r;
	SET LOCAL maintenance_work_mem = '1MB';
	SELECT r.root INTO sorted
	  FROM consent.audit_seal_root(0, 1000000, '\x00'::bytea) r
	 WHERE r.heads = seal_both_ways.heads AND r.events = seal_both_ways.events;
END
$$;
CREATE FUNCTION pg_temp.seal_documented(n bigint) RETURNS bytea
LANGUAGE sql AS $$
	SELECT sha256('consent.seal.v1'::bytea || '\x00'::bytea || '\x00'::bytea
			|| int8send(0) || int8send(1000000) || int8send(n)
			|| (SELECT string_agg(int8send(h.id) || h.hash, ''::bytea ORDER BY h.id)
				  FROM (SELECT DISTINCT ON (coalesce(e.subject, '')) e.id, e.hash
						  FROM consent.audit_events e
						 ORDER BY coalesce(e.subject, ''), e.id DESC) h))
$$;
SELECT heads, events = (SELECT count(*) FROM consent.audit_events) AS every_event,
	   in_memory = sorted AS same_root, in_memory = pg_temp.seal_documented(events) AS as_documented
  FROM pg_temp.seal_both_ways();
-- The same with an event forged into the registry's group: a subject of ''
-- (which no record can have) is grouped with the registry's NULL, as
-- coalesce(subject, '') groups it.
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE consent.audit_events SET subject = '' WHERE id = (SELECT max(id) FROM consent.audit_events WHERE subject = 'person-5');
SELECT heads, in_memory = sorted AS same_root, in_memory = pg_temp.seal_documented(events) AS as_documented
  FROM pg_temp.seal_both_ways();
ROLLBACK;

SET client_min_messages = warning;
DROP EXTENSION consent CASCADE;
CREATE EXTENSION consent;
RESET client_min_messages;
