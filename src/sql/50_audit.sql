--
-- Audit: an append-only, tamper-evident trail of every change to records,
-- purposes and notices, written by C triggers (src/audit.c) in the same
-- transaction; seals, verification, BI views, receipts, export and erasure.
-- docs/audit.md describes the design and the exact hash encoding.
--

--
-- The per-database pseudonymisation key.  NOT registered with
-- pg_extension_config_dump: pg_dump never writes it, so a dump alone cannot
-- link a pseudonym back to the identifier it replaced.  CREATE EXTENSION
-- makes a fresh one (so a restored database has a new key; see docs).
--
CREATE TABLE consent.audit_key (
	singleton	boolean NOT NULL DEFAULT true PRIMARY KEY CHECK (singleton),
	key			bytea NOT NULL CHECK (pg_catalog.octet_length(key) = 32),
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE consent.audit_key IS
	'Per-database key of the erasure pseudonyms (HMAC-SHA256); deliberately left out of pg_dump';
COMMENT ON COLUMN consent.audit_key.singleton IS 'always true: the table holds one row';
COMMENT ON COLUMN consent.audit_key.key IS '32 random bytes';
COMMENT ON COLUMN consent.audit_key.created_at IS 'when the key was made (CREATE EXTENSION)';

-- gen_random_uuid() draws from pg_strong_random(): 2 x 122 random bits.
INSERT INTO consent.audit_key (key)
VALUES (pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
		OPERATOR(pg_catalog.||) pg_catalog.uuid_send(pg_catalog.gen_random_uuid()));

--
-- One row per hash chain: per data subject, plus the registry chain ('')
-- for purposes and notices.  The row is the chain's lock (writers of one
-- subject serialise on it, writers of different subjects never meet) and
-- holds the chain's secret, from which the commitments to its personal
-- fields are derived.  Erasure replaces the secret, which makes the old
-- commitments impossible to test against guessed identifiers.
--
CREATE TABLE consent.audit_chains (
	subject		text COLLATE "C" NOT NULL PRIMARY KEY,
	secret		bytea NOT NULL CHECK (pg_catalog.octet_length(secret) = 32),
	started_at	timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	erased_at	timestamptz
);
COMMENT ON TABLE consent.audit_chains IS
	'Hash chains of the audit trail: one per subject, plus the registry chain ''''; holds each chain''s secret';
COMMENT ON COLUMN consent.audit_chains.subject IS
	'the subject the chain belongs to ('''' for the registry chain of purposes and notices)';
COMMENT ON COLUMN consent.audit_chains.secret IS
	'32 random bytes; key material of the commitments to personal fields (replaced on erasure)';
COMMENT ON COLUMN consent.audit_chains.started_at IS 'when the chain''s first event was written';
COMMENT ON COLUMN consent.audit_chains.erased_at IS 'when consent.erase_subject() pseudonymised the chain';

CREATE SEQUENCE consent.audit_events_id_seq AS bigint CACHE 1;
COMMENT ON SEQUENCE consent.audit_events_id_seq IS
	'ids of consent.audit_events; must keep CACHE 1 (seals rely on ids being handed out in order)';

CREATE TABLE consent.audit_events (
	id			bigint NOT NULL PRIMARY KEY,
	at			timestamptz NOT NULL,
	xid			xid8 NOT NULL,
	subject		text COLLATE "C",
	purpose		text,
	action		text NOT NULL,
	old_status	consent.status,
	new_status	consent.status,
	notice_key	text,
	notice_version integer,
	notice_sha256 bytea,
	expires_at	timestamptz,
	row_stamp	timestamptz,
	method		text,
	source		text,
	reason		text,
	evidence	jsonb,
	db_user		text,
	"session_user" text,
	application_name text,
	client_addr inet,
	actor		text,
	redactions	jsonb,
	prev_hash	bytea NOT NULL,
	hash		bytea NOT NULL
);
ALTER SEQUENCE consent.audit_events_id_seq OWNED BY consent.audit_events.id;
CREATE INDEX audit_events_subject_idx ON consent.audit_events (subject, id);
-- Time ranges for BI queries; events arrive in time order, so a BRIN
-- index is small and nearly free to maintain.
CREATE INDEX audit_events_at_idx ON consent.audit_events USING brin (at);

COMMENT ON TABLE consent.audit_events IS
	'Append-only, hash-chained trail of every change to consent.records, consent.purposes and consent.notices';
COMMENT ON COLUMN consent.audit_events.id IS 'event id, in the order events were appended';
COMMENT ON COLUMN consent.audit_events.at IS 'wall-clock time the event was written (clock_timestamp)';
COMMENT ON COLUMN consent.audit_events.xid IS 'top-level transaction that wrote the event';
COMMENT ON COLUMN consent.audit_events.subject IS 'the person (NULL for purpose and notice events); a pseudonym after erasure';
COMMENT ON COLUMN consent.audit_events.purpose IS 'purpose key as text';
COMMENT ON COLUMN consent.audit_events.action IS
	'grant, deny, withdraw, confirm, expire, delete (records); define, update, retire, delete (purposes); publish, update, delete (notices); erase';
COMMENT ON COLUMN consent.audit_events.old_status IS 'status before the change (records events)';
COMMENT ON COLUMN consent.audit_events.new_status IS 'status after the change (records events)';
COMMENT ON COLUMN consent.audit_events.notice_key IS 'key of the notice shown';
COMMENT ON COLUMN consent.audit_events.notice_version IS 'version of the notice shown';
COMMENT ON COLUMN consent.audit_events.notice_sha256 IS
	'SHA-256 of the notice body (of the first-published locale when a version has several)';
