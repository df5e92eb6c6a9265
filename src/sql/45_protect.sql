--
-- Protecting tables: row-level security policies that gate rows on
-- current consent (docs/enforcement.md).
--

CREATE TABLE consent.protections (
	relation	regclass NOT NULL,
	purpose		consent.purpose_key NOT NULL,
	subject_column name NOT NULL,
	roles		name[] NOT NULL,
	command		text NOT NULL CHECK (command IN ('SELECT', 'UPDATE', 'DELETE', 'ALL')),
	created_base_policy boolean NOT NULL DEFAULT false,
	enabled_rls boolean NOT NULL DEFAULT false,
	protected_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (relation, purpose)
);
COMMENT ON TABLE consent.protections IS
	'Tables gated by consent.protect(): one row per (table, purpose)';
COMMENT ON COLUMN consent.protections.relation IS 'the protected table';
COMMENT ON COLUMN consent.protections.purpose IS 'the purpose its rows need';
COMMENT ON COLUMN consent.protections.subject_column IS 'column holding the subject (text, varchar, bigint, integer, smallint or uuid)';
COMMENT ON COLUMN consent.protections.roles IS 'roles the policy applies to';
COMMENT ON COLUMN consent.protections.command IS 'SELECT, UPDATE, DELETE or ALL';
COMMENT ON COLUMN consent.protections.created_base_policy IS 'protect() added the permissive consent:base policy (no permissive policy existed); kept on every row of the table';
COMMENT ON COLUMN consent.protections.enabled_rls IS 'protect() enabled row level security on the table (it was off); kept on every row of the table';
COMMENT ON COLUMN consent.protections.protected_at IS 'when the policy was (re)created';
COMMENT ON INDEX consent.protections_pkey IS 'one protection per (table, purpose)';

-- The name of the policy that gates a table on a purpose: consent:<key>,
-- or, where that would pass PostgreSQL's 63-byte limit on names, the key's
-- first 45 bytes and 8 hex digits of its MD5.
CREATE FUNCTION consent.policy_name(purpose consent.purpose_key) RETURNS name
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT (CASE WHEN octet_length('consent:' || purpose::text) <= 63
				 THEN 'consent:' || purpose::text
				 ELSE 'consent:' || left(purpose::text, 45) || '~' || left(md5(purpose::text), 8)
			END)::name
$$;
COMMENT ON FUNCTION consent.policy_name(consent.purpose_key) IS
	'Name of the policy consent.protect() creates for a purpose (shortened with a hash past 63 bytes)';

-- The privileged half of protect() and unprotect().  They run as the
-- caller, so that PostgreSQL itself checks table ownership when they
-- create or drop the policy; what needs more than that goes through these
-- two SECURITY DEFINER helpers, which trust nothing but the catalog: only a
-- table's owner can have created or dropped its consent:<purpose> policy.

