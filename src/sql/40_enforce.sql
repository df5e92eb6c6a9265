--
-- Enforcement and explanation: the effective rule, in C (src/enforce.c).
-- None of these is granted to PUBLIC: an answer reveals a person's choice.
--

-- Registers writers of the tables the rule reads, so that caches kept
-- across statements stay exact (src/cache.c).  ENABLE ALWAYS: it must fire
-- under session_replication_role = replica and for logical replication too.
CREATE FUNCTION consent.note_write() RETURNS trigger
	AS 'MODULE_PATHNAME', 'consent_note_write'
	LANGUAGE C;
COMMENT ON FUNCTION consent.note_write() IS
	'Internal statement trigger: registers transactions that write consent state, for cache invalidation';

CREATE TRIGGER note_write BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON consent.records
	FOR EACH STATEMENT EXECUTE FUNCTION consent.note_write();
CREATE TRIGGER note_write BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON consent.purposes
	FOR EACH STATEMENT EXECUTE FUNCTION consent.note_write();
CREATE TRIGGER note_write BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON consent.notices
	FOR EACH STATEMENT EXECUTE FUNCTION consent.note_write();
-- Per row too: logical replication's apply worker fires row triggers only.
-- After the first row of a transaction it costs one comparison.
CREATE TRIGGER note_write_row BEFORE INSERT OR UPDATE OR DELETE ON consent.records
	FOR EACH ROW EXECUTE FUNCTION consent.note_write();
CREATE TRIGGER note_write_row BEFORE INSERT OR UPDATE OR DELETE ON consent.purposes
	FOR EACH ROW EXECUTE FUNCTION consent.note_write();
CREATE TRIGGER note_write_row BEFORE INSERT OR UPDATE OR DELETE ON consent.notices
	FOR EACH ROW EXECUTE FUNCTION consent.note_write();
ALTER TABLE consent.records ENABLE ALWAYS TRIGGER note_write;
ALTER TABLE consent.purposes ENABLE ALWAYS TRIGGER note_write;
ALTER TABLE consent.notices ENABLE ALWAYS TRIGGER note_write;
ALTER TABLE consent.records ENABLE ALWAYS TRIGGER note_write_row;
ALTER TABLE consent.purposes ENABLE ALWAYS TRIGGER note_write_row;
ALTER TABLE consent.notices ENABLE ALWAYS TRIGGER note_write_row;
COMMENT ON TRIGGER note_write_row ON consent.records IS 'registers writers, per row (logical replication apply)';
COMMENT ON TRIGGER note_write_row ON consent.purposes IS 'registers writers, per row (logical replication apply)';
COMMENT ON TRIGGER note_write_row ON consent.notices IS 'registers writers, per row (logical replication apply)';
COMMENT ON TRIGGER note_write ON consent.records IS 'registers writers for exact cache invalidation';
COMMENT ON TRIGGER note_write ON consent.purposes IS 'registers writers for exact cache invalidation';
COMMENT ON TRIGGER note_write ON consent.notices IS 'registers writers for exact cache invalidation';

CREATE FUNCTION consent.has(subject text, purpose consent.purpose_key) RETURNS boolean
	AS 'MODULE_PATHNAME', 'consent_has_text' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION consent.has(subject bigint, purpose consent.purpose_key) RETURNS boolean
	AS 'MODULE_PATHNAME', 'consent_has_int8' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION consent.has(subject uuid, purpose consent.purpose_key) RETURNS boolean
	AS 'MODULE_PATHNAME', 'consent_has_uuid' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION consent.has_all(subject text, purposes consent.purpose_key[]) RETURNS boolean
	AS 'MODULE_PATHNAME', 'consent_has_all_text' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION consent.has_all(subject bigint, purposes consent.purpose_key[]) RETURNS boolean
	AS 'MODULE_PATHNAME', 'consent_has_all_int8' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION consent.has_all(subject uuid, purposes consent.purpose_key[]) RETURNS boolean
	AS 'MODULE_PATHNAME', 'consent_has_all_uuid' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION consent.has_any(subject text, purposes consent.purpose_key[]) RETURNS boolean
	AS 'MODULE_PATHNAME', 'consent_has_any_text' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION consent.has_any(subject bigint, purposes consent.purpose_key[]) RETURNS boolean
	AS 'MODULE_PATHNAME', 'consent_has_any_int8' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION consent.has_any(subject uuid, purposes consent.purpose_key[]) RETURNS boolean
	AS 'MODULE_PATHNAME', 'consent_has_any_uuid' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION consent.mask(value anyelement, subject text, purpose consent.purpose_key) RETURNS anyelement
	AS 'MODULE_PATHNAME', 'consent_mask_text' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION consent.mask(value anyelement, subject bigint, purpose consent.purpose_key) RETURNS anyelement
	AS 'MODULE_PATHNAME', 'consent_mask_int8' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION consent.mask(value anyelement, subject uuid, purpose consent.purpose_key) RETURNS anyelement
	AS 'MODULE_PATHNAME', 'consent_mask_uuid' LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION consent.has(text, consent.purpose_key) IS
	'Does the subject currently consent to the purpose (effective rule, MVCC-exact)?';
