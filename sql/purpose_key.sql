--
-- consent.purpose_key: input rules, binary I/O, ordering, the tree
-- operators, parent/depth, casts, and index, hash and join support.
--

-- The operators live in schema consent, like everything else of the
-- extension; without it on the search_path a comparison of two keys fails
-- loudly instead of falling back to text's operators (shown at the end).
SET search_path = public, consent;

-- Catch an error and show its SQLSTATE, message and detail as a row.
CREATE FUNCTION pk_check(key text,
						 OUT state text, OUT message text, OUT detail text)
LANGUAGE plpgsql AS $$
DECLARE
	k consent.purpose_key;
BEGIN
	k := key::consent.purpose_key;
	state := 'ok';
	message := k::text;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE,
							message = MESSAGE_TEXT,
							detail = PG_EXCEPTION_DETAIL;
END
$$;

--
-- Valid keys: one segment, eight segments, exactly 63 bytes, digits and
-- underscores after a segment's first letter.
--
SELECT k, octet_length(k::text) AS bytes, consent.depth(k) AS depth
FROM (VALUES
	('marketing'::consent.purpose_key),
	('marketing.email'),
	('a'),
	('a.b.c.d.e.f.g.h'),
	('a1_.b_2.c__3x'),
	('abcdefg.abcdefg.abcdefg.abcdefg.abcdefg.abcdefg.abcdefg.abcdefg'),
	(repeat('x', 63)::consent.purpose_key)
) AS v(k);

--
-- Invalid keys: every kind, with SQLSTATE, message and detail.
--
SELECT label, r.*
FROM (VALUES
	('empty',                  ''),
	('lone dot',               '.'),
	('leading dot',            '.marketing'),
	('trailing dot',           'marketing.'),
	('double dot',             'marketing..email'),
	('three dots',             'a...b'),
	('starts with digit',      '1marketing'),
	('segment digit',          'marketing.2email'),
	('starts with underscore', '_marketing'),
	('segment underscore',     'marketing._email'),
	('uppercase first',        'Marketing'),
	('uppercase later',        'marketing.eMail'),
	('space',                  'marketing email'),
	('leading space',          ' marketing'),
	('trailing space',         'marketing '),
	('hyphen',                 'marketing-email'),
	('slash',                  'marketing/email'),
	('double quote',           'a"b'),
	('tab',                    E'a\tb'),
	('newline',                E'a\nb'),
	('nine segments',          'a.b.c.d.e.f.g.h.i'),
	('64 bytes',               repeat('x', 64)),
	('9 segments, 71 bytes',   'abcdefg.abcdefg.abcdefg.abcdefg.abcdefg.abcdefg.abcdefg.abcdefg.abcdefg'),
	('bad char beyond 63',     repeat('x', 69) || 'X'),
	('bad char beyond 8 segs', 'a.b.c.d.e.f.g.h.i-j')
) AS c(label, key), LATERAL pk_check(key) AS r;

-- A non-ASCII character is shown by its first byte, the same in every
-- encoding.  (Unaligned, as column widths would depend on the encoding.)
\pset format unaligned
SELECT label, r.*
FROM (VALUES
	('non-ASCII',              'café'),
	('non-ASCII first',        'émail')
) AS c(label, key), LATERAL pk_check(key) AS r;
\pset format aligned

-- A very long key is quoted clipped.
SELECT r.* FROM pk_check(repeat('abc', 100)) AS r;

-- The full report, once: message, detail and hint.
\set VERBOSITY default
SELECT 'marketing..email'::consent.purpose_key;
SELECT 'Marketing.Email'::consent.purpose_key;
\set VERBOSITY sqlstate
SELECT ''::consent.purpose_key;
SELECT 'a.b.c.d.e.f.g.h.i'::consent.purpose_key;
SELECT repeat('x', 64)::consent.purpose_key;
SELECT consent.purpose_key_in('Bad');
\set VERBOSITY terse
SELECT consent.purpose_key_in('bad key');

--
-- Binary I/O: COPY a key column to a binary file and back.
--
CREATE TABLE pk_keys (k consent.purpose_key);
INSERT INTO pk_keys VALUES
	('a'), ('marketing.email'), ('a.b.c.d.e.f.g.h'), (repeat('x', 63)), (NULL);
CREATE TEMP TABLE pk_copy (k consent.purpose_key);
CREATE TEMP TABLE pk_text (k text);

-- Files go in the data directory; COPY TO needs an absolute path.
CREATE FUNCTION pk_copy_file(name text) RETURNS text LANGUAGE sql
RETURN current_setting('data_directory') || '/purpose_key_test_' || name || '.bin';