COMMENT ON COLUMN consent.audit_events.expires_at IS 'when the recorded grant lapses';
COMMENT ON COLUMN consent.audit_events.row_stamp IS
	'timestamp the audited row carried (records.recorded_at, purposes.created_at, notices.published_at)';
COMMENT ON COLUMN consent.audit_events.method IS 'how the choice was collected';
COMMENT ON COLUMN consent.audit_events.source IS 'collection point';
COMMENT ON COLUMN consent.audit_events.reason IS 'reason given (withdrawal, erasure)';
COMMENT ON COLUMN consent.audit_events.evidence IS
	'proof supplied with the choice; for registry events and deletions, the row itself';
COMMENT ON COLUMN consent.audit_events.db_user IS 'current_user of the caller (outside SECURITY DEFINER functions)';
COMMENT ON COLUMN consent.audit_events."session_user" IS 'session_user';
COMMENT ON COLUMN consent.audit_events.application_name IS 'application_name of the session';
COMMENT ON COLUMN consent.audit_events.client_addr IS 'client address (NULL over a Unix socket)';
COMMENT ON COLUMN consent.audit_events.actor IS 'consent.actor setting when set, else the actor stored with the record';
COMMENT ON COLUMN consent.audit_events.redactions IS
	'set by erasure: per personal field, its commitment (value replaced) or its field key (value kept)';
COMMENT ON COLUMN consent.audit_events.prev_hash IS 'hash of the previous event of the same chain (32 zero bytes for the first)';
COMMENT ON COLUMN consent.audit_events.hash IS 'SHA-256 over the canonical encoding of this event and prev_hash (docs/audit.md)';

CREATE SEQUENCE consent.seals_id_seq AS bigint;
COMMENT ON SEQUENCE consent.seals_id_seq IS 'ids of consent.seals';

CREATE TABLE consent.seals (
	id			bigint NOT NULL DEFAULT pg_catalog.nextval('consent.seals_id_seq') PRIMARY KEY,
	at			timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	from_event_id bigint NOT NULL,
	upto_event_id bigint NOT NULL,
	events		bigint NOT NULL,
	heads		bigint NOT NULL,
	prev_root	bytea NOT NULL,
	root		bytea NOT NULL,
	CHECK (upto_event_id > from_event_id)
);
ALTER SEQUENCE consent.seals_id_seq OWNED BY consent.seals.id;
COMMENT ON TABLE consent.seals IS
	'Seals: each commits the heads of every chain that grew since the previous seal, and that seal''s root';
COMMENT ON COLUMN consent.seals.id IS 'seal id';
COMMENT ON COLUMN consent.seals.at IS 'when the seal was written';
COMMENT ON COLUMN consent.seals.from_event_id IS 'events after this id are covered (the previous seal''s upto_event_id, 0 for the first)';
COMMENT ON COLUMN consent.seals.upto_event_id IS 'events up to and including this id are covered';
COMMENT ON COLUMN consent.seals.events IS 'number of events in the covered range';
COMMENT ON COLUMN consent.seals.heads IS 'number of chain heads committed (chains with events in the range)';
COMMENT ON COLUMN consent.seals.prev_root IS 'root of the previous seal (32 zero bytes for the first)';
COMMENT ON COLUMN consent.seals.root IS 'SHA-256 over prev_root, the range, the event count and the heads (docs/audit.md)';

-- Counts per day, purpose and action of the sealed events, kept by
-- consent.seal() so that consent.activity_daily stays fast on long trails.
CREATE TABLE consent.activity_rollup (
	day			timestamptz NOT NULL,
	purpose		text NOT NULL,
	action		text NOT NULL,
	events		bigint NOT NULL,
	PRIMARY KEY (day, purpose, action)
);
COMMENT ON TABLE consent.activity_rollup IS
	'Derived: events per UTC day, purpose and action for all sealed events (maintained by consent.seal())';
