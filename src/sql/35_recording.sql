--
-- Public recording API.  Each function is SECURITY DEFINER with a pinned
-- search_path, qualifies every object, and returns the stored status.
-- grant, deny, confirm and withdraw are C entry points of the one writer
-- (src/record.c), for text, bigint and uuid subjects (bigint and uuid map
-- to their text form): no PL/pgSQL frame per call.  Not STRICT: a NULL
-- where a value is required has its own error (22004).  withdraw_all stays
-- PL/pgSQL: it runs a query and is not on a hot path.
--

CREATE FUNCTION consent.grant(
	subject text,
	purpose consent.purpose_key,
	notice text DEFAULT NULL,
	method text DEFAULT 'api',
	source text DEFAULT NULL,
	expires_at timestamptz DEFAULT NULL,
	evidence jsonb DEFAULT NULL)
RETURNS consent.status
AS 'MODULE_PATHNAME', 'consent_grant'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION consent.grant(text, consent.purpose_key, text, text, text, timestamptz, jsonb) IS
	'Record that a person grants consent to a purpose; pending when the purpose requires confirmation';

CREATE FUNCTION consent.deny(
	subject text,
	purpose consent.purpose_key,
	notice text DEFAULT NULL,
	method text DEFAULT 'api',
	source text DEFAULT NULL,
	evidence jsonb DEFAULT NULL)
RETURNS consent.status
AS 'MODULE_PATHNAME', 'consent_deny'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION consent.deny(text, consent.purpose_key, text, text, text, jsonb) IS
	'Record that a person refuses a purpose (or objects to it, for legitimate interests)';

CREATE FUNCTION consent.confirm(
	subject text,
	purpose consent.purpose_key,
	method text DEFAULT 'api',
	source text DEFAULT NULL,
	evidence jsonb DEFAULT NULL)
RETURNS consent.status
AS 'MODULE_PATHNAME', 'consent_confirm'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION consent.confirm(text, consent.purpose_key, text, text, jsonb) IS
	'Confirm a pending grant (double opt-in); fails when nothing is pending';

CREATE FUNCTION consent.withdraw(
	subject text,
	purpose consent.purpose_key,
	reason text DEFAULT NULL,
	method text DEFAULT 'api')
RETURNS consent.status
AS 'MODULE_PATHNAME', 'consent_withdraw'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION consent.withdraw(text, consent.purpose_key, text, text) IS
	'Record a withdrawal (also where nothing was granted); withdraws grants for descendant purposes too';

CREATE FUNCTION consent.withdraw_all(subject text, reason text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n integer := 0;
	d record;
BEGIN
	PERFORM consent.check_subject(subject);
	FOR d IN
		SELECT p.key FROM consent.records r
		  JOIN consent.purposes p ON p.id = r.purpose_id
		 WHERE r.subject = withdraw_all.subject
		   AND r.status IN ('granted', 'pending')
		   AND p.legal_basis IN ('consent', 'explicit_consent', 'legitimate_interests')
		 ORDER BY p.key
		   FOR UPDATE OF r
	LOOP
		PERFORM consent.apply_choice('withdraw', subject, d.key, NULL, 'api', NULL, NULL, NULL, reason);
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION consent.withdraw_all(text, text) IS
	'Withdraw every granted or pending consent of a person; returns how many were withdrawn';

--
-- bigint and uuid subjects map to their canonical text form.
--
CREATE FUNCTION consent.grant(subject bigint, purpose consent.purpose_key, notice text DEFAULT NULL,
	method text DEFAULT 'api', source text DEFAULT NULL, expires_at timestamptz DEFAULT NULL,
	evidence jsonb DEFAULT NULL)
RETURNS consent.status AS 'MODULE_PATHNAME', 'consent_grant'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
CREATE FUNCTION consent.grant(subject uuid, purpose consent.purpose_key, notice text DEFAULT NULL,
	method text DEFAULT 'api', source text DEFAULT NULL, expires_at timestamptz DEFAULT NULL,
	evidence jsonb DEFAULT NULL)
RETURNS consent.status AS 'MODULE_PATHNAME', 'consent_grant'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
CREATE FUNCTION consent.deny(subject bigint, purpose consent.purpose_key, notice text DEFAULT NULL,
	method text DEFAULT 'api', source text DEFAULT NULL, evidence jsonb DEFAULT NULL)
RETURNS consent.status AS 'MODULE_PATHNAME', 'consent_deny'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
CREATE FUNCTION consent.deny(subject uuid, purpose consent.purpose_key, notice text DEFAULT NULL,
	method text DEFAULT 'api', source text DEFAULT NULL, evidence jsonb DEFAULT NULL)
RETURNS consent.status AS 'MODULE_PATHNAME', 'consent_deny'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
CREATE FUNCTION consent.confirm(subject bigint, purpose consent.purpose_key, method text DEFAULT 'api',
	source text DEFAULT NULL, evidence jsonb DEFAULT NULL)
RETURNS consent.status AS 'MODULE_PATHNAME', 'consent_confirm'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
CREATE FUNCTION consent.confirm(subject uuid, purpose consent.purpose_key, method text DEFAULT 'api',
	source text DEFAULT NULL, evidence jsonb DEFAULT NULL)
RETURNS consent.status AS 'MODULE_PATHNAME', 'consent_confirm'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
CREATE FUNCTION consent.withdraw(subject bigint, purpose consent.purpose_key, reason text DEFAULT NULL,
	method text DEFAULT 'api')
RETURNS consent.status AS 'MODULE_PATHNAME', 'consent_withdraw'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
CREATE FUNCTION consent.withdraw(subject uuid, purpose consent.purpose_key, reason text DEFAULT NULL,
	method text DEFAULT 'api')
RETURNS consent.status AS 'MODULE_PATHNAME', 'consent_withdraw'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
CREATE FUNCTION consent.withdraw_all(subject bigint, reason text DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN consent.withdraw_all(subject::text, reason); END $$;
CREATE FUNCTION consent.withdraw_all(subject uuid, reason text DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN consent.withdraw_all(subject::text, reason); END $$;

COMMENT ON FUNCTION consent.grant(bigint, consent.purpose_key, text, text, text, timestamptz, jsonb) IS 'consent.grant for a bigint subject (stored as its text form)';
COMMENT ON FUNCTION consent.grant(uuid, consent.purpose_key, text, text, text, timestamptz, jsonb) IS 'consent.grant for a uuid subject (stored as its text form)';
COMMENT ON FUNCTION consent.deny(bigint, consent.purpose_key, text, text, text, jsonb) IS 'consent.deny for a bigint subject';
COMMENT ON FUNCTION consent.deny(uuid, consent.purpose_key, text, text, text, jsonb) IS 'consent.deny for a uuid subject';
COMMENT ON FUNCTION consent.confirm(bigint, consent.purpose_key, text, text, jsonb) IS 'consent.confirm for a bigint subject';
COMMENT ON FUNCTION consent.confirm(uuid, consent.purpose_key, text, text, jsonb) IS 'consent.confirm for a uuid subject';
COMMENT ON FUNCTION consent.withdraw(bigint, consent.purpose_key, text, text) IS 'consent.withdraw for a bigint subject';
COMMENT ON FUNCTION consent.withdraw(uuid, consent.purpose_key, text, text) IS 'consent.withdraw for a uuid subject';
COMMENT ON FUNCTION consent.withdraw_all(bigint, text) IS 'consent.withdraw_all for a bigint subject';
COMMENT ON FUNCTION consent.withdraw_all(uuid, text) IS 'consent.withdraw_all for a uuid subject';