DO $$
BEGIN
	EXECUTE format('COPY pk_keys TO %L (FORMAT binary)', pk_copy_file('keys'));
	EXECUTE format('COPY pk_copy FROM %L (FORMAT binary)', pk_copy_file('keys'));
END
$$;
SELECT k FROM pk_copy ORDER BY k;
-- every key came back, NULL included, and nothing else
SELECT count(*) AS copied,
	   (SELECT count(*) FROM pk_keys) AS original,
	   count(*) FILTER (WHERE k IS NULL) AS nulls
FROM pk_copy;
SELECT count(*) AS missing
FROM pk_keys o
WHERE o.k IS NOT NULL AND NOT EXISTS (SELECT FROM pk_copy c WHERE c.k = o.k);

-- The binary format is text's: a binary file of keys loads as text ...
TRUNCATE pk_text;
DO $$
BEGIN
	EXECUTE format('COPY pk_text FROM %L (FORMAT binary)', pk_copy_file('keys'));
END
$$;
SELECT k FROM pk_text ORDER BY k COLLATE "C";

-- ... and a binary file of valid texts loads as keys.
TRUNCATE pk_copy;
DO $$
BEGIN
	EXECUTE format('COPY (SELECT %L::text) TO %L (FORMAT binary)',
				   'from.text', pk_copy_file('text_ok'));
	EXECUTE format('COPY pk_copy FROM %L (FORMAT binary)', pk_copy_file('text_ok'));
END
$$;
SELECT k, pg_typeof(k) FROM pk_copy;

-- Binary input is validated: invalid texts written in binary fail to load
-- as keys with 22P02, and load nothing.
CREATE FUNCTION pk_binary_check(key text,
								OUT state text, OUT message text)
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('COPY (SELECT %L::text) TO %L (FORMAT binary)',
				   key, pk_copy_file('text_bad'));
	EXECUTE format('COPY pk_copy FROM %L (FORMAT binary)', pk_copy_file('text_bad'));
	state := 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE,
							message = MESSAGE_TEXT;
END
$$;
SELECT key, r.*
FROM (VALUES (''), ('Marketing'), ('a..b'), ('a.'), ('1a'),
			 ('a.b.c.d.e.f.g.h.i'), (repeat('x', 64))) AS c(key),
	 LATERAL pk_binary_check(key) AS r;
\pset format unaligned
SELECT * FROM pk_binary_check('café');
\pset format aligned
SELECT count(*) AS still_one_row FROM pk_copy;

--
-- Ordering: bytewise, so a key sorts right before its descendants, and
-- siblings in segment order.
--
CREATE TABLE pk_tree (k consent.purpose_key);
INSERT INTO pk_tree VALUES
	('b'), ('a_b'), ('a.c'), ('a0'), ('ab'), ('a.b.c'), ('a'), ('a.b'),
	('a.b_c'), ('a.b0'), ('marketing.sms'), ('marketing'), ('marketing.email'),
	('marketing.email.weekly'), ('marketing_email'), ('analytics');
SELECT k FROM pk_tree ORDER BY k;
SELECT k FROM pk_tree ORDER BY k DESC LIMIT 3;
-- same as byte order of the text
SELECT array_agg(k ORDER BY k) = array_agg(k ORDER BY k::text COLLATE "C") AS bytewise
FROM pk_tree;

SELECT a, b,
	   a < b AS lt, a <= b AS le, a = b AS eq, a <> b AS ne,
	   a >= b AS ge, a > b AS gt, consent.purpose_key_cmp(a, b) AS cmp
FROM (VALUES
	('a'::consent.purpose_key, 'a'::consent.purpose_key),
	('a', 'a.b'),
	('a.b', 'a'),
	('a.b', 'a0'),
	('a.z', 'a_'),
	('a.zzz', 'aa'),
	('marketing.email', 'marketing.sms'),
	('x', 'y')
) AS v(a, b);
SELECT min(k::text), max(k::text) FROM pk_tree;

--
-- The tree: @> (ancestor or same) and <@ (descendant or same).
--
SELECT a, b, a @> b AS contains, a <@ b AS contained, b @> a AS commuted
FROM (VALUES
	('marketing'::consent.purpose_key, 'marketing'::consent.purpose_key),
	('marketing', 'marketing.email'),
	('marketing', 'marketing.email.weekly'),
	('marketing.email', 'marketing'),
	('marketing', 'marketing_email'),
	('marketing', 'marketingx.email'),
	('mark', 'marketing'),
	('marketing.email', 'marketing.emails'),
	('marketing.email', 'marketing.sms'),
	('analytics', 'marketing')
) AS v(a, b);
SELECT k FROM pk_tree WHERE k <@ 'marketing' ORDER BY k;
SELECT k FROM pk_tree WHERE 'a.b.c' <@ k ORDER BY k;
SELECT k FROM pk_tree WHERE k @> 'marketing.email.weekly' ORDER BY k;

