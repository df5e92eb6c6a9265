--
-- Registry: purposes and the notices shown to people.
--

CREATE TYPE consent.legal_basis AS ENUM (
	'consent',					-- GDPR Art. 6(1)(a)
	'explicit_consent',			-- GDPR Art. 9(2)(a), special categories
	'contract',					-- Art. 6(1)(b)
	'legal_obligation',			-- Art. 6(1)(c)
	'vital_interests',			-- Art. 6(1)(d)
	'public_task',				-- Art. 6(1)(e)
	'legitimate_interests'		-- Art. 6(1)(f)
);
COMMENT ON TYPE consent.legal_basis IS
	'GDPR lawful basis of a purpose: the Art. 6(1) bases plus explicit_consent (Art. 9(2)(a))';

-- SHA-256 of a text value's bytes in the database encoding.  IMMUTABLE (the
-- database encoding never changes), unlike convert_to(), so that it can
-- compute a stored generated column.
CREATE FUNCTION consent.sha256_text(text) RETURNS bytea
	AS 'MODULE_PATHNAME', 'consent_sha256_text'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION consent.sha256_text(text) IS
	'SHA-256 of the bytes of a text value in the database encoding';

-- Edit distance between two strings, used to suggest the closest keys in
-- error hints.
CREATE FUNCTION consent.edit_distance(text, text) RETURNS integer
	AS 'MODULE_PATHNAME', 'consent_edit_distance'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION consent.edit_distance(text, text) IS
	'Levenshtein distance between two strings (used for "did you mean" hints)';

CREATE SEQUENCE consent.purposes_id_seq AS integer;
COMMENT ON SEQUENCE consent.purposes_id_seq IS 'ids of consent.purposes';

CREATE TABLE consent.purposes (
	id			integer NOT NULL DEFAULT pg_catalog.nextval('consent.purposes_id_seq') PRIMARY KEY,
	key			consent.purpose_key NOT NULL UNIQUE,
	parent_key	consent.purpose_key GENERATED ALWAYS AS (consent.parent(key)) STORED,
	title		text NOT NULL CHECK (title <> ''),
	description text,
	legal_basis consent.legal_basis NOT NULL DEFAULT 'consent',
	valid_for	interval CHECK (valid_for > interval '0'),
	requires_confirmation boolean NOT NULL DEFAULT false,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	retired_at	timestamptz
);
ALTER SEQUENCE consent.purposes_id_seq OWNED BY consent.purposes.id;
CREATE INDEX purposes_parent_key_idx ON consent.purposes (parent_key);
COMMENT ON INDEX consent.purposes_parent_key_idx IS 'finds the children of a purpose';
COMMENT ON INDEX consent.purposes_pkey IS 'primary key of consent.purposes';
COMMENT ON INDEX consent.purposes_key_key IS 'one purpose per key';

-- A purpose's parent must exist, and a purpose with children cannot go.
-- A deferred constraint trigger rather than a self-referencing foreign
-- key: pg_dump restores this table's rows in heap order, where a child may
-- come before its parent, and it warns about circular foreign keys on
-- every dump of a config table that has one.
CREATE FUNCTION consent.check_purpose_tree() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.parent_key IS NOT NULL THEN
		-- KEY SHARE, as a foreign key would: the parent cannot be deleted
		-- until we commit.
		PERFORM 1 FROM consent.purposes p
		  WHERE p.key OPERATOR(consent.=) NEW.parent_key FOR KEY SHARE;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'parent purpose "%" of "%" does not exist', NEW.parent_key, NEW.key
				USING ERRCODE = 'foreign_key_violation';
		END IF;
	END IF;
	IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND NEW.key OPERATOR(consent.<>) OLD.key) THEN
		PERFORM 1 FROM consent.purposes p WHERE p.parent_key OPERATOR(consent.=) OLD.key;
		IF FOUND THEN
			RAISE EXCEPTION 'purpose "%" still has child purposes', OLD.key
				USING ERRCODE = 'foreign_key_violation',
					  HINT = 'Retire purposes instead of deleting them: consent.retire_purpose().';
		END IF;
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION consent.check_purpose_tree() IS
	'Internal constraint trigger: a parent purpose exists, and a purpose with children is kept';
