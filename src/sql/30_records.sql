--
-- Records: each person's current choice per purpose, and the API that
-- records choices.
--

CREATE TYPE consent.status AS ENUM ('pending', 'granted', 'denied', 'withdrawn', 'expired');
COMMENT ON TYPE consent.status IS
	'Stored status of a choice: pending (awaiting double opt-in), granted, denied, withdrawn, expired';

CREATE TABLE consent.records (
	subject		text COLLATE "C" NOT NULL
				CHECK (subject <> '' AND pg_catalog.octet_length(subject) <= 256),
	purpose_id	integer NOT NULL REFERENCES consent.purposes (id),
	status		consent.status NOT NULL,
	effective_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	expires_at	timestamptz,
	notice_key	text,
	notice_version integer,
	method		text NOT NULL DEFAULT 'api' CHECK (method <> ''),
	source		text,
	actor		text,
	reason		text,
	evidence	jsonb CHECK (evidence IS NULL OR pg_catalog.jsonb_typeof(evidence) = 'object'),
	recorded_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	PRIMARY KEY (subject, purpose_id),
	CHECK ((notice_key IS NULL) = (notice_version IS NULL))
);
CREATE INDEX records_purpose_idx ON consent.records (purpose_id);
CREATE INDEX records_expiry_idx ON consent.records (expires_at)
	WHERE status = 'granted' AND expires_at IS NOT NULL;
COMMENT ON INDEX consent.records_pkey IS
	'one current record per (subject, purpose); the enforcement functions probe it';
COMMENT ON INDEX consent.records_purpose_idx IS 'records of one purpose (foreign key checks, per-purpose scans)';
COMMENT ON INDEX consent.records_expiry_idx IS 'grants by expiry, for sweeps and expiry warnings';

COMMENT ON TABLE consent.records IS
	'Current choice of each person (subject) for each purpose: one row per (subject, purpose)';
COMMENT ON COLUMN consent.records.subject IS 'the person: a text key, at most 256 bytes (bigint and uuid map to their text form)';
COMMENT ON COLUMN consent.records.purpose_id IS 'the purpose (consent.purposes.id)';
COMMENT ON COLUMN consent.records.status IS 'stored status of the latest choice';
COMMENT ON COLUMN consent.records.effective_at IS 'when the latest choice took effect (transaction time)';
COMMENT ON COLUMN consent.records.expires_at IS 'when a grant lapses (NULL: never)';
COMMENT ON COLUMN consent.records.notice_key IS 'key of the notice the person was shown';
COMMENT ON COLUMN consent.records.notice_version IS 'version of that notice';
COMMENT ON COLUMN consent.records.method IS 'how the choice was collected, e.g. api, web_form, paper';
COMMENT ON COLUMN consent.records.source IS 'collection point, e.g. signup-page';
COMMENT ON COLUMN consent.records.actor IS 'who recorded it: consent.actor setting, else the session user';
COMMENT ON COLUMN consent.records.reason IS 'reason given with a withdrawal';
COMMENT ON COLUMN consent.records.evidence IS 'further proof as a JSON object (IP, user agent, form id, ...)';
COMMENT ON COLUMN consent.records.recorded_at IS 'wall-clock time the row was written';

-- Subject rules, shared by every function that takes a subject.
CREATE FUNCTION consent.check_subject(subject text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
	IF subject IS NULL THEN
		RAISE EXCEPTION 'subject must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF subject = '' THEN
		RAISE EXCEPTION 'subject must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF octet_length(subject) > 256 THEN
		RAISE EXCEPTION 'subject is % bytes long, the limit is 256', octet_length(subject)
			USING ERRCODE = 'string_data_right_truncation',
				  HINT = 'Use a stable identifier such as a customer id or uuid, not free text.';
	END IF;
END
$$;
COMMENT ON FUNCTION consent.check_subject(text) IS
	'Internal: raise unless subject is a non-empty text of at most 256 bytes';

--
-- The one writer of consent.records, in C (src/record.c).  grant, deny,
-- confirm and withdraw are C entry points of the same code, and
-- withdraw_all calls this function, so that validation, locking and the
-- effective time are the same for all of them.  Not callable by PUBLIC,
-- not SECURITY DEFINER: it runs with its callers' rights and pinned
-- search_path, and qualifies every object it names.
-- Not STRICT: it checks each argument itself, with the errors listed in
-- docs/errors.md (a NULL where a value is required is 22004).
--
CREATE FUNCTION consent.apply_choice(
	p_action text,				-- grant | deny | withdraw | confirm | expire
	p_subject text,
	p_purpose consent.purpose_key,
	p_notice text,
	p_method text,
	p_source text,
	p_expires_at timestamptz,
	p_evidence jsonb,
	p_reason text)
RETURNS consent.status
	AS 'MODULE_PATHNAME', 'consent_apply_choice'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION consent.apply_choice(text, text, consent.purpose_key, text, text, text, timestamptz, jsonb, text) IS
	'Internal: validate and store one choice; the single writer (grant, deny, confirm and withdraw are its C entry points), called by withdraw_all';