--
-- parent and depth.
--
SELECT k, consent.parent(k) AS parent, consent.parent(k) IS NULL AS is_root,
	   consent.depth(k) AS depth
FROM (VALUES ('a'::consent.purpose_key), ('a.b'), ('a.b.c'),
			 ('marketing.email.weekly'), ('a.b.c.d.e.f.g.h')) AS v(k);
SELECT pg_typeof(consent.parent('a.b')),
	   consent.parent(consent.parent('a.b.c')),
	   consent.parent(consent.parent(consent.parent('a.b.c'))) IS NULL AS root_parent_null;
SELECT consent.parent(NULL) IS NULL AS parent_null, consent.depth(NULL) IS NULL AS depth_null;
-- a key is its parent's descendant, one level deeper
SELECT bool_and(consent.parent(k) @> k AND consent.parent(k) < k AND
				consent.depth(consent.parent(k)) = consent.depth(k) - 1) AS consistent
FROM pk_tree WHERE consent.parent(k) IS NOT NULL;

--
-- Casts.
--
-- to text: by assignment or explicitly, never implicitly
SELECT 'marketing.email'::consent.purpose_key::text || '.weekly' AS concatenated,
	   length('marketing.email'::consent.purpose_key::text) AS length,
	   'marketing.email'::consent.purpose_key::text LIKE 'marketing.%' AS liked,
	   pg_typeof('a'::consent.purpose_key::text);
-- from text: validated
SELECT 'marketing.email'::text::consent.purpose_key;
SELECT 'Marketing'::text::consent.purpose_key;
SELECT CAST('a b'::text AS consent.purpose_key);
-- from text: by assignment, not implicitly
INSERT INTO pk_keys SELECT 'from.assignment'::text;
INSERT INTO pk_keys SELECT 'From.Assignment'::text;
SELECT k FROM pk_keys WHERE k = 'from.assignment';
SELECT consent.depth('a.b'::text);
-- a key compared to text is an error: cast one side explicitly
SELECT 'a.b'::consent.purpose_key = 'a.b'::text AS text_eq;
-- NULL passes through
SELECT NULL::text::consent.purpose_key IS NULL AS null_cast;