COMMENT ON COLUMN consent.activity_rollup.day IS 'UTC midnight starting the day';
COMMENT ON COLUMN consent.activity_rollup.purpose IS 'purpose key ('''' for events without one)';
COMMENT ON COLUMN consent.activity_rollup.action IS 'event action';
COMMENT ON COLUMN consent.activity_rollup.events IS 'number of events';

--
-- Triggers.  The audit triggers are ordinary (ENABLE ORIGIN) triggers:
-- changes applied with session_replication_role = replica are replicated
-- from a server that audited them already.  So are the guards, which is
-- what lets a superuser tamper in tests, and verify_audit() catch it.
--
CREATE FUNCTION consent.audit_trigger() RETURNS trigger
	AS 'MODULE_PATHNAME', 'consent_audit_trigger'
	LANGUAGE C;
COMMENT ON FUNCTION consent.audit_trigger() IS
	'Internal trigger: appends an audit event per changed row (AFTER ROW), or per truncated row (BEFORE TRUNCATE)';

CREATE FUNCTION consent.audit_guard() RETURNS trigger
	AS 'MODULE_PATHNAME', 'consent_audit_guard'
	LANGUAGE C;
COMMENT ON FUNCTION consent.audit_guard() IS
	'Internal trigger: rejects UPDATE, DELETE and TRUNCATE on the audit tables for every role';

CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON consent.records
	FOR EACH ROW EXECUTE FUNCTION consent.audit_trigger();
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON consent.purposes
	FOR EACH ROW EXECUTE FUNCTION consent.audit_trigger();
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON consent.notices
	FOR EACH ROW EXECUTE FUNCTION consent.audit_trigger();
CREATE TRIGGER audit_truncate BEFORE TRUNCATE ON consent.records
	FOR EACH STATEMENT EXECUTE FUNCTION consent.audit_trigger();
CREATE TRIGGER audit_truncate BEFORE TRUNCATE ON consent.purposes
	FOR EACH STATEMENT EXECUTE FUNCTION consent.audit_trigger();
CREATE TRIGGER audit_truncate BEFORE TRUNCATE ON consent.notices
	FOR EACH STATEMENT EXECUTE FUNCTION consent.audit_trigger();
COMMENT ON TRIGGER audit ON consent.records IS 'appends one audit event per inserted, updated or deleted record';
COMMENT ON TRIGGER audit ON consent.purposes IS 'appends one audit event per defined, changed or deleted purpose';
COMMENT ON TRIGGER audit ON consent.notices IS 'appends one audit event per published, changed or deleted notice';
COMMENT ON TRIGGER audit_truncate ON consent.records IS 'audits TRUNCATE as one delete event per row';
COMMENT ON TRIGGER audit_truncate ON consent.purposes IS 'audits TRUNCATE as one delete event per row';
COMMENT ON TRIGGER audit_truncate ON consent.notices IS 'audits TRUNCATE as one delete event per row';

CREATE TRIGGER append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON consent.audit_events
	FOR EACH STATEMENT EXECUTE FUNCTION consent.audit_guard();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON consent.audit_chains
	FOR EACH STATEMENT EXECUTE FUNCTION consent.audit_guard();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON consent.seals
	FOR EACH STATEMENT EXECUTE FUNCTION consent.audit_guard();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON consent.audit_key
	FOR EACH STATEMENT EXECUTE FUNCTION consent.audit_guard();
COMMENT ON TRIGGER append_only ON consent.audit_events IS 'the trail is append-only; erasure is the one rewrite';
COMMENT ON TRIGGER append_only ON consent.audit_chains IS 'chains change only through erasure';
COMMENT ON TRIGGER append_only ON consent.seals IS 'seals are append-only';
COMMENT ON TRIGGER append_only ON consent.audit_key IS 'the pseudonymisation key never changes';

--
-- C functions
--
CREATE FUNCTION consent.last_event_id() RETURNS bigint
	AS 'MODULE_PATHNAME', 'consent_last_event_id'
	LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION consent.last_event_id() IS
	'Id of the audit event this backend wrote last in the current transaction, NULL if none';

CREATE FUNCTION consent.audit_event_hash(e consent.audit_events, secret bytea) RETURNS bytea
	AS 'MODULE_PATHNAME', 'consent_audit_event_hash'
	LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION consent.audit_event_hash(consent.audit_events, bytea) IS
	'Internal: the hash an event must carry, given its chain''s secret (empty: none; NULL when one is needed)';

CREATE FUNCTION consent.audit_seal_root(from_id bigint, upto_id bigint, prev_root bytea,
	OUT root bytea, OUT heads bigint, OUT events bigint)
	AS 'MODULE_PATHNAME', 'consent_audit_seal_root'
	LANGUAGE C STABLE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION consent.audit_seal_root(bigint, bigint, bytea) IS
	'Internal: the root, head count and event count of a seal over the events in (from_id, upto_id]';

CREATE FUNCTION consent.audit_redact(value text, identifier text, pseudonym text) RETURNS text
	AS 'MODULE_PATHNAME', 'consent_audit_redact_text'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION consent.audit_redact(value jsonb, identifier text, pseudonym text) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'consent_audit_redact_jsonb'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION consent.audit_redact(text, text, text) IS
	'Internal: value with every whole-token occurrence of identifier replaced by pseudonym';
COMMENT ON FUNCTION consent.audit_redact(jsonb, text, text) IS
	'Internal: JSON value with identifier replaced by pseudonym in every key and string (and matching number)';

CREATE FUNCTION consent.audit_redactions(e consent.audit_events, secret bytea,
	identifier text, pseudonym text, whole boolean) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'consent_audit_redactions'
	LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION consent.audit_redactions(consent.audit_events, bytea, text, text, boolean) IS
	'Internal: the redactions an event gets when identifier is erased: commitments of changed fields, and (whole: the person''s own events) keys of kept ones';

CREATE FUNCTION consent.pseudonym(subject text) RETURNS text
	AS 'MODULE_PATHNAME', 'consent_pseudonym'
	LANGUAGE C STABLE STRICT PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION consent.pseudonym(text) IS
	'The pseudonym erase_subject() gives an identifier in this database: erased: and the hex HMAC-SHA256 under the database key';

CREATE FUNCTION consent.seal() RETURNS bigint
	AS 'MODULE_PATHNAME', 'consent_seal'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION consent.seal() IS
	'Seal the trail now: commit the head of every chain that grew since the last seal; returns the seal id (the latest one when nothing is new)';

-- The rewrite; it alone opens the append-only guards, for its own statements.
CREATE FUNCTION consent.audit_erase(subject text, reason text) RETURNS bigint
	AS 'MODULE_PATHNAME', 'consent_audit_erase'
	LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION consent.audit_erase(text, text) IS
	'Internal: the erasure behind consent.erase_subject()';

CREATE FUNCTION consent.erase_subject(subject text, reason text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF subject IS NULL THEN
		RAISE EXCEPTION 'subject must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF reason IS NULL THEN
		RAISE EXCEPTION 'the reason for an erasure must not be null' USING ERRCODE = 'null_value_not_allowed',
			HINT = 'Name the request, e.g. ''GDPR Art. 17 request #1234''.';
	END IF;
	RETURN consent.audit_erase(subject, reason);
END
$$;
COMMENT ON FUNCTION consent.erase_subject(text, text) IS
	'Erase a person (GDPR Art. 17): replace the identifier everywhere by a keyed pseudonym, record an erase event, return its id';

CREATE FUNCTION consent.erase_subject(subject bigint, reason text) RETURNS bigint
	LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
	AS $$ SELECT consent.erase_subject(subject::text, reason) $$;
CREATE FUNCTION consent.erase_subject(subject uuid, reason text) RETURNS bigint
	LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
	AS $$ SELECT consent.erase_subject(subject::text, reason) $$;
COMMENT ON FUNCTION consent.erase_subject(bigint, text) IS 'consent.erase_subject for a bigint subject';
COMMENT ON FUNCTION consent.erase_subject(uuid, text) IS 'consent.erase_subject for a uuid subject';

--
-- Verification
--
CREATE FUNCTION consent.verify_audit(subject text DEFAULT NULL,
	OUT ok boolean, OUT bad_event_id bigint, OUT bad_seal_id bigint, OUT reason text,
	OUT events_checked bigint, OUT seals_checked bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	zero CONSTANT bytea := '\x0000000000000000000000000000000000000000000000000000000000000000';
	p_subject CONSTANT text := verify_audit.subject;
	s record;
	prev_upto bigint := 0;
	prev_root bytea := zero;
	r record;
BEGIN
	ok := true;
	seals_checked := 0;

	-- 1. Every chain, event by event: the link to the previous event of the
	--    same chain, then the hash over the event's content.
	SELECT count(*) INTO events_checked FROM consent.audit_events e
	 WHERE p_subject IS NULL OR e.subject = p_subject;

	SELECT x.id, x.why INTO bad_event_id, reason
	  FROM (SELECT e.id,
				   CASE
					 WHEN e.prev_hash IS DISTINCT FROM coalesce(lag(e.hash) OVER w, zero) THEN
					   CASE WHEN lag(e.id) OVER w IS NULL
							THEN 'the first event of its chain does not start from the genesis hash: earlier events were deleted'
							ELSE 'prev_hash does not match the previous event of the chain (event '
								 || (lag(e.id) OVER w)::text
								 || '): an event was deleted, inserted or moved'
					   END
					 WHEN c.subject IS NULL AND e.redactions IS NULL THEN
					   'the chain of this event has no row in consent.audit_chains, so the event cannot be checked'
					 WHEN consent.audit_event_hash(e, coalesce(c.secret, '')) IS DISTINCT FROM e.hash THEN
					   'hash does not match the content of the event: the event was changed or forged'
				   END AS why
			  FROM consent.audit_events e
			  LEFT JOIN consent.audit_chains c
					 ON c.subject = coalesce(e.subject, '' COLLATE "C")
			 WHERE p_subject IS NULL OR e.subject = p_subject
			WINDOW w AS (PARTITION BY e.subject ORDER BY e.id)) x
	 WHERE x.why IS NOT NULL
	 ORDER BY x.id
	 LIMIT 1;
	IF bad_event_id IS NOT NULL THEN
		ok := false;
		RETURN;
	END IF;

	-- One subject: its chain is all there is to check.  The seals commit all
	-- chains together and are checked when verifying everything.
	IF p_subject IS NOT NULL THEN
		RETURN;
	END IF;

	-- 2. Seals, in order: each links to the previous one, and recomputing its
	--    root from the events it covers gives the stored root.
	FOR s IN SELECT * FROM consent.seals ORDER BY id LOOP
		seals_checked := seals_checked + 1;
		IF s.from_event_id <> prev_upto OR s.prev_root <> prev_root THEN
			ok := false;
			bad_seal_id := s.id;
			reason := 'seal ' || s.id || ' does not continue the previous seal: a seal was deleted or changed';
			RETURN;
		END IF;
		r := consent.audit_seal_root(s.from_event_id, s.upto_event_id, s.prev_root);
		IF r.root <> s.root THEN
			ok := false;
			bad_seal_id := s.id;
			reason := pg_catalog.format(
				'seal %s does not match the events it covers (%s to %s): it sealed %s events and %s chain heads, '
				'now there are %s and %s; a sealed event was deleted, inserted or changed',
				s.id, s.from_event_id + 1, s.upto_event_id, s.events, s.heads, r.events, r.heads);
			RETURN;
		END IF;
		prev_upto := s.upto_event_id;
		prev_root := s.root;
	END LOOP;
END
$$;
COMMENT ON FUNCTION consent.verify_audit(text) IS
	'Verify the audit trail (one subject''s chain, or every chain and every seal): ok, the first bad event or seal, and why';

--
-- BI views.  Plain SQL types only; every column has a comment.
--
CREATE VIEW consent.audit_trail AS
SELECT e.id,
	   e.at,
	   (e.xid::text)::bigint AS xid,
	   e.subject::text AS subject,
	   e.purpose,
	   e.action,
	   e.old_status::text AS old_status,
	   e.new_status::text AS new_status,
	   e.notice_key,
	   e.notice_version::bigint AS notice_version,
	   pg_catalog.encode(e.notice_sha256, 'hex') AS notice_sha256,
	   e.expires_at,
	   e.method,
	   e.source,
	   e.reason,
	   e.evidence,
	   e.db_user,
	   e."session_user",
	   e.application_name,
	   pg_catalog.host(e.client_addr) AS client_addr,
	   e.actor,
	   e.redactions IS NOT NULL AS erased,
	   pg_catalog.encode(e.prev_hash, 'hex') AS prev_hash,
	   pg_catalog.encode(e.hash, 'hex') AS hash
  FROM consent.audit_events e;
COMMENT ON VIEW consent.audit_trail IS 'The audit trail for BI tools: one row per event, plain SQL types';
COMMENT ON COLUMN consent.audit_trail.id IS 'event id, in append order';
COMMENT ON COLUMN consent.audit_trail.at IS 'when the event was written';
COMMENT ON COLUMN consent.audit_trail.xid IS 'transaction id (xid8) of the writing transaction';
COMMENT ON COLUMN consent.audit_trail.subject IS 'the person (NULL for purpose and notice events; a pseudonym after erasure)';
COMMENT ON COLUMN consent.audit_trail.purpose IS 'purpose key';
COMMENT ON COLUMN consent.audit_trail.action IS 'grant, deny, withdraw, confirm, expire, delete, define, update, retire, publish or erase';
COMMENT ON COLUMN consent.audit_trail.old_status IS 'status before the change';
COMMENT ON COLUMN consent.audit_trail.new_status IS 'status after the change';
COMMENT ON COLUMN consent.audit_trail.notice_key IS 'notice key';
COMMENT ON COLUMN consent.audit_trail.notice_version IS 'notice version';
COMMENT ON COLUMN consent.audit_trail.notice_sha256 IS 'SHA-256 of the notice body, hex';
COMMENT ON COLUMN consent.audit_trail.expires_at IS 'when the grant lapses';
COMMENT ON COLUMN consent.audit_trail.method IS 'collection method';
COMMENT ON COLUMN consent.audit_trail.source IS 'collection point';
COMMENT ON COLUMN consent.audit_trail.reason IS 'reason given';
COMMENT ON COLUMN consent.audit_trail.evidence IS 'proof supplied (JSON object)';
COMMENT ON COLUMN consent.audit_trail.db_user IS 'database role of the caller';
COMMENT ON COLUMN consent.audit_trail."session_user" IS 'login role of the session';
COMMENT ON COLUMN consent.audit_trail.application_name IS 'application_name of the session';
COMMENT ON COLUMN consent.audit_trail.client_addr IS 'client IP address (NULL over a Unix socket)';
COMMENT ON COLUMN consent.audit_trail.actor IS 'application-supplied actor';
COMMENT ON COLUMN consent.audit_trail.erased IS 'the event belongs to an erased (pseudonymised) subject';
COMMENT ON COLUMN consent.audit_trail.prev_hash IS 'hash of the previous event of the chain, hex';
COMMENT ON COLUMN consent.audit_trail.hash IS 'hash of this event, hex';

-- The effective rule for a record on its own purpose (the nearest record
-- on the path from a purpose is its own), in plain SQL: it matches
-- consent.explain() row for row (test/pgtap/40_audit.sql proves it).  A
-- grant is superseded when its notice has a newer material version.
CREATE VIEW consent.current_consents AS
SELECT r.subject::text AS subject,
	   p.key::text AS purpose,
	   p.title,
	   p.legal_basis::text AS legal_basis,
	   r.status::text AS status,
	   p.retired_at IS NULL AND r.status = 'granted' AND NOT d.lapsed AND NOT d.superseded AS allowed,
	   CASE
		 WHEN p.retired_at IS NOT NULL THEN 'purpose retired'
		 WHEN r.status = 'granted' THEN
		   CASE WHEN d.lapsed THEN 'expired'
				WHEN d.superseded THEN 'notice superseded by a material version'
				ELSE 'granted' END
		 WHEN r.status = 'pending' THEN 'pending confirmation'
		 ELSE r.status::text
	   END AS reason,
	   r.effective_at,
	   r.expires_at,
	   r.notice_key,
	   r.notice_version::bigint AS notice_version,
	   d.superseded AS notice_superseded,
	   r.method,
	   r.source,
	   r.actor,
	   r.recorded_at
  FROM consent.records r
  JOIN consent.purposes p ON p.id = r.purpose_id
  LEFT JOIN (SELECT n.key, max(n.version) AS version
			   FROM consent.notices n WHERE n.material GROUP BY n.key) m ON m.key = r.notice_key
 CROSS JOIN LATERAL (
	SELECT coalesce(m.version > r.notice_version, false) AS superseded,
		   coalesce(r.expires_at <= pg_catalog.now(), false) AS lapsed) d;
COMMENT ON VIEW consent.current_consents IS
	'One row per subject and purpose with a record: the stored choice and the effective decision now';
COMMENT ON COLUMN consent.current_consents.subject IS 'the person';
COMMENT ON COLUMN consent.current_consents.purpose IS 'purpose key';
COMMENT ON COLUMN consent.current_consents.title IS 'purpose title';
COMMENT ON COLUMN consent.current_consents.legal_basis IS 'lawful basis of the purpose';
COMMENT ON COLUMN consent.current_consents.status IS 'stored status';
COMMENT ON COLUMN consent.current_consents.allowed IS 'effective decision now: may the purpose be pursued for this person';
COMMENT ON COLUMN consent.current_consents.reason IS 'why (same wording as consent.explain)';
COMMENT ON COLUMN consent.current_consents.effective_at IS 'when the choice took effect';
COMMENT ON COLUMN consent.current_consents.expires_at IS 'when a grant lapses';
COMMENT ON COLUMN consent.current_consents.notice_key IS 'notice shown';
COMMENT ON COLUMN consent.current_consents.notice_version IS 'notice version shown';
COMMENT ON COLUMN consent.current_consents.notice_superseded IS 'a material version of the notice was published since';
COMMENT ON COLUMN consent.current_consents.method IS 'collection method';
COMMENT ON COLUMN consent.current_consents.source IS 'collection point';
COMMENT ON COLUMN consent.current_consents.actor IS 'who recorded it';
COMMENT ON COLUMN consent.current_consents.recorded_at IS 'when the row was written';

CREATE VIEW consent.purpose_summary AS
SELECT p.key::text AS purpose,
	   p.title,
	   p.legal_basis::text AS legal_basis,
	   p.retired_at IS NOT NULL AS retired,
	   coalesce(c.subjects, 0) AS subjects,
	   coalesce(c.pending, 0) AS pending,
	   coalesce(c.granted, 0) AS granted,
	   coalesce(c.denied, 0) AS denied,
	   coalesce(c.withdrawn, 0) AS withdrawn,
	   coalesce(c.expired, 0) AS expired,
	   coalesce(c.lapsed, 0) AS lapsed,
	   CASE WHEN p.retired_at IS NULL THEN coalesce(c.allowed, 0) ELSE 0 END AS allowed,
	   CASE WHEN coalesce(c.subjects, 0) = 0 THEN NULL
			WHEN p.retired_at IS NOT NULL THEN 0.0000
			ELSE pg_catalog.round(c.allowed::numeric / c.subjects, 4) END AS grant_rate
  FROM consent.purposes p
  LEFT JOIN (
	-- the rule of current_consents, counted per purpose id
	SELECT r.purpose_id,
		   count(*) AS subjects,
		   count(*) FILTER (WHERE r.status = 'pending') AS pending,
		   count(*) FILTER (WHERE r.status = 'granted') AS granted,
		   count(*) FILTER (WHERE r.status = 'denied') AS denied,
		   count(*) FILTER (WHERE r.status = 'withdrawn') AS withdrawn,
		   count(*) FILTER (WHERE r.status = 'expired') AS expired,
		   count(*) FILTER (WHERE r.status = 'granted' AND r.expires_at <= pg_catalog.now()) AS lapsed,
		   count(*) FILTER (WHERE r.status = 'granted'
							  AND (r.expires_at IS NULL OR r.expires_at > pg_catalog.now())
							  AND NOT coalesce(m.version > r.notice_version, false)) AS allowed
	  FROM consent.records r
	  LEFT JOIN (SELECT n.key, max(n.version) AS version
				   FROM consent.notices n WHERE n.material GROUP BY n.key) m ON m.key = r.notice_key
	 GROUP BY r.purpose_id) c ON c.purpose_id = p.id;
COMMENT ON VIEW consent.purpose_summary IS
	'Per purpose: how many people hold each stored status, how many currently allow it, and the grant rate';
COMMENT ON COLUMN consent.purpose_summary.purpose IS 'purpose key';
COMMENT ON COLUMN consent.purpose_summary.title IS 'purpose title';
COMMENT ON COLUMN consent.purpose_summary.legal_basis IS 'lawful basis';
COMMENT ON COLUMN consent.purpose_summary.retired IS 'the purpose is retired';
COMMENT ON COLUMN consent.purpose_summary.subjects IS 'people with a record for this purpose';
COMMENT ON COLUMN consent.purpose_summary.pending IS 'records pending confirmation';
COMMENT ON COLUMN consent.purpose_summary.granted IS 'records stored as granted (including lapsed ones)';
COMMENT ON COLUMN consent.purpose_summary.denied IS 'records stored as denied';
COMMENT ON COLUMN consent.purpose_summary.withdrawn IS 'records stored as withdrawn';
COMMENT ON COLUMN consent.purpose_summary.expired IS 'records stored as expired';
COMMENT ON COLUMN consent.purpose_summary.lapsed IS 'records stored as granted whose expiry has passed (not yet swept)';
COMMENT ON COLUMN consent.purpose_summary.allowed IS 'records whose effective decision is allowed now';
COMMENT ON COLUMN consent.purpose_summary.grant_rate IS 'allowed / subjects, 4 decimals (NULL without records)';

-- Sealed events come from the rollup, the unsealed tail from the trail:
-- the view reads a few rows per day and purpose however long the trail.
CREATE VIEW consent.activity_daily AS
WITH sealed AS (
	SELECT coalesce(max(s.upto_event_id), 0) AS upto FROM consent.seals s
), counts AS (
	SELECT r.day, r.purpose, r.action, r.events
	  FROM consent.activity_rollup r
	UNION ALL
	SELECT pg_catalog.timezone('UTC', pg_catalog.date_trunc('day', pg_catalog.timezone('UTC', e.at))),
		   coalesce(e.purpose, ''), e.action, count(*)
	  FROM consent.audit_events e, sealed
	 WHERE e.id > sealed.upto
	 GROUP BY 1, 2, 3
)
SELECT c.day,
	   nullif(c.purpose, '') AS purpose,
	   coalesce(sum(c.events) FILTER (WHERE c.action = 'grant'), 0)::bigint AS grants,
	   coalesce(sum(c.events) FILTER (WHERE c.action = 'confirm'), 0)::bigint AS confirmations,
	   coalesce(sum(c.events) FILTER (WHERE c.action = 'deny'), 0)::bigint AS denials,
	   coalesce(sum(c.events) FILTER (WHERE c.action = 'withdraw'), 0)::bigint AS withdrawals,
	   coalesce(sum(c.events) FILTER (WHERE c.action = 'expire'), 0)::bigint AS expiries,
	   sum(c.events)::bigint AS events
  FROM counts c
 GROUP BY c.day, c.purpose;
COMMENT ON VIEW consent.activity_daily IS
	'Per UTC day and purpose: grants, confirmations, denials, withdrawals, expiries and all events';
COMMENT ON COLUMN consent.activity_daily.day IS 'UTC midnight starting the day';
COMMENT ON COLUMN consent.activity_daily.purpose IS 'purpose key (NULL for events without one, e.g. notices)';
COMMENT ON COLUMN consent.activity_daily.grants IS 'grant events (including pending ones awaiting confirmation)';
COMMENT ON COLUMN consent.activity_daily.confirmations IS 'confirm events (double opt-in completed)';
COMMENT ON COLUMN consent.activity_daily.denials IS 'deny events';
COMMENT ON COLUMN consent.activity_daily.withdrawals IS 'withdraw events';
COMMENT ON COLUMN consent.activity_daily.expiries IS 'expire events';
COMMENT ON COLUMN consent.activity_daily.events IS 'all events of the day and purpose';

CREATE FUNCTION consent.expiring(within interval DEFAULT '30 days')
RETURNS TABLE (subject text, purpose text, title text, expires_at timestamptz,
			   seconds_left bigint, notice_key text, notice_version bigint,
			   method text, source text)
LANGUAGE sql STABLE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT r.subject::text, p.key::text, p.title, r.expires_at,
		   floor(extract(epoch FROM r.expires_at - now()))::bigint,
		   r.notice_key, r.notice_version::bigint, r.method, r.source
	  FROM consent.records r
	  JOIN consent.purposes p ON p.id = r.purpose_id
	 WHERE r.status = 'granted'
	   AND r.expires_at IS NOT NULL
	   AND r.expires_at > now()
	   AND r.expires_at <= now() + within
	   AND p.retired_at IS NULL
	 ORDER BY r.expires_at, r.subject, p.key
$$;
COMMENT ON FUNCTION consent.expiring(interval) IS
	'Grants that lapse within the given interval from now: subject, purpose, title, expires_at, seconds_left, notice, method, source';

--
-- Receipts (Kantara Consent Receipt Specification v1.1) and export.
--
CREATE FUNCTION consent.receipt(event_id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e consent.audit_events;
	p consent.purposes;
	h bytea;
	receipt_id text;
	controller jsonb;
	purpose jsonb;
BEGIN
	IF event_id IS NULL THEN
		RAISE EXCEPTION 'event id must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT * INTO e FROM consent.audit_events a WHERE a.id = receipt.event_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'audit event % does not exist', event_id USING ERRCODE = 'no_data_found';
	END IF;
	IF e.subject IS NULL OR e.action NOT IN ('grant', 'deny', 'withdraw', 'confirm', 'expire') THEN
		RAISE EXCEPTION 'audit event % is a % event, not a recorded choice', event_id, e.action
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Receipts exist for grant, deny, withdraw, confirm and expire events.';
	END IF;
	SELECT * INTO p FROM consent.purposes pp WHERE pp.key::text = e.purpose;

	-- A stable receipt id: the event hash, formatted as a (version 4) UUID.
	h := substr(e.hash, 1, 16);
	h := set_byte(h, 6, (get_byte(h, 6) & 15) | 64);
	h := set_byte(h, 8, (get_byte(h, 8) & 63) | 128);
	receipt_id := encode(h, 'hex');
	receipt_id := substr(receipt_id, 1, 8) || '-' || substr(receipt_id, 9, 4) || '-' || substr(receipt_id, 13, 4)
				  || '-' || substr(receipt_id, 17, 4) || '-' || substr(receipt_id, 21, 12);

	controller := jsonb_strip_nulls(jsonb_build_object(
		'piiController', coalesce(nullif(current_setting('consent.controller_name', true), ''), 'unnamed controller'),
		'onBehalf', false,
		'contact', nullif(current_setting('consent.controller_contact', true), ''),
		'address', CASE WHEN nullif(current_setting('consent.controller_address', true), '') IS NOT NULL
						THEN jsonb_build_object('streetAddress', current_setting('consent.controller_address', true)) END,
		'email', nullif(current_setting('consent.controller_email', true), ''),
		'phone', nullif(current_setting('consent.controller_phone', true), ''),
		'piiControllerUrl', nullif(current_setting('consent.controller_url', true), '')));

	purpose := jsonb_strip_nulls(jsonb_build_object(
		'purpose', coalesce(p.title, e.purpose),
		'purposeCategory', jsonb_build_array(e.purpose),
		'consentType', CASE WHEN p.legal_basis IN ('consent', 'explicit_consent') THEN 'EXPLICIT'
							ELSE upper(p.legal_basis::text) END,
		'piiCategory', '[]'::jsonb,
		'primaryPurpose', p.parent_key IS NULL,
		'termination', CASE WHEN e.expires_at IS NOT NULL
							THEN 'expires ' || to_char(e.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
							ELSE 'on withdrawal' END,
		'thirdPartyDisclosure', false,
		'status', e.new_status::text,
		'action', e.action,
		'legalBasis', p.legal_basis::text,
		'description', p.description));

	RETURN jsonb_strip_nulls(jsonb_build_object(
		'version', 'KI-CR-v1.1.0',
		'jurisdiction', coalesce(nullif(current_setting('consent.jurisdiction', true), ''), 'unspecified'),
		'consentTimestamp', floor(extract(epoch FROM e.at))::bigint,
		'collectionMethod', coalesce(e.method, 'unknown'),
		'consentReceiptID', receipt_id,
		'language', nullif(current_setting('consent.receipt_language', true), ''),
		'piiPrincipalId', e.subject,
		'piiControllers', jsonb_build_array(controller),
		'policyUrl', coalesce(nullif(current_setting('consent.policy_url', true), ''), 'unspecified'),
		'services', jsonb_build_array(jsonb_build_object(
			'service', coalesce(nullif(current_setting('consent.service_name', true), ''),
								nullif(current_setting('consent.controller_name', true), ''), 'consent'),
			'purposes', jsonb_build_array(purpose))),
		'sensitive', coalesce(p.legal_basis = 'explicit_consent', false),
		'spiCat', CASE WHEN p.legal_basis = 'explicit_consent' THEN jsonb_build_array(e.purpose) ELSE '[]'::jsonb END,
		'notice', CASE WHEN e.notice_key IS NOT NULL THEN jsonb_build_object(
					'key', e.notice_key, 'version', e.notice_version,
					'sha256', encode(e.notice_sha256, 'hex')) END,
		'auditEventId', e.id,
		'auditHash', encode(e.hash, 'hex')));
END
$$;
COMMENT ON FUNCTION consent.receipt(bigint) IS
	'Consent receipt (Kantara Consent Receipt v1.1 field names) for one recorded choice, by audit event id';

CREATE FUNCTION consent.export_subject(subject text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v record;
BEGIN
	IF subject IS NULL THEN
		RAISE EXCEPTION 'subject must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT * INTO v FROM consent.verify_audit(subject);
	RETURN jsonb_build_object(
		'subject', subject,
		'exported_at', now(),
		'controller', jsonb_strip_nulls(jsonb_build_object(
			'name', nullif(current_setting('consent.controller_name', true), ''),
			'contact', nullif(current_setting('consent.controller_contact', true), ''),
			'email', nullif(current_setting('consent.controller_email', true), ''),
			'url', nullif(current_setting('consent.controller_url', true), ''),
			'policy_url', nullif(current_setting('consent.policy_url', true), ''))),
		'decisions', coalesce((
			SELECT jsonb_agg(jsonb_build_object(
					'purpose', d.purpose::text, 'title', d.title, 'legal_basis', d.legal_basis::text,
					'allowed', d.allowed, 'status', d.status::text,
					'decided_by', d.decided_by::text, 'reason', d.reason,
					'expires_at', d.expires_at) ORDER BY d.purpose)
			  FROM consent.decisions(subject) d), '[]'::jsonb),
		'records', coalesce((
			SELECT jsonb_agg(jsonb_build_object(
					'purpose', cc.purpose, 'status', cc.status, 'allowed', cc.allowed,
					'reason', cc.reason, 'effective_at', cc.effective_at, 'expires_at', cc.expires_at,
					'notice_key', cc.notice_key, 'notice_version', cc.notice_version,
					'method', cc.method, 'source', cc.source, 'actor', cc.actor,
					'recorded_at', cc.recorded_at) ORDER BY cc.purpose)
			  FROM consent.current_consents cc WHERE cc.subject = export_subject.subject), '[]'::jsonb),
		'history', coalesce((
			SELECT jsonb_agg(to_jsonb(t) - 'subject' ORDER BY t.id)
			  FROM consent.audit_trail t WHERE t.subject = export_subject.subject), '[]'::jsonb),
		'verification', jsonb_build_object('ok', v.ok, 'bad_event_id', v.bad_event_id,
										   'reason', v.reason, 'events_checked', v.events_checked));
END
$$;
CREATE FUNCTION consent.export_subject(subject bigint) RETURNS jsonb
	LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
	AS $$ SELECT consent.export_subject(subject::text) $$;
CREATE FUNCTION consent.export_subject(subject uuid) RETURNS jsonb
	LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
	AS $$ SELECT consent.export_subject(subject::text) $$;
COMMENT ON FUNCTION consent.export_subject(text) IS
	'Everything about one person (GDPR Art. 15): current decisions, records, full audit history and its verification';
COMMENT ON FUNCTION consent.export_subject(bigint) IS 'consent.export_subject for a bigint subject';
COMMENT ON FUNCTION consent.export_subject(uuid) IS 'consent.export_subject for a uuid subject';

--
-- Privileges (90_privileges.sql then revokes PUBLIC on everything) and
-- pg_dump.  audit_key is deliberately not dumped.
--
GRANT SELECT ON consent.audit_trail, consent.current_consents, consent.purpose_summary,
	consent.activity_daily, consent.seals TO consent_reader;
GRANT EXECUTE ON FUNCTION
	consent.verify_audit(text),
	consent.expiring(interval),
	consent.receipt(bigint),
	consent.export_subject(text),
	consent.export_subject(bigint),
	consent.export_subject(uuid)
	TO consent_reader;
GRANT EXECUTE ON FUNCTION consent.last_event_id() TO consent_recorder, consent_reader;
GRANT SELECT ON consent.seals TO consent_admin;
GRANT EXECUTE ON FUNCTION
	consent.seal(),
	consent.verify_audit(text),
	consent.erase_subject(text, text),
	consent.erase_subject(bigint, text),
	consent.erase_subject(uuid, text),
	consent.pseudonym(text)
	TO consent_admin;

SELECT pg_catalog.pg_extension_config_dump('consent.audit_events', '');
SELECT pg_catalog.pg_extension_config_dump('consent.audit_events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('consent.audit_chains', '');
SELECT pg_catalog.pg_extension_config_dump('consent.seals', '');
SELECT pg_catalog.pg_extension_config_dump('consent.seals_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('consent.activity_rollup', '');
