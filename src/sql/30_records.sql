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
-- The one writer of consent.records.  Every public recording function is a
-- thin wrapper around it, so that validation, locking and the effective
-- time are the same for all of them.  Not callable by PUBLIC.  It has no
-- SET search_path of its own (a per-call cost): it runs only under its
-- SECURITY DEFINER callers' pinned path, and qualifies every object of the
-- extension anyway; its declared types are resolved when it is first
-- compiled, under that path.
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
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	v_purpose consent.purposes;
	v_status consent.status;
	v_current consent.status;
	v_notice_key text;
	v_notice_version integer;
	v_covers boolean;
	v_expires timestamptz;
	v_actor text;
	m text[];
BEGIN
	-- consent.check_subject's rules, written out: this runs on every call
	IF p_subject IS NULL OR p_subject = '' OR octet_length(p_subject) > 256 THEN
		PERFORM consent.check_subject(p_subject);	-- raises the right error
	END IF;
	IF p_purpose IS NULL THEN
		RAISE EXCEPTION 'purpose must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF p_method IS NULL OR btrim(p_method) = '' OR octet_length(p_method) > 64 THEN
		RAISE EXCEPTION 'method must be a non-empty label of at most 64 bytes, not %',
			coalesce(quote_literal(p_method), 'NULL')
			USING ERRCODE = CASE WHEN p_method IS NULL THEN 'null_value_not_allowed' ELSE 'invalid_parameter_value' END;
	END IF;
	IF p_evidence IS NOT NULL AND jsonb_typeof(p_evidence) <> 'object' THEN
		RAISE EXCEPTION 'evidence must be a JSON object, not a JSON %', jsonb_typeof(p_evidence)
			USING ERRCODE = 'invalid_parameter_value';
	END IF;

	-- FOR SHARE: a concurrent retire_purpose waits for us, and we for it.
	SELECT * INTO v_purpose FROM consent.purposes p
	 WHERE p.key OPERATOR(consent.=) p_purpose FOR SHARE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'purpose "%" does not exist', p_purpose
			USING ERRCODE = 'undefined_object', HINT = consent.closest_purposes(p_purpose::text);
	END IF;
	IF v_purpose.retired_at IS NOT NULL AND p_action IN ('grant', 'confirm') THEN
		RAISE EXCEPTION 'purpose "%" is retired and cannot be granted', p_purpose
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'It was retired at ' || v_purpose.retired_at::text || '.',
				  HINT = consent.closest_purposes(p_purpose::text, true);
	END IF;
	IF p_action IN ('grant', 'confirm', 'deny', 'withdraw')
	   AND v_purpose.legal_basis NOT IN ('consent', 'explicit_consent', 'legitimate_interests') THEN
		RAISE EXCEPTION 'purpose "%" does not rest on consent, so it cannot be %', p_purpose,
			CASE p_action WHEN 'deny' THEN 'denied' WHEN 'withdraw' THEN 'withdrawn'
						  WHEN 'grant' THEN 'granted' ELSE 'confirmed' END
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Its legal basis is ' || v_purpose.legal_basis::text || '.',
				  HINT = 'Processing does not rest on consent; a grant, refusal or withdrawal does not change it. '
						 'Handle the request under the rules of that legal basis.';
	END IF;

	-- Notice: "key" (latest version) or "key@version".
	IF p_notice IS NOT NULL THEN
		m := regexp_match(p_notice, '^([A-Za-z0-9][A-Za-z0-9_.:-]*)(?:@([1-9][0-9]{0,8}))?$');
		IF m IS NULL THEN
			RAISE EXCEPTION 'malformed notice reference "%"', p_notice
				USING ERRCODE = 'invalid_text_representation',
					  HINT = 'Write the notice key, or key@version with a positive version, e.g. privacy-policy@3.';
		END IF;
		v_notice_key := m[1];
		IF m[2] IS NULL THEN
			SELECT max(n.version) INTO v_notice_version FROM consent.notices n WHERE n.key = v_notice_key;
			IF v_notice_version IS NULL THEN
				RAISE EXCEPTION 'notice "%" does not exist', v_notice_key
					USING ERRCODE = 'undefined_object';
			END IF;
		ELSE
			v_notice_version := m[2]::integer;
			PERFORM 1 FROM consent.notices n WHERE n.key = v_notice_key;
			IF NOT FOUND THEN
				RAISE EXCEPTION 'notice "%" does not exist', v_notice_key
					USING ERRCODE = 'undefined_object';
			END IF;
			PERFORM 1 FROM consent.notices n
			  WHERE n.key = v_notice_key AND n.version = v_notice_version;
			IF NOT FOUND THEN
				RAISE EXCEPTION 'notice "%" has no version %', v_notice_key, v_notice_version
					USING ERRCODE = 'undefined_object',
						  HINT = 'Published versions: ' || (SELECT string_agg(DISTINCT n.version::text, ', ')
															  FROM consent.notices n WHERE n.key = v_notice_key) || '.';
			END IF;
		END IF;
		SELECT bool_or(c OPERATOR(consent.@>) p_purpose) INTO v_covers
		  FROM consent.notices n, unnest(n.purposes) AS c
		 WHERE n.key = v_notice_key AND n.version = v_notice_version;
		IF p_action = 'grant' AND EXISTS (
				SELECT 1 FROM consent.notices n
				 WHERE n.key = v_notice_key AND n.material AND n.version > v_notice_version) THEN
			RAISE EXCEPTION 'notice "%" version % has been superseded by a material version', v_notice_key, v_notice_version
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  HINT = 'A grant under it would not count; record the grant under the latest version, e.g. '
							 || quote_literal(v_notice_key) || ' alone.';
		END IF;
		IF NOT v_covers THEN
			RAISE EXCEPTION 'notice "%" version % does not cover purpose "%"', v_notice_key, v_notice_version, p_purpose
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'A notice covers the purposes it lists and their descendants.';
		END IF;
	END IF;

	IF p_action = 'grant' THEN
		IF p_expires_at IS NOT NULL AND v_purpose.legal_basis NOT IN ('consent', 'explicit_consent') THEN
			RAISE EXCEPTION 'a grant for purpose "%" cannot expire: it rests on %', p_purpose, v_purpose.legal_basis
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'A grant here only lifts an objection; only consent expires.';
		END IF;
		IF p_expires_at IS NOT NULL AND p_expires_at <= now() THEN
			RAISE EXCEPTION 'expiry % is not in the future', p_expires_at
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		v_expires := coalesce(p_expires_at, now() + v_purpose.valid_for);
		v_status := CASE WHEN v_purpose.requires_confirmation THEN 'pending' ELSE 'granted' END;
	ELSIF p_action = 'deny' THEN
		v_status := 'denied';
	ELSIF p_action = 'withdraw' THEN
		v_status := 'withdrawn';
	ELSIF p_action = 'confirm' THEN
		SELECT r.status, r.expires_at INTO v_current, v_expires
		  FROM consent.records r
		 WHERE r.subject = p_subject AND r.purpose_id = v_purpose.id
		   FOR UPDATE;
		IF v_current IS DISTINCT FROM 'pending' THEN
			RAISE EXCEPTION 'subject has no pending consent to purpose "%" to confirm', p_purpose
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = 'The current status is ' || coalesce(v_current::text, 'none') || '.',
					  HINT = 'Call consent.grant() first; it records a pending consent for purposes that require confirmation.';
		END IF;
		-- A grant whose notice was superseded while it waited would not count.
		IF EXISTS (SELECT 1 FROM consent.records r
					 JOIN consent.notices n ON n.key = r.notice_key
					WHERE r.subject = p_subject AND r.purpose_id = v_purpose.id
					  AND n.material AND n.version > r.notice_version) THEN
			RAISE EXCEPTION 'the notice of the pending consent to purpose "%" has been superseded by a material version', p_purpose
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  HINT = 'Ask for consent again under the latest version: call consent.grant() with it, then confirm.';
		END IF;
		v_status := 'granted';
	ELSIF p_action = 'expire' THEN
		v_status := 'expired';
	ELSE
		RAISE EXCEPTION 'unknown action "%"', p_action USING ERRCODE = 'invalid_parameter_value';
	END IF;

	v_actor := coalesce(nullif(current_setting('consent.actor', true), ''), session_user::text);

	IF p_action = 'confirm' THEN
		UPDATE consent.records r
		   SET status = v_status, effective_at = now(), method = p_method,
			   source = coalesce(p_source, r.source), actor = v_actor,
			   evidence = CASE WHEN p_evidence IS NULL THEN r.evidence
							   ELSE coalesce(r.evidence, '{}'::jsonb) || p_evidence END,
			   recorded_at = clock_timestamp()
		 WHERE r.subject = p_subject AND r.purpose_id = v_purpose.id;
		RETURN v_status;
	END IF;

	INSERT INTO consent.records AS r
		(subject, purpose_id, status, effective_at, expires_at, notice_key, notice_version,
		 method, source, actor, reason, evidence)
	VALUES
		(p_subject, v_purpose.id, v_status, now(), v_expires, v_notice_key, v_notice_version,
		 p_method, p_source, v_actor, p_reason, p_evidence)
	ON CONFLICT (subject, purpose_id) DO UPDATE
	   SET status = EXCLUDED.status, effective_at = EXCLUDED.effective_at,
		   expires_at = EXCLUDED.expires_at, notice_key = EXCLUDED.notice_key,
		   notice_version = EXCLUDED.notice_version, method = EXCLUDED.method,
		   source = EXCLUDED.source, actor = EXCLUDED.actor, reason = EXCLUDED.reason,
		   evidence = EXCLUDED.evidence, recorded_at = EXCLUDED.recorded_at
	RETURNING r.status INTO v_status;
	RETURN v_status;
END
$$;
COMMENT ON FUNCTION consent.apply_choice(text, text, consent.purpose_key, text, text, text, timestamptz, jsonb, text) IS
	'Internal: validate and store one choice; the single writer behind grant, deny, withdraw, confirm';