COMMENT ON FUNCTION consent.has(bigint, consent.purpose_key) IS 'consent.has for a bigint subject';
COMMENT ON FUNCTION consent.has(uuid, consent.purpose_key) IS 'consent.has for a uuid subject';
COMMENT ON FUNCTION consent.has_all(text, consent.purpose_key[]) IS
	'Does the subject consent to every one of the purposes (true for an empty array)?';
COMMENT ON FUNCTION consent.has_all(bigint, consent.purpose_key[]) IS 'consent.has_all for a bigint subject';
COMMENT ON FUNCTION consent.has_all(uuid, consent.purpose_key[]) IS 'consent.has_all for a uuid subject';
COMMENT ON FUNCTION consent.has_any(text, consent.purpose_key[]) IS
	'Does the subject consent to at least one of the purposes (false for an empty array)?';
COMMENT ON FUNCTION consent.has_any(bigint, consent.purpose_key[]) IS 'consent.has_any for a bigint subject';
COMMENT ON FUNCTION consent.has_any(uuid, consent.purpose_key[]) IS 'consent.has_any for a uuid subject';
COMMENT ON FUNCTION consent.mask(anyelement, text, consent.purpose_key) IS
	'The value when the subject consents to the purpose, else NULL';
COMMENT ON FUNCTION consent.mask(anyelement, bigint, consent.purpose_key) IS 'consent.mask for a bigint subject';
COMMENT ON FUNCTION consent.mask(anyelement, uuid, consent.purpose_key) IS 'consent.mask for a uuid subject';

CREATE FUNCTION consent.explain(
	subject text, purpose consent.purpose_key,
	OUT allowed boolean, OUT status text, OUT decided_by text, OUT reason text,
	OUT expires_at timestamptz)
	AS 'MODULE_PATHNAME', 'consent_explain' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION consent.explain(text, consent.purpose_key) IS
	'The effective decision for one subject and purpose, with the deciding record and the reason';

CREATE FUNCTION consent.cache_info() RETURNS jsonb
	AS 'MODULE_PATHNAME', 'consent_cache_info' LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION consent.cache_info() IS
	'Counters of this backend''s consent caches (scope and bulk map builds, hits, probes)';

CREATE FUNCTION consent.status(subject text, purpose consent.purpose_key) RETURNS consent.status
	LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$ BEGIN RETURN (consent.explain(subject, purpose)).status::consent.status; END $$;
CREATE FUNCTION consent.status(subject bigint, purpose consent.purpose_key) RETURNS consent.status
	LANGUAGE sql STABLE STRICT PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$ SELECT consent.status(subject::text, purpose) $$;
CREATE FUNCTION consent.status(subject uuid, purpose consent.purpose_key) RETURNS consent.status
	LANGUAGE sql STABLE STRICT PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$ SELECT consent.status(subject::text, purpose) $$;
COMMENT ON FUNCTION consent.status(text, consent.purpose_key) IS
	'Stored status of the nearest record on the path from the purpose to its root, or NULL';
COMMENT ON FUNCTION consent.status(bigint, consent.purpose_key) IS 'consent.status for a bigint subject';
COMMENT ON FUNCTION consent.status(uuid, consent.purpose_key) IS 'consent.status for a uuid subject';

CREATE FUNCTION consent.decisions(subject text)
RETURNS TABLE (purpose consent.purpose_key, title text, legal_basis consent.legal_basis,
			   allowed boolean, status consent.status, decided_by consent.purpose_key,
			   reason text, expires_at timestamptz)
	LANGUAGE sql STABLE STRICT PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT p.key, p.title, p.legal_basis, e.allowed, e.status::consent.status,
		   e.decided_by::consent.purpose_key, e.reason, e.expires_at
	  FROM consent.purposes p
	 CROSS JOIN LATERAL consent.explain(subject, p.key) e
	 ORDER BY p.key
	$$;
CREATE FUNCTION consent.decisions(subject bigint)
RETURNS TABLE (purpose consent.purpose_key, title text, legal_basis consent.legal_basis,
			   allowed boolean, status consent.status, decided_by consent.purpose_key,
			   reason text, expires_at timestamptz)
	LANGUAGE sql STABLE STRICT PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$ SELECT * FROM consent.decisions(subject::text) $$;
CREATE FUNCTION consent.decisions(subject uuid)
RETURNS TABLE (purpose consent.purpose_key, title text, legal_basis consent.legal_basis,
			   allowed boolean, status consent.status, decided_by consent.purpose_key,
			   reason text, expires_at timestamptz)
	LANGUAGE sql STABLE STRICT PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$ SELECT * FROM consent.decisions(subject::text) $$;
COMMENT ON FUNCTION consent.decisions(text) IS
	'One row per purpose: the effective decision for the subject and why';
COMMENT ON FUNCTION consent.decisions(bigint) IS 'consent.decisions for a bigint subject';
COMMENT ON FUNCTION consent.decisions(uuid) IS 'consent.decisions for a uuid subject';