-- Record a protection whose policy exists, and let the roles the policy
-- applies to evaluate it: USAGE on schema consent, EXECUTE on consent.has.
CREATE FUNCTION consent.record_protection(
	tbl regclass, purpose consent.purpose_key, subject_column name, command text,
	created_base boolean, enabled_rls boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_roles oid[];
	v_names name[];
	r oid;
	grantee text;
BEGIN
	-- Called by protect() on behalf of the table's owner; refuse anyone
	-- whose login role could not have acted as the owner.
	IF NOT pg_catalog.pg_has_role(session_user,
			(SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = tbl), 'USAGE') THEN
		RAISE EXCEPTION 'must be owner of table %', tbl USING ERRCODE = 'insufficient_privilege';
	END IF;
	SELECT po.polroles INTO v_roles FROM pg_catalog.pg_policy po
	 WHERE po.polrelid = tbl AND po.polname = consent.policy_name(purpose)
	   AND NOT po.polpermissive;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'table % has no policy "consent:%"', tbl, purpose
			USING ERRCODE = 'undefined_object', HINT = 'Use consent.protect().';
	END IF;
	v_names := ARRAY(SELECT CASE WHEN x = 0 THEN 'public'::name ELSE x::regrole::text::name END
					   FROM unnest(v_roles) x);
	FOREACH r IN ARRAY v_roles LOOP
		grantee := CASE WHEN r = 0 THEN 'PUBLIC' ELSE r::regrole::text END;
		EXECUTE format('GRANT USAGE ON SCHEMA consent TO %s', grantee);
		EXECUTE format('GRANT EXECUTE ON FUNCTION consent.has(text, consent.purpose_key), '
					   'consent.has(bigint, consent.purpose_key), consent.has(uuid, consent.purpose_key) TO %s',
					   grantee);
	END LOOP;

	-- What protect() changed on the table is undone with its last
	-- protection, whichever that is: every row of the table carries it.
	SELECT created_base OR coalesce(bool_or(p.created_base_policy), false),
		   record_protection.enabled_rls OR coalesce(bool_or(p.enabled_rls), false)
	  INTO created_base, record_protection.enabled_rls
	  FROM consent.protections p WHERE p.relation = tbl;
	UPDATE consent.protections p
	   SET created_base_policy = created_base, enabled_rls = record_protection.enabled_rls
	 WHERE p.relation = tbl;

	INSERT INTO consent.protections AS p
		(relation, purpose, subject_column, roles, command, created_base_policy, enabled_rls)
	VALUES (tbl, purpose, subject_column, v_names, command, created_base, record_protection.enabled_rls)
	ON CONFLICT ON CONSTRAINT protections_pkey DO UPDATE
	   SET subject_column = EXCLUDED.subject_column, roles = EXCLUDED.roles, command = EXCLUDED.command,
		   created_base_policy = EXCLUDED.created_base_policy, enabled_rls = EXCLUDED.enabled_rls,
		   protected_at = pg_catalog.now();
END
$$;
COMMENT ON FUNCTION consent.record_protection(regclass, consent.purpose_key, name, text, boolean, boolean) IS
	'Internal: record a protection whose consent policy exists, and grant its roles what the policy needs';

-- Forget a protection whose policy is gone.  When it was the table's last,
-- says whether protect() added consent:base and enabled row level security,
-- so that unprotect() can undo them.
CREATE FUNCTION consent.forget_protection(tbl regclass, purpose consent.purpose_key,
										  OUT drop_base boolean, OUT disable_rls boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_base boolean;
	v_rls boolean;
BEGIN
	IF NOT pg_catalog.pg_has_role(session_user,
			(SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = tbl), 'USAGE') THEN
		RAISE EXCEPTION 'must be owner of table %', tbl USING ERRCODE = 'insufficient_privilege';
	END IF;
	IF EXISTS (SELECT 1 FROM pg_catalog.pg_policy po
				WHERE po.polrelid = tbl AND po.polname = consent.policy_name(purpose)) THEN
		RAISE EXCEPTION 'the policy "consent:%" on % still exists', purpose, tbl
			USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Use consent.unprotect().';
	END IF;
	DELETE FROM consent.protections p
	 WHERE p.relation = tbl AND p.purpose OPERATOR(consent.=) forget_protection.purpose
	RETURNING p.created_base_policy, p.enabled_rls INTO v_base, v_rls;
	IF EXISTS (SELECT 1 FROM consent.protections p WHERE p.relation = tbl) THEN
		drop_base := false;
		disable_rls := false;
	ELSE
		drop_base := coalesce(v_base, false);
		disable_rls := coalesce(v_rls, false);
	END IF;
END
$$;
COMMENT ON FUNCTION consent.forget_protection(regclass, consent.purpose_key) IS
	'Internal: forget a protection whose consent policy has been dropped';

CREATE FUNCTION consent.protect(
	tbl regclass,
	subject_column name,
	purpose consent.purpose_key,
	roles name[] DEFAULT '{public}',
	command text DEFAULT 'SELECT')
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_owner oid;
	v_kind "char";
	v_type regtype;
	v_dropped boolean;
	v_expr text;
	v_cmd text;
	v_roles text;
	v_retired timestamptz;
	v_has_permissive boolean;
	v_base boolean := false;
	v_rls_was_on boolean;
	r name;
BEGIN
	IF tbl IS NULL OR subject_column IS NULL OR purpose IS NULL OR roles IS NULL OR command IS NULL THEN
		RAISE EXCEPTION 'consent.protect() arguments must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	v_cmd := upper(btrim(command));
	IF v_cmd NOT IN ('SELECT', 'UPDATE', 'DELETE', 'ALL') THEN
		RAISE EXCEPTION 'command must be SELECT, UPDATE, DELETE or ALL, not "%"', command
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'INSERT alone is not gated; with ALL (or UPDATE), new rows must pass the check too.';
	END IF;
	IF cardinality(roles) IS NULL OR cardinality(roles) = 0 OR array_position(roles, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'roles must be a non-empty array without NULL' USING ERRCODE = 'invalid_parameter_value';
	END IF;

	SELECT c.relowner, c.relkind, c.relrowsecurity INTO v_owner, v_kind, v_rls_was_on
	  FROM pg_catalog.pg_class c WHERE c.oid = tbl;
	IF v_kind NOT IN ('r', 'p') THEN
		RAISE EXCEPTION '"%" is not a table', tbl
			USING ERRCODE = 'wrong_object_type', HINT = 'Row-level security applies to tables and partitioned tables.';
	END IF;
	IF NOT pg_catalog.pg_has_role(current_user, v_owner, 'USAGE') THEN
		RAISE EXCEPTION 'must be owner of table %', tbl
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Only the owner of a table can change its row-level security.';
	END IF;

	SELECT a.atttypid::regtype, a.attisdropped INTO v_type, v_dropped
	  FROM pg_catalog.pg_attribute a
	 WHERE a.attrelid = tbl AND a.attname = subject_column AND a.attnum > 0;
	IF v_type IS NULL OR v_dropped THEN
		RAISE EXCEPTION 'column "%" of table % does not exist', subject_column, tbl
			USING ERRCODE = 'undefined_column';
	END IF;
	v_expr := CASE v_type
		WHEN 'text'::regtype THEN quote_ident(subject_column)
		WHEN 'character varying'::regtype THEN quote_ident(subject_column) || '::text'
		WHEN 'bigint'::regtype THEN quote_ident(subject_column)
		WHEN 'integer'::regtype THEN quote_ident(subject_column) || '::bigint'
		WHEN 'smallint'::regtype THEN quote_ident(subject_column) || '::bigint'
		WHEN 'uuid'::regtype THEN quote_ident(subject_column)
	END;
	IF v_expr IS NULL THEN
		RAISE EXCEPTION 'column "%" of table % has type %, which cannot hold a subject', subject_column, tbl, v_type
			USING ERRCODE = 'datatype_mismatch',
				  HINT = 'Subject columns must be text, varchar, bigint, integer, smallint or uuid.';
	END IF;

	SELECT p.retired_at INTO v_retired FROM consent.purposes p WHERE p.key OPERATOR(consent.=) purpose;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'purpose "%" does not exist', purpose
			USING ERRCODE = 'undefined_object', HINT = consent.closest_purposes(purpose::text);
	END IF;
	IF v_retired IS NOT NULL THEN
		RAISE EXCEPTION 'purpose "%" is retired', purpose
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'A policy on a retired purpose would hide every row.';
	END IF;

	v_roles := '';
	FOREACH r IN ARRAY roles LOOP
		IF lower(r) = 'public' THEN
			v_roles := v_roles || CASE WHEN v_roles = '' THEN '' ELSE ', ' END || 'PUBLIC';
		ELSIF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
			RAISE EXCEPTION 'role "%" does not exist', r USING ERRCODE = 'undefined_object';
		ELSE
			v_roles := v_roles || CASE WHEN v_roles = '' THEN '' ELSE ', ' END || quote_ident(r);
		END IF;
	END LOOP;

	-- The consent policy is RESTRICTIVE, so no other policy can widen it.
	-- Restrictive policies only narrow what a permissive one allows: when the
	-- table has none, add consent:base (permissive, all rows).
	SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_policy p
					WHERE p.polrelid = tbl AND p.polpermissive
					  AND p.polname <> 'consent:base')
	  INTO v_has_permissive;
	IF NOT v_has_permissive THEN
		IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policy p
						WHERE p.polrelid = tbl AND p.polname = 'consent:base') THEN
			EXECUTE format('CREATE POLICY %I ON %s AS PERMISSIVE FOR ALL USING (true) WITH CHECK (true)',
						   'consent:base', tbl);
			EXECUTE format('COMMENT ON POLICY %I ON %s IS %L', 'consent:base', tbl,
						   'consent: lets the restrictive consent policies alone decide (added by consent.protect)');
		END IF;
		v_base := true;
	END IF;

	IF EXISTS (SELECT 1 FROM pg_catalog.pg_policy p
				WHERE p.polrelid = tbl AND p.polname = consent.policy_name(purpose)) THEN
		EXECUTE format('DROP POLICY %I ON %s', consent.policy_name(purpose), tbl);
	END IF;
	-- For UPDATE and ALL the check applies to new rows too (PostgreSQL uses
	-- USING as WITH CHECK): a gated role cannot write a row it could not
	-- read, and a unique key cannot be probed through INSERT.
	EXECUTE format('CREATE POLICY %I ON %s AS RESTRICTIVE FOR %s TO %s USING (consent.has(%s, %L::consent.purpose_key))',
				   consent.policy_name(purpose), tbl, v_cmd, v_roles, v_expr, purpose::text);
	EXECUTE format('COMMENT ON POLICY %I ON %s IS %L', consent.policy_name(purpose), tbl,
				   'consent: rows need current consent to ' || purpose::text || ' (consent.protect)');
	EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);

	PERFORM consent.record_protection(tbl, purpose, subject_column, v_cmd, v_base, NOT v_rls_was_on);
