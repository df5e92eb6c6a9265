--
-- Public recording API.  Each function is SECURITY DEFINER with a pinned
-- search_path, qualifies every object, and returns the stored status.
-- PL/pgSQL rather than SQL even for one-line wrappers: a non-inlined SQL
-- function is planned again in every statement that calls it, a PL/pgSQL
-- one once per session.
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
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN consent.apply_choice('grant', subject, purpose, notice, method, source, expires_at, evidence, NULL);
END
$$;
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
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN consent.apply_choice('deny', subject, purpose, notice, method, source, NULL, evidence, NULL);
END
$$;
COMMENT ON FUNCTION consent.deny(text, consent.purpose_key, text, text, text, jsonb) IS
	'Record that a person refuses a purpose (or objects to it, for legitimate interests)';

CREATE FUNCTION consent.confirm(
	subject text,
	purpose consent.purpose_key,
	method text DEFAULT 'api',
	source text DEFAULT NULL,
	evidence jsonb DEFAULT NULL)
RETURNS consent.status
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN consent.apply_choice('confirm', subject, purpose, NULL, method, source, NULL, evidence, NULL);
END
$$;
COMMENT ON FUNCTION consent.confirm(text, consent.purpose_key, text, text, jsonb) IS
	'Confirm a pending grant (double opt-in); fails when nothing is pending';

CREATE FUNCTION consent.withdraw(
	subject text,
	purpose consent.purpose_key,
	reason text DEFAULT NULL,
	method text DEFAULT 'api')
RETURNS consent.status
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_status consent.status;
	d record;
BEGIN
	v_status := consent.apply_choice('withdraw', subject, purpose, NULL, method, NULL, NULL, NULL, reason);
	-- Withdrawing a purpose withdraws what was given for its descendants too,
	-- each recorded on its own, so that no narrower grant survives.  Only a
	-- purpose with children can have descendants: one index probe saves the
	-- query for every other purpose.
	IF NOT consent.purpose_has_children(purpose) THEN
		RETURN v_status;
	END IF;
	FOR d IN
		SELECT p.key FROM consent.records r
		  JOIN consent.purposes p ON p.id = r.purpose_id
		 WHERE r.subject = withdraw.subject
		   AND p.key OPERATOR(consent.<@) withdraw.purpose
		   AND p.key OPERATOR(consent.<>) withdraw.purpose
		   AND r.status IN ('granted', 'pending')
		   AND p.legal_basis IN ('consent', 'explicit_consent', 'legitimate_interests')
		 ORDER BY p.key
	LOOP
		PERFORM consent.apply_choice('withdraw', subject, d.key, NULL, method, NULL, NULL, NULL, reason);
	END LOOP;
	RETURN v_status;
END
$$;
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
RETURNS consent.status LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN consent.apply_choice('grant', subject::text, purpose, notice, method, source, expires_at, evidence, NULL); END $$;
CREATE FUNCTION consent.grant(subject uuid, purpose consent.purpose_key, notice text DEFAULT NULL,
	method text DEFAULT 'api', source text DEFAULT NULL, expires_at timestamptz DEFAULT NULL,
	evidence jsonb DEFAULT NULL)
RETURNS consent.status LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN consent.apply_choice('grant', subject::text, purpose, notice, method, source, expires_at, evidence, NULL); END $$;
CREATE FUNCTION consent.deny(subject bigint, purpose consent.purpose_key, notice text DEFAULT NULL,
	method text DEFAULT 'api', source text DEFAULT NULL, evidence jsonb DEFAULT NULL)
RETURNS consent.status LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN consent.apply_choice('deny', subject::text, purpose, notice, method, source, NULL, evidence, NULL); END $$;
CREATE FUNCTION consent.deny(subject uuid, purpose consent.purpose_key, notice text DEFAULT NULL,
	method text DEFAULT 'api', source text DEFAULT NULL, evidence jsonb DEFAULT NULL)
RETURNS consent.status LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN consent.apply_choice('deny', subject::text, purpose, notice, method, source, NULL, evidence, NULL); END $$;
CREATE FUNCTION consent.confirm(subject bigint, purpose consent.purpose_key, method text DEFAULT 'api',
	source text DEFAULT NULL, evidence jsonb DEFAULT NULL)
RETURNS consent.status LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN consent.apply_choice('confirm', subject::text, purpose, NULL, method, source, NULL, evidence, NULL); END $$;
CREATE FUNCTION consent.confirm(subject uuid, purpose consent.purpose_key, method text DEFAULT 'api',
	source text DEFAULT NULL, evidence jsonb DEFAULT NULL)
RETURNS consent.status LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN consent.apply_choice('confirm', subject::text, purpose, NULL, method, source, NULL, evidence, NULL); END $$;
CREATE FUNCTION consent.withdraw(subject bigint, purpose consent.purpose_key, reason text DEFAULT NULL,
	method text DEFAULT 'api')
RETURNS consent.status LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN consent.withdraw(subject::text, purpose, reason, method); END $$;
CREATE FUNCTION consent.withdraw(subject uuid, purpose consent.purpose_key, reason text DEFAULT NULL,
	method text DEFAULT 'api')
RETURNS consent.status LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN consent.withdraw(subject::text, purpose, reason, method); END $$;
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
