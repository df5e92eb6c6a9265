-- The contract of the consent schema, read from the catalogs.
--
-- Most checks enumerate objects from pg_class, pg_attribute, pg_proc,
-- pg_type, pg_operator, pg_opclass, pg_opfamily and pg_trigger instead of
-- naming them, so that an object added later is held to the same rules:
-- a COMMENT on everything, a pinned search_path on every SECURITY DEFINER
-- function, STRICT and a declared volatility on every C function.  Each
-- such check is an is_empty() over the offenders, so a failure lists them.
-- A second, named part pins down what issue 2 promises: tables, columns
-- and types, enum labels in order, pg_dump configuration, the extension's
-- schema.
BEGIN;
SELECT plan(85);

-- -----------------------------------------------------------------------
-- Every object has a COMMENT
-- -----------------------------------------------------------------------

-- Every object of the schema that can carry a comment, as
-- (classid, objid, objsubid), the key of pg_description.
CREATE TEMP VIEW consent_objects AS
	-- the schema itself
	SELECT 'pg_namespace'::regclass AS classid, n.oid AS objid, 0 AS objsubid, 'schema' AS kind
	  FROM pg_namespace n WHERE n.nspname = 'consent'
	UNION ALL
	-- tables, views, sequences, composite types, foreign tables
	SELECT 'pg_class'::regclass, c.oid, 0,
		   CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
						  WHEN 'm' THEN 'view' WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'table'
						  ELSE 'type' END
	  FROM pg_class c
	 WHERE c.relnamespace = 'consent'::regnamespace
	   AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
	UNION ALL
	-- their columns
	SELECT 'pg_class'::regclass, c.oid, a.attnum, 'column'
	  FROM pg_class c
	  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
	 WHERE c.relnamespace = 'consent'::regnamespace
	   AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')
	UNION ALL
	-- functions, procedures, aggregates
	SELECT 'pg_proc'::regclass, p.oid, 0, 'function'
	  FROM pg_proc p WHERE p.pronamespace = 'consent'::regnamespace
	UNION ALL
	-- types: base, enum, domain, range, multirange; not the implicit array
	-- types nor the row types of tables (those are the tables)
	SELECT 'pg_type'::regclass, t.oid, 0, 'type'
	  FROM pg_type t
	 WHERE t.typnamespace = 'consent'::regnamespace
	   AND t.typtype IN ('b', 'e', 'd', 'r', 'm')
	   AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)
	UNION ALL
	SELECT 'pg_operator'::regclass, o.oid, 0, 'operator'
	  FROM pg_operator o WHERE o.oprnamespace = 'consent'::regnamespace
	UNION ALL
	SELECT 'pg_opclass'::regclass, oc.oid, 0, 'operator class'
	  FROM pg_opclass oc WHERE oc.opcnamespace = 'consent'::regnamespace
	UNION ALL
	SELECT 'pg_opfamily'::regclass, f.oid, 0, 'operator family'
	  FROM pg_opfamily f WHERE f.opfnamespace = 'consent'::regnamespace
	UNION ALL
	SELECT 'pg_trigger'::regclass, tg.oid, 0, 'trigger'
	  FROM pg_trigger tg
	  JOIN pg_class c ON c.oid = tg.tgrelid
	 WHERE c.relnamespace = 'consent'::regnamespace AND NOT tg.tgisinternal;

CREATE TEMP VIEW consent_uncommented AS
	SELECT o.kind, pg_describe_object(o.classid, o.objid, o.objsubid) AS object
	  FROM consent_objects o
	 WHERE NOT EXISTS (SELECT 1 FROM pg_description d
						WHERE d.classoid = o.classid AND d.objoid = o.objid
						  AND d.objsubid = o.objsubid AND btrim(d.description) <> '');

-- The enumeration must see the objects it is meant to check; otherwise the
-- is_empty() tests below would pass vacuously.
SELECT cmp_ok((SELECT count(*)::int FROM consent_objects WHERE kind = k), '>=', n,
			  format('the catalog query finds at least %s object(s) of kind %s', n, k))
  FROM (VALUES ('schema', 1), ('table', 3), ('column', 30), ('function', 50), ('type', 3),
			   ('operator', 8), ('sequence', 2), ('trigger', 3), ('operator class', 2),
			   ('operator family', 2)) AS v(k, n)
 ORDER BY k;