CREATE CONSTRAINT TRIGGER purpose_tree AFTER INSERT OR UPDATE OR DELETE ON consent.purposes
	DEFERRABLE INITIALLY DEFERRED
	FOR EACH ROW EXECUTE FUNCTION consent.check_purpose_tree();
COMMENT ON TRIGGER purpose_tree ON consent.purposes IS
	'checks the purpose hierarchy at commit (see consent.check_purpose_tree)';

COMMENT ON TABLE consent.purposes IS
	'Purposes of processing personal data, a hierarchy of dotted keys';
COMMENT ON COLUMN consent.purposes.id IS 'surrogate key, referenced by consent.records';
COMMENT ON COLUMN consent.purposes.key IS 'dotted purpose key, e.g. marketing.email';
COMMENT ON COLUMN consent.purposes.parent_key IS 'key of the parent purpose (NULL for a root); it must exist first';
COMMENT ON COLUMN consent.purposes.title IS 'short human-readable title';
COMMENT ON COLUMN consent.purposes.description IS 'longer description shown to people and auditors';
COMMENT ON COLUMN consent.purposes.legal_basis IS 'lawful basis; decides the answer when a person has no record';
COMMENT ON COLUMN consent.purposes.valid_for IS 'default validity of a grant (NULL: no expiry)';
COMMENT ON COLUMN consent.purposes.requires_confirmation IS 'double opt-in: a grant stays pending until confirmed';
COMMENT ON COLUMN consent.purposes.created_at IS 'when the purpose was defined';
COMMENT ON COLUMN consent.purposes.retired_at IS 'when the purpose was retired (NULL: active); retired purposes cannot be granted';

CREATE SEQUENCE consent.notices_id_seq AS integer;
COMMENT ON SEQUENCE consent.notices_id_seq IS 'ids of consent.notices';

CREATE TABLE consent.notices (
	id			integer NOT NULL DEFAULT pg_catalog.nextval('consent.notices_id_seq') PRIMARY KEY,
	key			text NOT NULL
				CHECK (key ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]*$' AND pg_catalog.octet_length(key) <= 128),
	version		integer NOT NULL CHECK (version > 0),
	locale		text NOT NULL DEFAULT 'en'
				CHECK (locale ~ '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$'),
	body		text NOT NULL CHECK (body <> ''),
	body_sha256 bytea GENERATED ALWAYS AS (consent.sha256_text(body)) STORED,
	purposes	consent.purpose_key[] NOT NULL CHECK (pg_catalog.cardinality(purposes) > 0),
	material	boolean NOT NULL DEFAULT false,
	published_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	UNIQUE (key, version, locale)
);
ALTER SEQUENCE consent.notices_id_seq OWNED BY consent.notices.id;
COMMENT ON INDEX consent.notices_pkey IS 'primary key of consent.notices';
COMMENT ON INDEX consent.notices_key_version_locale_key IS 'one text per notice key, version and locale';

COMMENT ON TABLE consent.notices IS
	'Versioned privacy notices; a material version supersedes grants given under older versions';
COMMENT ON COLUMN consent.notices.id IS 'surrogate key';
COMMENT ON COLUMN consent.notices.key IS 'notice key, e.g. privacy-policy; referenced as key or key@version';
COMMENT ON COLUMN consent.notices.version IS 'version number; versions of a key only grow';
COMMENT ON COLUMN consent.notices.locale IS 'language tag of this text, e.g. en or de-CH';
COMMENT ON COLUMN consent.notices.body IS 'the text shown to the person';
COMMENT ON COLUMN consent.notices.body_sha256 IS 'SHA-256 of body, computed by the database, never supplied';
COMMENT ON COLUMN consent.notices.purposes IS 'purposes this notice covers (a purpose covers its descendants)';
COMMENT ON COLUMN consent.notices.material IS 'material change: grants under older versions of this key stop counting';
COMMENT ON COLUMN consent.notices.published_at IS 'when the version was published';