END
$$;
COMMENT ON FUNCTION consent.protect(regclass, name, consent.purpose_key, name[], text) IS
	'Enable row-level security on a table and create (or replace) the restrictive policy consent:<purpose>';

CREATE FUNCTION consent.unprotect(tbl regclass, purpose consent.purpose_key)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_owner oid;
	v_base boolean;
	v_rls boolean;
BEGIN
	IF tbl IS NULL OR purpose IS NULL THEN
		RAISE EXCEPTION 'consent.unprotect() arguments must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT c.relowner INTO v_owner FROM pg_catalog.pg_class c WHERE c.oid = tbl;
	IF NOT pg_catalog.pg_has_role(current_user, v_owner, 'USAGE') THEN
		RAISE EXCEPTION 'must be owner of table %', tbl USING ERRCODE = 'insufficient_privilege';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM consent.protections p
					WHERE p.relation = tbl AND p.purpose OPERATOR(consent.=) unprotect.purpose) THEN
		RAISE EXCEPTION 'table % is not protected for purpose "%"', tbl, purpose
			USING ERRCODE = 'undefined_object';
	END IF;
	EXECUTE format('DROP POLICY IF EXISTS %I ON %s', consent.policy_name(purpose), tbl);
	SELECT f.drop_base, f.disable_rls INTO v_base, v_rls
	  FROM consent.forget_protection(tbl, purpose) f;
	-- The last consent policy undoes what protect() did: consent:base goes,
	-- and row level security is disabled again if protect() enabled it and
	-- no other policy is left.  EXECUTE on consent.has stays granted:
	-- hand-written policies may rely on it.
	IF v_base THEN
		EXECUTE format('DROP POLICY IF EXISTS %I ON %s', 'consent:base', tbl);
	END IF;
	IF v_rls AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = tbl) THEN
		EXECUTE format('ALTER TABLE %s DISABLE ROW LEVEL SECURITY', tbl);
	END IF;