SELECT is_empty(format($$SELECT object FROM consent_uncommented WHERE kind = %L ORDER BY 1$$, k),
				CASE k WHEN 'schema' THEN 'schema consent has a COMMENT'
					   ELSE format('every %s in schema consent has a COMMENT', k) END)
  FROM unnest(ARRAY['schema', 'table', 'view', 'column', 'function', 'type', 'operator',
					'sequence', 'trigger', 'operator class', 'operator family']) AS k
 ORDER BY k;

SELECT is_empty(
	$$SELECT pg_describe_object('pg_cast'::regclass, c.oid, 0) FROM pg_cast c
		WHERE (c.castsource IN (SELECT oid FROM pg_type WHERE typnamespace = 'consent'::regnamespace)
			   OR c.casttarget IN (SELECT oid FROM pg_type WHERE typnamespace = 'consent'::regnamespace))
		  AND obj_description(c.oid, 'pg_cast') IS NULL$$,
	'every cast from or to a consent type has a COMMENT');

-- -----------------------------------------------------------------------
-- SECURITY DEFINER functions pin search_path
-- -----------------------------------------------------------------------

SELECT cmp_ok((SELECT count(*)::int FROM pg_proc
				WHERE pronamespace = 'consent'::regnamespace AND prosecdef), '>=', 21,
			  'the catalog query finds the SECURITY DEFINER functions');

SELECT is_empty(
	$$SELECT p.oid::regprocedure, p.proconfig FROM pg_proc p
		WHERE p.pronamespace = 'consent'::regnamespace AND p.prosecdef
		  AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
		ORDER BY 1::text$$,
	'every SECURITY DEFINER function in consent has SET search_path = pg_catalog, pg_temp');

-- A function that pins search_path pins it to exactly that: pg_catalog
-- first, pg_temp last, nothing a user can write in between.
SELECT is_empty(
	$$SELECT p.oid::regprocedure, c FROM pg_proc p, unnest(p.proconfig) c
		WHERE p.pronamespace = 'consent'::regnamespace
		  AND c LIKE 'search_path=%' AND c <> 'search_path=pg_catalog, pg_temp'
		ORDER BY 1::text$$,
	'no function in consent pins any other search_path');

SELECT set_has(
	$$SELECT p.oid::regprocedure::text FROM pg_proc p
		WHERE p.pronamespace = 'consent'::regnamespace AND p.prosecdef$$,
	$$VALUES ('consent."grant"(text,consent.purpose_key,text,text,text,timestamp with time zone,jsonb)'),
			 ('consent."grant"(bigint,consent.purpose_key,text,text,text,timestamp with time zone,jsonb)'),
			 ('consent."grant"(uuid,consent.purpose_key,text,text,text,timestamp with time zone,jsonb)'),
			 ('consent.deny(text,consent.purpose_key,text,text,text,jsonb)'),
			 ('consent.deny(bigint,consent.purpose_key,text,text,text,jsonb)'),
			 ('consent.deny(uuid,consent.purpose_key,text,text,text,jsonb)'),
			 ('consent.confirm(text,consent.purpose_key,text,text,jsonb)'),
			 ('consent.confirm(bigint,consent.purpose_key,text,text,jsonb)'),
			 ('consent.confirm(uuid,consent.purpose_key,text,text,jsonb)'),
			 ('consent.withdraw(text,consent.purpose_key,text,text)'),
			 ('consent.withdraw(bigint,consent.purpose_key,text,text)'),
			 ('consent.withdraw(uuid,consent.purpose_key,text,text)'),
			 ('consent.withdraw_all(text,text)'),
			 ('consent.withdraw_all(bigint,text)'),
			 ('consent.withdraw_all(uuid,text)'),
			 ('consent.define_purpose(consent.purpose_key,text,consent.legal_basis,text,interval,boolean)'),
			 ('consent.retire_purpose(consent.purpose_key)'),
			 ('consent.publish_notice(text,integer,text,consent.purpose_key[],text,boolean)')$$,
	'the recording and registry API is SECURITY DEFINER');