-- One row per notice key, updated by every publication of that key, so
-- that concurrent publishers conflict on it: under READ COMMITTED the
-- second waits and then sees the first's version; under REPEATABLE READ
-- it fails with a serialization error instead of publishing a lower version.
CREATE TABLE consent.notice_heads (
	key			text PRIMARY KEY,
	latest_version integer NOT NULL
);
COMMENT ON TABLE consent.notice_heads IS
	'Internal: latest published version of each notice key (serialises publishers)';
COMMENT ON COLUMN consent.notice_heads.key IS 'notice key';
COMMENT ON COLUMN consent.notice_heads.latest_version IS 'highest version published for the key';
COMMENT ON INDEX consent.notice_heads_pkey IS 'primary key of consent.notice_heads';

-- "Did you mean" text for hints: the existing keys closest to a wrong one.
CREATE FUNCTION consent.closest_purposes(k text, active_only boolean DEFAULT false)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN count(*) = 0 AND active_only THEN 'No active purposes exist.'
				WHEN count(*) = 0 THEN 'No purposes are defined yet.'
				ELSE 'Closest existing purposes: ' || string_agg(c.key, ', ' ORDER BY c.d, c.key) || '.'
		   END
	  FROM (SELECT p.key::text AS key, consent.edit_distance(p.key::text, k) AS d
			  FROM consent.purposes p
			 WHERE NOT active_only OR p.retired_at IS NULL
			 ORDER BY 2, 1
			 LIMIT 3) c
$$;
COMMENT ON FUNCTION consent.closest_purposes(text, boolean) IS
	'The three existing purpose keys closest to k, as hint text';

CREATE FUNCTION consent.define_purpose(
	key consent.purpose_key,
	title text,
	legal_basis consent.legal_basis DEFAULT 'consent',
	description text DEFAULT NULL,
	valid_for interval DEFAULT NULL,
	requires_confirmation boolean DEFAULT false)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_parent consent.purpose_key;
	v_parent_basis consent.legal_basis;
	v_id integer;