--
-- Indexes, joins and hashing.
--
-- (no autovacuum, so that plans cannot change under the test's feet)
CREATE TABLE pk_indexed (k consent.purpose_key PRIMARY KEY, n integer)
	WITH (autovacuum_enabled = off);
INSERT INTO pk_indexed
SELECT format('p%s.s%s', i / 10, i % 10)::consent.purpose_key, i
FROM generate_series(0, 999) AS i;
CREATE TABLE pk_hashed (k consent.purpose_key)
	WITH (autovacuum_enabled = off);
INSERT INTO pk_hashed SELECT k FROM pk_indexed;
CREATE INDEX pk_hashed_k ON pk_hashed USING hash (k);
ANALYZE pk_indexed, pk_hashed;

SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT n FROM pk_indexed WHERE k = 'p42.s7';
SELECT n FROM pk_indexed WHERE k = 'p42.s7';
EXPLAIN (COSTS OFF) SELECT k FROM pk_indexed WHERE k >= 'p42' AND k < 'p43' ORDER BY k;
SELECT k FROM pk_indexed WHERE k >= 'p42' AND k < 'p43' ORDER BY k;
EXPLAIN (COSTS OFF) SELECT k FROM pk_hashed WHERE k = 'p42.s7';
SELECT k FROM pk_hashed WHERE k = 'p42.s7';
SELECT count(*) FROM pk_hashed WHERE k = 'p42';
RESET enable_seqscan;
RESET enable_bitmapscan;

-- the primary key rejects duplicates
INSERT INTO pk_indexed VALUES ('p42.s7', -1);

-- hash join and merge join
SET enable_nestloop = off;
SET enable_mergejoin = off;
EXPLAIN (COSTS OFF)
SELECT count(*) FROM pk_indexed i JOIN pk_hashed h ON i.k = h.k;
SELECT count(*) FROM pk_indexed i JOIN pk_hashed h ON i.k = h.k;
RESET enable_mergejoin;
SET enable_hashjoin = off;
EXPLAIN (COSTS OFF)
SELECT count(*) FROM pk_indexed i JOIN pk_hashed h ON i.k = h.k;
SELECT count(*) FROM pk_indexed i JOIN pk_hashed h ON i.k = h.k;
RESET enable_hashjoin;
RESET enable_nestloop;

-- DISTINCT and GROUP BY through hashing
INSERT INTO pk_hashed SELECT k FROM pk_indexed WHERE n % 3 = 0;
SET enable_sort = off;
EXPLAIN (COSTS OFF) SELECT DISTINCT consent.parent(k) FROM pk_hashed;
SELECT count(*) FROM (SELECT DISTINCT consent.parent(k) FROM pk_hashed) AS d;
EXPLAIN (COSTS OFF) SELECT k, count(*) FROM pk_hashed GROUP BY k;
SELECT count(*) AS groups, sum(c) AS rows, max(c) AS most
FROM (SELECT k, count(*) AS c FROM pk_hashed GROUP BY k) AS g;
RESET enable_sort;

-- the hash functions agree with equality, and the extended one honours its seed
SELECT consent.purpose_key_hash('marketing.email') = consent.purpose_key_hash('marketing.email'::text::consent.purpose_key) AS same_hash,
	   consent.purpose_key_hash('marketing.email') <> consent.purpose_key_hash('marketing.sms') AS differ,
	   consent.purpose_key_hash_extended('marketing.email', 0) = consent.purpose_key_hash_extended('marketing.email', 0) AS same_ext,
	   consent.purpose_key_hash_extended('marketing.email', 0) <> consent.purpose_key_hash_extended('marketing.email', 1) AS seeded;
-- the 32-bit hash is the low half of the seed-0 extended hash
SELECT bool_and((consent.purpose_key_hash_extended(k, 0) & 4294967295) =
				(consent.purpose_key_hash(k)::bigint & 4294967295)) AS low_bits_match
FROM pk_tree;

--
-- Storage: keys are stored with a 1-byte header, and every function reads
-- compressed and out-of-line keys too.
--
SELECT pg_column_size(k) AS stored_bytes FROM pk_keys WHERE k = 'marketing.email';
CREATE TABLE pk_toasted (compressed consent.purpose_key,
						 outofline consent.purpose_key, filler text);
ALTER TABLE pk_toasted
	ALTER COLUMN outofline SET STORAGE external,
	ALTER COLUMN filler SET STORAGE plain;
INSERT INTO pk_toasted
VALUES (repeat('x', 63), 'marketing.email.weekly.abcdefghijklmnopqrstuvwxyz.abc',
		repeat('f', 3000));
-- 63 bytes of key stored in fewer: compressed inline
SELECT pg_column_size(compressed) < octet_length(compressed::text) AS is_compressed
FROM pk_toasted;
-- one value in the TOAST table: the out-of-line key
DO $$
DECLARE
	n bigint;
BEGIN
	EXECUTE format('SELECT count(DISTINCT chunk_id) FROM %s',
				   (SELECT reltoastrelid::regclass FROM pg_class
					WHERE oid = 'pk_toasted'::regclass))
	INTO n;
	RAISE NOTICE 'values stored out of line: %', n;
END
$$;
SELECT compressed = repeat('x', 63)::consent.purpose_key AS eq1,
	   outofline = 'marketing.email.weekly.abcdefghijklmnopqrstuvwxyz.abc' AS eq2,
	   compressed < outofline AS lt,
	   consent.purpose_key_cmp(outofline, compressed) AS cmp,
	   consent.depth(outofline) AS depth,
	   consent.parent(outofline) AS parent,
	   outofline <@ 'marketing.email' AS contained,
	   consent.purpose_key_hash(compressed) = consent.purpose_key_hash(repeat('x', 63)::consent.purpose_key) AS hash1,
	   consent.purpose_key_hash_extended(outofline, 7) =
	   consent.purpose_key_hash_extended('marketing.email.weekly.abcdefghijklmnopqrstuvwxyz.abc', 7) AS hash2
FROM pk_toasted;
SELECT compressed, outofline FROM pk_toasted;
DO $$
BEGIN
	EXECUTE format('COPY (SELECT compressed, outofline FROM pk_toasted) TO %L (FORMAT binary)',
				   pk_copy_file('toasted'));
END
$$;
CREATE TEMP TABLE pk_toasted_copy (a consent.purpose_key, b consent.purpose_key);
DO $$
BEGIN
	EXECUTE format('COPY pk_toasted_copy FROM %L (FORMAT binary)', pk_copy_file('toasted'));
END
$$;
SELECT a = compressed AND b = outofline AS binary_round_trip
FROM pk_toasted, pk_toasted_copy;

--
-- Catalog: properties of every object.
--
SELECT t.typname, t.typlen, t.typbyval, t.typalign, t.typstorage,
	   t.typcategory, t.typispreferred, t.typcollation <> 0 AS collatable
FROM pg_type t WHERE t.oid = 'consent.purpose_key'::regtype;

SELECT p.oid::regprocedure AS function, p.provolatile, p.proisstrict,
	   p.proparallel, p.proleakproof
FROM pg_proc p
WHERE p.pronamespace = 'consent'::regnamespace AND p.prolang = 13
  AND p.prosrc LIKE 'purpose\_key\_%'
ORDER BY p.proname;

SELECT o.oid::regoperator AS operator, o.oprcode, o.oprcom::regoperator AS commutator,
	   o.oprnegate::regoperator AS negator, o.oprrest, o.oprjoin,
	   o.oprcanhash, o.oprcanmerge
FROM pg_operator o
WHERE o.oprleft = 'consent.purpose_key'::regtype
ORDER BY o.oprname;

SELECT am.amname, opc.opcname, opc.opcdefault,
	   (SELECT string_agg(amop.amopstrategy || ' ' || amop.amopopr::regoperator, ', '
						  ORDER BY amop.amopstrategy)
		FROM pg_amop amop WHERE amop.amopfamily = opc.opcfamily) AS operators,
	   (SELECT string_agg(amproc.amprocnum || ' ' || amproc.amproc::regprocedure, ', '
						  ORDER BY amproc.amprocnum)
		FROM pg_amproc amproc WHERE amproc.amprocfamily = opc.opcfamily) AS functions
FROM pg_opclass opc JOIN pg_am am ON am.oid = opc.opcmethod
WHERE opc.opcintype = 'consent.purpose_key'::regtype
ORDER BY am.amname;

SELECT am.amname, opc.opcname, amvalidate(opc.oid)
FROM pg_opclass opc JOIN pg_am am ON am.oid = opc.opcmethod
WHERE opc.opcintype = 'consent.purpose_key'::regtype
ORDER BY am.amname;

SELECT c.castsource::regtype, c.casttarget::regtype, c.castfunc, c.castcontext,
	   c.castmethod
FROM pg_cast c
WHERE 'consent.purpose_key'::regtype IN (c.castsource, c.casttarget)
ORDER BY c.castsource::regtype::text COLLATE "C";

-- every object has a comment
SELECT pg_describe_object(d.classid, d.objid, 0) AS object,
	   obj_description(d.objid, d.classid::regclass::name) IS NOT NULL AS commented
FROM (
	SELECT 'pg_type'::regclass, 'consent.purpose_key'::regtype::oid
	UNION ALL
	SELECT 'pg_proc'::regclass, p.oid FROM pg_proc p
	WHERE p.pronamespace = 'consent'::regnamespace AND p.prolang = 13
	  AND p.prosrc LIKE 'purpose\_key\_%'
	UNION ALL
	SELECT 'pg_operator'::regclass, o.oid FROM pg_operator o
	WHERE o.oprleft = 'consent.purpose_key'::regtype
	UNION ALL
	SELECT 'pg_opclass'::regclass, opc.oid FROM pg_opclass opc
	WHERE opc.opcintype = 'consent.purpose_key'::regtype
	UNION ALL
	SELECT 'pg_opfamily'::regclass, opc.opcfamily FROM pg_opclass opc
	WHERE opc.opcintype = 'consent.purpose_key'::regtype
	UNION ALL
	SELECT 'pg_cast'::regclass, c.oid FROM pg_cast c
	WHERE 'consent.purpose_key'::regtype IN (c.castsource, c.casttarget)
) AS d(classid, objid)
ORDER BY pg_describe_object(d.classid, d.objid, 0) COLLATE "C";

--
-- Without consent on the search_path, operators on keys are not found: the
-- cast to text is not implicit, so there is no silent fallback to text's
-- operators (which would skip the key's index and compare by collation).
-- Qualify the operator, or put consent on the search_path.
--
SET search_path = public;
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT n FROM pk_indexed WHERE k = 'p42.s7';
EXPLAIN (COSTS OFF) SELECT n FROM pk_indexed WHERE k OPERATOR(consent.=) 'p42.s7';
SELECT 'a'::consent.purpose_key @> 'a.b'::consent.purpose_key;
SELECT 'a'::consent.purpose_key OPERATOR(consent.@>) 'a.b' AS qualified;
RESET enable_seqscan;
RESET enable_bitmapscan;
SET search_path = public, consent;

DROP TABLE pk_keys, pk_tree, pk_indexed, pk_hashed, pk_toasted;
DROP FUNCTION pk_check(text), pk_copy_file(text), pk_binary_check(text);