-- The single writer is not SECURITY DEFINER: only the API, which runs as
-- the extension owner, may reach it.
SELECT isnt_definer('consent', 'apply_choice',
	ARRAY['text', 'text', 'consent.purpose_key', 'text', 'text', 'text',
		  'timestamp with time zone', 'jsonb', 'text'],
	'consent.apply_choice is not SECURITY DEFINER');

-- -----------------------------------------------------------------------
-- C functions: STRICT and a declared volatility
-- -----------------------------------------------------------------------

CREATE TEMP VIEW consent_c_functions AS
	SELECT p.* FROM pg_proc p
	 WHERE p.pronamespace = 'consent'::regnamespace
	   AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'c');

SELECT cmp_ok((SELECT count(*)::int FROM consent_c_functions), '>=', 30,
			  'the catalog query finds the C functions');

-- The single writer and its public entry points, by signature.
CREATE TEMP TABLE writer_functions AS
	SELECT s::regprocedure AS oid FROM unnest(ARRAY[
		'consent.apply_choice(text,text,consent.purpose_key,text,text,text,timestamp with time zone,jsonb,text)',
		'consent."grant"(text,consent.purpose_key,text,text,text,timestamp with time zone,jsonb)',
		'consent."grant"(bigint,consent.purpose_key,text,text,text,timestamp with time zone,jsonb)',
		'consent."grant"(uuid,consent.purpose_key,text,text,text,timestamp with time zone,jsonb)',
		'consent.deny(text,consent.purpose_key,text,text,text,jsonb)',
		'consent.deny(bigint,consent.purpose_key,text,text,text,jsonb)',
		'consent.deny(uuid,consent.purpose_key,text,text,text,jsonb)',
		'consent.confirm(text,consent.purpose_key,text,text,jsonb)',
		'consent.confirm(bigint,consent.purpose_key,text,text,jsonb)',
		'consent.confirm(uuid,consent.purpose_key,text,text,jsonb)',
		'consent.withdraw(text,consent.purpose_key,text,text)',
		'consent.withdraw(bigint,consent.purpose_key,text,text)',
		'consent.withdraw(uuid,consent.purpose_key,text,text)']) s;

-- STRICT, so that C code never sees a NULL it does not expect.  Exempt:
-- trigger functions (no SQL arguments), functions without arguments, and
-- void functions; and the single writer and its public entry points
-- (grant, deny, confirm, withdraw, for each subject type), which check
-- every argument themselves because a NULL where a value is required has
-- its own error (sql/record_nulls.sql tests each one).
SELECT is_empty(
	$$SELECT oid::regprocedure FROM consent_c_functions
		WHERE NOT proisstrict AND pronargs > 0
		  AND prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype, 'void'::regtype)
		  AND oid NOT IN (SELECT oid FROM writer_functions)
		ORDER BY 1::text$$,
	'every C function in consent with arguments is STRICT (triggers and void functions aside)');

-- The catalog cannot tell "VOLATILE" written out from the default, but
-- the default pair (VOLATILE, PARALLEL UNSAFE) on a C function means
-- neither was thought about.  Triggers are exempt: they are called by
-- the executor, never planned.
SELECT is_empty(
	$$SELECT oid::regprocedure FROM consent_c_functions
		WHERE provolatile = 'v' AND proparallel = 'u'
		  AND prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)
		  -- these write to the database, so PARALLEL UNSAFE is their true label
		  AND oid::regprocedure::text NOT IN ('consent.seal()', 'consent.audit_erase(text,text)', 'consent.sweep()')
		  AND oid NOT IN (SELECT oid FROM writer_functions)
		ORDER BY 1::text$$,
	'every C function in consent declares its volatility and parallel safety');

SELECT is_empty(
	$$SELECT oid::regprocedure FROM consent_c_functions
		WHERE prorettype = 'trigger'::regtype AND (proisstrict OR proretset)
		ORDER BY 1::text$$,
	'C trigger functions are plain trigger functions');