BEGIN
	IF key IS NULL THEN
		RAISE EXCEPTION 'purpose key must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF title IS NULL THEN
		RAISE EXCEPTION 'title of purpose "%" must not be null', key USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF btrim(title) = '' THEN
		RAISE EXCEPTION 'purpose "%" needs a non-empty title', key USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF legal_basis IS NULL THEN
		RAISE EXCEPTION 'legal basis of purpose "%" must not be null', key USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF requires_confirmation IS NULL THEN
		RAISE EXCEPTION 'requires_confirmation of purpose "%" must not be null', key USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF valid_for IS NOT NULL AND valid_for <= interval '0' THEN
		RAISE EXCEPTION 'validity of purpose "%" must be positive, not %', key, valid_for
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF valid_for IS NOT NULL AND legal_basis NOT IN ('consent', 'explicit_consent') THEN
		RAISE EXCEPTION 'purpose "%" rests on %, so it cannot have a validity', key, legal_basis
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Only consent expires; a lapsed record would otherwise stop processing that does not need consent.';
	END IF;
	IF requires_confirmation AND legal_basis NOT IN ('consent', 'explicit_consent') THEN
		RAISE EXCEPTION 'purpose "%" rests on %, so it cannot require confirmation', key, legal_basis
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Double opt-in applies to purposes resting on consent or explicit_consent.';
	END IF;

	PERFORM 1 FROM consent.purposes p WHERE p.key OPERATOR(consent.=) define_purpose.key;
	IF FOUND THEN
		RAISE EXCEPTION 'purpose "%" already exists', key USING ERRCODE = 'duplicate_object';
	END IF;

	v_parent := consent.parent(key);
	IF v_parent IS NOT NULL THEN
		-- Lock the parent so that it cannot be retired or removed under us.
		PERFORM 1 FROM consent.purposes p
		  WHERE p.key OPERATOR(consent.=) v_parent FOR SHARE;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'parent purpose "%" of "%" does not exist', v_parent, key
				USING ERRCODE = 'foreign_key_violation',
					  HINT = 'Define the parent first: SELECT consent.define_purpose(''' || v_parent::text || ''', ...).';
		END IF;
		PERFORM 1 FROM consent.purposes p
		  WHERE p.key OPERATOR(consent.=) v_parent AND p.retired_at IS NOT NULL;
		IF FOUND THEN
			RAISE EXCEPTION 'parent purpose "%" of "%" is retired', v_parent, key
				USING ERRCODE = 'object_not_in_prerequisite_state';
		END IF;
		-- A refusal of the parent would stop the child (the nearest record
		-- decides), which must not happen to processing that does not rest
		-- on consent.
		SELECT p.legal_basis INTO v_parent_basis FROM consent.purposes p
		 WHERE p.key OPERATOR(consent.=) v_parent;
		IF v_parent_basis IN ('consent', 'explicit_consent', 'legitimate_interests')
		   AND legal_basis NOT IN ('consent', 'explicit_consent', 'legitimate_interests') THEN
			RAISE EXCEPTION 'purpose "%" rests on %, but its parent "%" rests on %', key, legal_basis,
				v_parent, v_parent_basis
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'A purpose that does not rest on consent cannot sit under one that a person can refuse: '
							 'the refusal would stop it.  Define it outside that branch.';
		END IF;
	END IF;

	BEGIN
		INSERT INTO consent.purposes (key, title, description, legal_basis, valid_for, requires_confirmation)
		VALUES (key, title, description, legal_basis, valid_for, requires_confirmation)
		RETURNING id INTO v_id;
	EXCEPTION WHEN unique_violation THEN
		-- a concurrent define_purpose of the same key committed first
		RAISE EXCEPTION 'purpose "%" already exists', key USING ERRCODE = 'duplicate_object';
	END;
	RETURN v_id;
END
$$;
COMMENT ON FUNCTION consent.define_purpose(consent.purpose_key, text, consent.legal_basis, text, interval, boolean) IS
	'Define a purpose; its parent must exist.  Returns the new purpose id';

CREATE FUNCTION consent.retire_purpose(key consent.purpose_key)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_retired timestamptz;
BEGIN
	IF key IS NULL THEN
		RAISE EXCEPTION 'purpose key must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	-- The recording functions open consent.purposes in ROW SHARE mode and
	-- only then read the purpose (src/record.c): EXCLUSIVE makes a
	-- retirement wait for recorders in flight, and them for it, without
	-- their writing a row lock on every call.  Readers are not blocked.
	LOCK TABLE consent.purposes IN EXCLUSIVE MODE;
	SELECT p.retired_at INTO v_retired
	  FROM consent.purposes p
	 WHERE p.key OPERATOR(consent.=) retire_purpose.key
	   FOR NO KEY UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'purpose "%" does not exist', key
			USING ERRCODE = 'undefined_object', HINT = consent.closest_purposes(key::text);
	END IF;
	IF v_retired IS NOT NULL THEN
		RAISE EXCEPTION 'purpose "%" is already retired', key
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'It was retired at ' || v_retired::text || '.';
	END IF;
	-- A retired purpose takes its descendants with it: none of them can be
	-- granted any more.  Records and history stay.
	UPDATE consent.purposes p
	   SET retired_at = pg_catalog.now()
	 WHERE p.key OPERATOR(consent.<@) retire_purpose.key
	   AND p.retired_at IS NULL;
END
$$;
COMMENT ON FUNCTION consent.retire_purpose(consent.purpose_key) IS
	'Retire a purpose and its descendants: no new grants, history kept';

CREATE FUNCTION consent.publish_notice(
	key text,
	version integer,
	body text,
	purposes consent.purpose_key[],
	locale text DEFAULT 'en',
	material boolean DEFAULT false)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_latest integer;
	v_latest_material boolean;
	v_missing text;
	v_retired text;
	v_id integer;
BEGIN
	IF key IS NULL OR version IS NULL OR body IS NULL OR purposes IS NULL
	   OR locale IS NULL OR material IS NULL THEN
		RAISE EXCEPTION 'notice key, version, body, purposes, locale and material must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF key !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]*$' OR octet_length(key) > 128 THEN
		RAISE EXCEPTION 'invalid notice key "%"', key
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Notice keys are letters, digits and _ . : - (not @), starting with a letter or digit, at most 128 bytes.';
	END IF;
	IF version <= 0 THEN
		RAISE EXCEPTION 'notice version must be positive, not %', version
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF btrim(body) = '' THEN
		RAISE EXCEPTION 'notice "%" version % has an empty body', key, version
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF locale !~ '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$' THEN
		RAISE EXCEPTION 'invalid locale "%"', locale
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use a BCP 47 language tag such as en, de or pt-BR.';
	END IF;
	IF cardinality(purposes) = 0 THEN
		RAISE EXCEPTION 'notice "%" version % must cover at least one purpose', key, version
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF array_position(purposes, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'purposes of notice "%" version % must not contain NULL', key, version
			USING ERRCODE = 'null_value_not_allowed';
	END IF;

	SELECT string_agg(u.k::text, ', ') INTO v_missing
	  FROM unnest(purposes) AS u(k)
	 WHERE NOT EXISTS (SELECT 1 FROM consent.purposes p WHERE p.key OPERATOR(consent.=) u.k);
	IF v_missing IS NOT NULL THEN
		RAISE EXCEPTION 'notice "%" covers unknown purposes: %', key, v_missing
			USING ERRCODE = 'undefined_object', HINT = consent.closest_purposes(split_part(v_missing, ', ', 1));
	END IF;
	SELECT string_agg(u.k::text, ', ') INTO v_retired
	  FROM unnest(purposes) AS u(k)
	  JOIN consent.purposes p ON p.key OPERATOR(consent.=) u.k
	 WHERE p.retired_at IS NOT NULL;
	IF v_retired IS NOT NULL THEN
		RAISE EXCEPTION 'notice "%" covers retired purposes: %', key, v_retired
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;

	-- Serialise publishers of one key on its head row, so that "versions
	-- only grow" holds under concurrency (see consent.notice_heads).
	INSERT INTO consent.notice_heads AS h (key, latest_version) VALUES (publish_notice.key, 0)
	ON CONFLICT ON CONSTRAINT notice_heads_pkey DO NOTHING;
	PERFORM 1 FROM consent.notice_heads h WHERE h.key = publish_notice.key FOR UPDATE;

	SELECT n.version, n.material INTO v_latest, v_latest_material
	  FROM consent.notices n WHERE n.key = publish_notice.key
	 ORDER BY n.version DESC LIMIT 1;
	IF v_latest IS NOT NULL THEN
		IF version < v_latest THEN
			RAISE EXCEPTION 'notice "%" is at version %, so version % cannot be published', key, v_latest, version
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Versions of a notice only grow; publish version ' || (v_latest + 1)::text || '.';
		END IF;
		IF version = v_latest THEN
			PERFORM 1 FROM consent.notices n
			  WHERE n.key = publish_notice.key AND n.version = publish_notice.version
				AND n.locale = publish_notice.locale;
			IF FOUND THEN
				RAISE EXCEPTION 'notice "%" version % already exists in locale "%"', key, version, locale
					USING ERRCODE = 'duplicate_object',
						  HINT = 'Publish version ' || (v_latest + 1)::text || ' instead.';
			END IF;
			IF material <> v_latest_material THEN
				RAISE EXCEPTION 'translation of notice "%" version % must keep material = %', key, version, v_latest_material
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			IF EXISTS (SELECT 1 FROM consent.notices n
						WHERE n.key = publish_notice.key AND n.version = publish_notice.version
						  AND NOT (n.purposes OPERATOR(pg_catalog.@>) publish_notice.purposes
								   AND n.purposes OPERATOR(pg_catalog.<@) publish_notice.purposes)) THEN
				RAISE EXCEPTION 'translation of notice "%" version % must cover the same purposes', key, version
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'To change what a notice covers, publish a new version.';
			END IF;
		END IF;
	END IF;

	INSERT INTO consent.notices (key, version, locale, body, purposes, material)
	VALUES (key, version, locale, body, purposes, material)
	RETURNING id INTO v_id;
	UPDATE consent.notice_heads h SET latest_version = publish_notice.version
	 WHERE h.key = publish_notice.key;
	RETURN v_id;
END
$$;
COMMENT ON FUNCTION consent.publish_notice(text, integer, text, consent.purpose_key[], text, boolean) IS
	'Publish a notice version (or a translation of the latest); material versions supersede older grants';