END
$$;
COMMENT ON FUNCTION consent.unprotect(regclass, consent.purpose_key) IS
	'Remove the consent policy for a purpose from a table (and consent:base with the last one)';

CREATE VIEW consent.protected_tables AS
SELECT n.nspname::text AS table_schema,
	   c.relname::text AS table_name,
	   pr.purpose::text AS purpose,
	   pr.subject_column::text AS subject_column,
	   pr.command,
	   pr.roles::text[] AS roles,
	   c.relrowsecurity AS rls_enabled,
	   c.relforcerowsecurity AS rls_forced,
	   EXISTS (SELECT 1 FROM pg_catalog.pg_policy po
				WHERE po.polrelid = c.oid AND po.polname = consent.policy_name(pr.purpose)) AS policy_present,
	   pr.protected_at
  FROM consent.protections pr
  JOIN pg_catalog.pg_class c ON c.oid = pr.relation
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace;
COMMENT ON VIEW consent.protected_tables IS 'Tables gated on consent by consent.protect()';
COMMENT ON COLUMN consent.protected_tables.table_schema IS 'schema of the protected table';
COMMENT ON COLUMN consent.protected_tables.table_name IS 'name of the protected table';
COMMENT ON COLUMN consent.protected_tables.purpose IS 'purpose its rows need';
COMMENT ON COLUMN consent.protected_tables.subject_column IS 'column holding the subject';
COMMENT ON COLUMN consent.protected_tables.command IS 'commands gated: SELECT, UPDATE, DELETE or ALL';
COMMENT ON COLUMN consent.protected_tables.roles IS 'roles the policy applies to';
COMMENT ON COLUMN consent.protected_tables.rls_enabled IS 'row-level security is enabled on the table';
COMMENT ON COLUMN consent.protected_tables.rls_forced IS 'row-level security also applies to the owner (FORCE)';
COMMENT ON COLUMN consent.protected_tables.policy_present IS 'the consent:<purpose> policy still exists';
COMMENT ON COLUMN consent.protected_tables.protected_at IS 'when the policy was last (re)created';

GRANT EXECUTE ON FUNCTION
	consent.protect(regclass, name, consent.purpose_key, name[], text),
	consent.unprotect(regclass, consent.purpose_key)
	TO consent_admin;
GRANT SELECT ON consent.protected_tables TO consent_admin, consent_reader;
GRANT EXECUTE ON FUNCTION consent.policy_name(consent.purpose_key) TO consent_admin, consent_reader;
SELECT pg_catalog.pg_extension_config_dump('consent.protections', '');
-- protect() runs as its caller (only a table's owner may change its
-- policies); what it needs of the extension is granted to consent_admin.
GRANT SELECT ON consent.protections TO consent_admin;
GRANT EXECUTE ON FUNCTION
	consent.record_protection(regclass, consent.purpose_key, name, text, boolean, boolean),
	consent.forget_protection(regclass, consent.purpose_key),
	consent.closest_purposes(text, boolean),
	consent.edit_distance(text, text)
	TO consent_admin;