-- The checks used in RLS policies and queries: STABLE (they read tables
-- under the statement's snapshot), STRICT, PARALLEL SAFE.
SELECT is((SELECT count(*)::int FROM pg_proc
			WHERE pronamespace = 'consent'::regnamespace
			  AND proname IN ('has', 'has_all', 'has_any', 'mask')),
		  12, 'has, has_all, has_any and mask exist for text, bigint and uuid subjects');

SELECT is_empty(
	$$SELECT oid::regprocedure, provolatile, proisstrict, proparallel FROM pg_proc
		WHERE pronamespace = 'consent'::regnamespace
		  AND proname IN ('has', 'has_all', 'has_any', 'mask', 'explain')
		  AND NOT (provolatile = 's' AND proisstrict AND proparallel = 's')
		ORDER BY 1::text$$,
	'has, has_all, has_any, mask and explain are STABLE STRICT PARALLEL SAFE');

SELECT is_empty(
	$$SELECT oid::regprocedure, provolatile FROM pg_proc
		WHERE pronamespace = 'consent'::regnamespace
		  AND proname IN ('status', 'decisions')
		  AND NOT (provolatile = 's' AND proisstrict)
		ORDER BY 1::text$$,
	'status and decisions are STABLE STRICT');

SELECT is_empty(
	$$SELECT oid::regprocedure, provolatile FROM pg_proc
		WHERE pronamespace = 'consent'::regnamespace
		  AND proname IN ('grant', 'deny', 'confirm', 'withdraw', 'withdraw_all',
						  'define_purpose', 'retire_purpose', 'publish_notice', 'apply_choice')
		  AND provolatile <> 'v'
		ORDER BY 1::text$$,
	'functions that write are VOLATILE');

-- -----------------------------------------------------------------------
-- The extension: schema, relocatability, pg_dump configuration
-- -----------------------------------------------------------------------

SELECT is((SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'consent'),
		  'consent', 'the extension lives in schema consent');
SELECT ok(NOT (SELECT extrelocatable FROM pg_extension WHERE extname = 'consent'),
		  'the extension is not relocatable');
SELECT is((SELECT nspowner FROM pg_namespace WHERE nspname = 'consent'),
		  (SELECT extowner FROM pg_extension WHERE extname = 'consent'),
		  'schema consent belongs to the extension owner');

SELECT set_has(
	$$SELECT c::regclass::text FROM pg_extension e, unnest(e.extconfig) c WHERE e.extname = 'consent'$$,
	$$VALUES ('consent.purposes'), ('consent.notices'), ('consent.records'),
			 ('consent.purposes_id_seq'), ('consent.notices_id_seq')$$,
	'purposes, notices, records and their sequences are registered with pg_extension_config_dump');

-- Every table and sequence of the schema that holds data is dumped (a
-- table added later must be registered too, or pg_dump loses its rows).
SELECT is_empty(
	$$SELECT c.oid::regclass FROM pg_class c
		WHERE c.relnamespace = 'consent'::regnamespace AND c.relkind IN ('r', 'p', 'S')
		  AND c.oid <> ALL (coalesce((SELECT extconfig FROM pg_extension WHERE extname = 'consent'), '{}'))
		  -- the pseudonymisation key is kept out of dumps on purpose (docs/audit.md)
		  AND c.oid::regclass::text <> 'consent.audit_key'
		ORDER BY 1::text$$,
	'every table and sequence in consent is registered with pg_extension_config_dump');

SELECT is_empty(
	$$SELECT c::regclass, cond FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(c, cond)
		WHERE e.extname = 'consent' AND cond <> ''$$,
	'config dumps keep every row (no filter condition)');

-- -----------------------------------------------------------------------
-- Tables, columns, types
-- -----------------------------------------------------------------------

SELECT has_table('consent', t, format('table consent.%s exists', t))
  FROM unnest(ARRAY['purposes', 'notices', 'records']) AS t ORDER BY t;

SELECT col_type_is('consent', t, c, ty, format('consent.%s.%s is %s', t, c, ty))
  FROM (VALUES
	('purposes', 'id', 'integer'),
	('purposes', 'key', 'consent.purpose_key'),
	('purposes', 'parent_key', 'consent.purpose_key'),
	('purposes', 'title', 'text'),
	('purposes', 'description', 'text'),
	('purposes', 'legal_basis', 'consent.legal_basis'),
	('purposes', 'valid_for', 'interval'),
	('purposes', 'requires_confirmation', 'boolean'),
	('purposes', 'created_at', 'timestamp with time zone'),
	('purposes', 'retired_at', 'timestamp with time zone'),
	('notices', 'key', 'text'),
	('notices', 'version', 'integer'),
	('notices', 'locale', 'text'),
	('notices', 'body', 'text'),
	('notices', 'body_sha256', 'bytea'),
	('notices', 'purposes', 'consent.purpose_key[]'),
	('notices', 'material', 'boolean'),
	('notices', 'published_at', 'timestamp with time zone'),
	('records', 'subject', 'text'),
	('records', 'purpose_id', 'integer'),
	('records', 'status', 'consent.status'),
	('records', 'effective_at', 'timestamp with time zone'),
	('records', 'expires_at', 'timestamp with time zone'),
	('records', 'notice_key', 'text'),
	('records', 'notice_version', 'integer'),
	('records', 'method', 'text'),
	('records', 'source', 'text'),
	('records', 'actor', 'text'),
	('records', 'evidence', 'jsonb')
  ) AS v(t, c, ty);

SELECT col_is_pk('consent', 'purposes', 'id', 'consent.purposes has primary key id');
SELECT col_is_unique('consent', 'purposes', ARRAY['key'], 'purpose keys are unique');
SELECT col_is_pk('consent', 'records', ARRAY['subject', 'purpose_id'],
				 'consent.records has one row per (subject, purpose_id)');
SELECT col_is_unique('consent', 'notices', ARRAY['key', 'version', 'locale'],
					 'a notice version exists once per locale');
SELECT fk_ok('consent', 'records', 'purpose_id', 'consent', 'purposes', 'id',
			 'records reference purposes by id');
-- a purpose's parent must exist: a deferred constraint trigger (not a
-- self-referencing foreign key, which pg_dump cannot order on restore)
SELECT ok(EXISTS (SELECT 1 FROM pg_trigger t
				   WHERE t.tgrelid = 'consent.purposes'::regclass AND t.tgname = 'purpose_tree'
					 AND t.tgconstraint <> 0 AND t.tgdeferrable AND t.tginitdeferred),
		  'a purpose''s parent must exist (deferred constraint trigger purpose_tree)');

SELECT is_empty(
	$$SELECT a.attrelid::regclass, a.attname FROM pg_attribute a
		WHERE (a.attrelid, a.attname) IN (('consent.notices'::regclass, 'body_sha256'),
										  ('consent.purposes'::regclass, 'parent_key'))
		  AND a.attgenerated <> 's'$$,
	'notices.body_sha256 and purposes.parent_key are computed (stored generated columns)');

SELECT is((SELECT collname::text FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation
			WHERE a.attrelid = 'consent.records'::regclass AND a.attname = 'subject'),
		  'C', 'subjects compare bytewise (collation "C")');

SELECT enum_has_labels('consent', 'legal_basis',
	ARRAY['consent', 'explicit_consent', 'contract', 'legal_obligation',
		  'vital_interests', 'public_task', 'legitimate_interests'],
	'consent.legal_basis has exactly the GDPR bases, in order');
SELECT enum_has_labels('consent', 'status',
	ARRAY['pending', 'granted', 'denied', 'withdrawn', 'expired'],
	'consent.status has exactly pending, granted, denied, withdrawn, expired, in order');

SELECT has_type('consent', 'purpose_key', 'type consent.purpose_key exists');
SELECT is((SELECT typtype::text FROM pg_type WHERE oid = 'consent.purpose_key'::regtype), 'b',
		  'consent.purpose_key is a base type');

SELECT * FROM finish();
ROLLBACK;
