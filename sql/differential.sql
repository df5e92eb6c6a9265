--
-- Differential test: consent.has, has_all and has_any against a reference
-- predicate written independently in plain SQL over the consent tables,
-- for every (subject, purpose) pair of a random history, in three cache
-- modes (index probes, bulk map from the first call, the default).
--
-- The history is deterministic: setseed() and random() in one session
-- drive every choice, recorded through the API.  Only counts are shown.
--
\set VERBOSITY terse
DROP EXTENSION IF EXISTS consent CASCADE;
CREATE EXTENSION consent;
SET max_parallel_workers_per_gather = 0;
-- Autovacuum and autoanalyze invalidate the consent tables' relcache
-- entries, which makes the cache rebuild its maps: keep them away, so
-- that the counts of maps built below are exact.
ALTER TABLE consent.records SET (autovacuum_enabled = off);
ALTER TABLE consent.purposes SET (autovacuum_enabled = off);
ALTER TABLE consent.notices SET (autovacuum_enabled = off);

-- Ten purposes in a hierarchy, with mixed legal bases:
--   a (consent)           a.x (explicit_consent, double opt-in)
--   a.x.p (consent)       a.y (legitimate_interests)
--   b (contract)          b.z (consent, valid 30 days)  b.z.q (legitimate_interests)
--   c (explicit_consent)  d (consent)  d.e (legitimate_interests)
-- d and d.e are retired mid-history.
SELECT count(*) AS purposes FROM (VALUES
	(consent.define_purpose('a', 'A')),
	(consent.define_purpose('a.x', 'A X', 'explicit_consent', requires_confirmation => true)),
	(consent.define_purpose('a.x.p', 'A X P')),
	(consent.define_purpose('a.y', 'A Y', 'legitimate_interests')),
	(consent.define_purpose('b', 'B', 'contract')),
	(consent.define_purpose('b.z', 'B Z', valid_for => interval '30 days')),
	(consent.define_purpose('b.z.q', 'B Z Q', 'legitimate_interests')),
	(consent.define_purpose('c', 'C', 'explicit_consent')),
	(consent.define_purpose('d', 'D')),
	(consent.define_purpose('d.e', 'D E', 'legitimate_interests'))) v(id);
SELECT consent.publish_notice('pp', 1, 'Privacy v1', '{a,c}') > 0 AS pp1,
	   consent.publish_notice('tos', 1, 'Terms v1', '{b}') > 0 AS tos1;

-- 10,000 subjects with bigint-shaped keys and 500 uuid subjects.
CREATE TABLE diff_subjects (ord integer PRIMARY KEY, subject text NOT NULL UNIQUE, kind text NOT NULL);
INSERT INTO diff_subjects SELECT g, g::text, 'int' FROM generate_series(1, 10000) g;
INSERT INTO diff_subjects SELECT 10000 + g, md5('u' || g)::uuid::text, 'uuid' FROM generate_series(1, 500) g;

-- One step of history per iteration, every choice drawn from random().
-- Each iteration draws the same number of random values whatever it does,
-- so the history depends on the seed only.
CREATE FUNCTION diff_events(n integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	keys text[] := ARRAY['a', 'a.x', 'a.x.p', 'a.y', 'b', 'b.z', 'b.z.q', 'c', 'd', 'd.e'];
	s text;
	k text;
	r1 float8; r2 float8; r3 float8; r4 float8; r5 float8; r6 float8;
	basis text;
	retired boolean;
	refusable boolean;
	act text;
	v_notice text;
	v_expires timestamptz;
	v_status text;
BEGIN
	FOR i IN 1..n LOOP
		r1 := random(); r2 := random(); r3 := random(); r4 := random(); r5 := random(); r6 := random();
		s := (SELECT d.subject FROM diff_subjects d WHERE d.ord = 1 + floor(r5 * 10500)::integer);
		k := keys[1 + floor(r6 * 10)::integer];
		act := CASE WHEN r1 < 0.45 THEN 'grant'
					WHEN r1 < 0.57 THEN 'deny'
					WHEN r1 < 0.70 THEN 'withdraw'
					WHEN r1 < 0.85 THEN 'confirm'
					WHEN r1 < 0.97 THEN 'grant_expiring'
					ELSE 'withdraw_all' END;
		IF act = 'confirm' THEN
			k := 'a.x';
		END IF;
		SELECT p.legal_basis::text, p.retired_at IS NOT NULL INTO basis, retired
		  FROM consent.purposes p WHERE p.key::text = k;
		refusable := basis IN ('consent', 'explicit_consent', 'legitimate_interests');
		IF act = 'confirm' THEN
			SELECT r.status::text INTO v_status
			  FROM consent.records r JOIN consent.purposes p ON p.id = r.purpose_id
			 WHERE r.subject = s AND p.key::text = k;
			IF v_status IS DISTINCT FROM 'pending' THEN
				act := 'grant';
			END IF;
		END IF;
		-- a pending grant whose notice a material version superseded cannot
		-- be confirmed: ask again instead
		IF act = 'confirm' AND EXISTS (
				SELECT 1 FROM consent.records r JOIN consent.purposes p ON p.id = r.purpose_id
				  JOIN consent.notices n ON n.key = r.notice_key
				 WHERE r.subject = s AND p.key::text = k AND n.material AND n.version > r.notice_version) THEN
			act := 'grant';
		END IF;
		-- choices the API refuses are turned into ones it accepts: nothing
		-- is recorded for purposes that do not rest on consent
		IF NOT refusable THEN
			act := CASE WHEN act = 'withdraw_all' THEN act ELSE 'none' END;
		ELSIF act IN ('grant', 'grant_expiring', 'confirm') AND retired THEN
			act := 'withdraw';
		END IF;

		v_notice := NULL;
		IF k IN ('a', 'a.x', 'a.x.p', 'a.y', 'c') THEN
			v_notice := CASE WHEN r2 < 0.35 THEN 'pp' WHEN r2 < 0.45 THEN 'pp@1' END;
		ELSIF k LIKE 'b%' THEN
			v_notice := CASE WHEN r2 < 0.40 THEN 'tos' WHEN r2 < 0.45 THEN 'tos@1' END;
		END IF;
		-- a notice version a material one superseded cannot be granted under
		IF v_notice LIKE '%@1' AND EXISTS (
				SELECT 1 FROM consent.notices n
				 WHERE n.key = split_part(v_notice, '@', 1) AND n.material AND n.version > 1) THEN
			v_notice := split_part(v_notice, '@', 1);
		END IF;
		-- only consent expires
		v_expires := CASE WHEN (act = 'grant_expiring' OR r3 < 0.15)
							   AND basis IN ('consent', 'explicit_consent')
						  THEN now() + (1 + floor(r4 * 365)) * interval '1 day' END;

		CASE act
			WHEN 'grant', 'grant_expiring' THEN
				PERFORM consent.grant(s, k::consent.purpose_key, v_notice, expires_at => v_expires);
			WHEN 'deny' THEN
				PERFORM consent.deny(s, k::consent.purpose_key, v_notice);
			WHEN 'withdraw' THEN
				PERFORM consent.withdraw(s, k::consent.purpose_key, 'changed my mind');
			WHEN 'confirm' THEN
				PERFORM consent.confirm(s, k::consent.purpose_key);
			WHEN 'withdraw_all' THEN
				PERFORM consent.withdraw_all(s);
			ELSE
				NULL;
		END CASE;
	END LOOP;
END
$$;

-- The reference: the effective rule in plain SQL, from the tables alone.
-- Ancestry by text prefix (not the extension's operators), depth by
-- counting dots, the nearest record by DISTINCT ON.
CREATE VIEW diff_reference AS
WITH pur AS (
	SELECT p.id, p.key, p.key::text AS k, p.legal_basis::text AS basis,
		   p.retired_at IS NOT NULL AS retired,
		   length(p.key::text) - length(replace(p.key::text, '.', '')) AS depth
	  FROM consent.purposes p
),
on_path AS (
	-- every record, paired with each purpose it lies on the path of
	SELECT r.subject, q.id AS qid, a.depth, r.status::text AS status, r.expires_at,
		   r.notice_key, r.notice_version
	  FROM consent.records r
	  JOIN pur a ON a.id = r.purpose_id
	  JOIN pur q ON q.k = a.k OR left(q.k, length(a.k) + 1) = a.k || '.'
),
nearest AS (
	SELECT DISTINCT ON (subject, qid) *
	  FROM on_path
	 ORDER BY subject, qid, depth DESC
)
SELECT s.subject, s.kind, s.ord, q.key AS pkey,
	   CASE
		   WHEN q.retired THEN false
		   WHEN n.subject IS NULL THEN q.basis NOT IN ('consent', 'explicit_consent')
		   ELSE n.status = 'granted'
				AND (n.expires_at IS NULL OR n.expires_at > now())
				AND NOT EXISTS (SELECT 1 FROM consent.notices nt
								 WHERE nt.key = n.notice_key AND nt.material
								   AND nt.version > n.notice_version)
	   END AS expected
  FROM diff_subjects s
 CROSS JOIN pur q
  LEFT JOIN nearest n ON n.subject = s.subject AND n.qid = q.id;

-- A few purpose arrays for has_all / has_any.
CREATE TABLE diff_arrays (n integer PRIMARY KEY, arr consent.purpose_key[] NOT NULL);
INSERT INTO diff_arrays VALUES
	(1, '{a.x.p,b.z.q}'), (2, '{a,b,c}'), (3, '{a.y,d.e}'), (4, '{b.z,a.x,c,a.y}'), (5, '{}');

-- One comparison in the current session's cache mode; returns one row.
-- Runs in one transaction, so that the reference and the checks share
-- now() and the snapshot.
CREATE FUNCTION diff_compare(mode text,
	OUT mode_ text, OUT pairs bigint, OUT mismatches bigint,
	OUT array_checks bigint, OUT all_mismatches bigint, OUT any_mismatches bigint,
	OUT has_calls_on_active bigint, OUT probes bigint, OUT map_builds bigint, OUT map_hits bigint)
LANGUAGE plpgsql AS $$
DECLARE
	before jsonb := consent.cache_info();
	after jsonb;
BEGIN
	mode_ := mode;
	CREATE TEMP TABLE diff_expected ON COMMIT DROP AS SELECT * FROM diff_reference;
	SELECT count(*), count(*) FILTER (WHERE consent.has(e.subject, e.pkey) IS DISTINCT FROM e.expected)
	  INTO pairs, mismatches
	  FROM diff_expected e;
	SELECT count(*), count(*) FILTER (WHERE consent.has_all(x.subject, x.arr) IS DISTINCT FROM x.all_expected),
		   count(*) FILTER (WHERE consent.has_any(x.subject, x.arr) IS DISTINCT FROM x.any_expected)
	  INTO array_checks, all_mismatches, any_mismatches
	  FROM (SELECT s.subject, a.arr, coalesce(bool_and(e.expected), true) AS all_expected,
				   coalesce(bool_or(e.expected), false) AS any_expected
			  FROM diff_arrays a CROSS JOIN diff_subjects s
			  LEFT JOIN diff_expected e ON e.subject = s.subject AND e.pkey::text = ANY (a.arr::text[])
			 GROUP BY s.subject, a.n, a.arr) x;
	after := consent.cache_info();
	SELECT count(*) INTO has_calls_on_active
	  FROM diff_expected e JOIN consent.purposes p ON p.key OPERATOR(consent.=) e.pkey
	 WHERE p.retired_at IS NULL;
	probes := (after->>'probes')::bigint - (before->>'probes')::bigint;
	map_builds := (after->>'map_builds')::bigint - (before->>'map_builds')::bigint;
	map_hits := (after->>'map_hits')::bigint - (before->>'map_hits')::bigint;
END
$$;

-- bigint and uuid subjects: the same answers through the other overloads.
CREATE FUNCTION diff_compare_typed(mode text,
	OUT mode_ text, OUT bigint_pairs bigint, OUT bigint_mismatches bigint,
	OUT uuid_pairs bigint, OUT uuid_mismatches bigint,
	OUT array_checks bigint, OUT array_mismatches bigint)
LANGUAGE plpgsql AS $$
BEGIN
	mode_ := mode;
	CREATE TEMP TABLE diff_expected ON COMMIT DROP AS SELECT * FROM diff_reference;
	SELECT count(*), count(*) FILTER (WHERE consent.has(e.subject::bigint, e.pkey) IS DISTINCT FROM e.expected)
	  INTO bigint_pairs, bigint_mismatches
	  FROM diff_expected e WHERE e.kind = 'int' AND e.ord <= 2000;
	SELECT count(*), count(*) FILTER (WHERE consent.has(e.subject::uuid, e.pkey) IS DISTINCT FROM e.expected)
	  INTO uuid_pairs, uuid_mismatches
	  FROM diff_expected e WHERE e.kind = 'uuid';
	SELECT count(*),
		   count(*) FILTER (WHERE CASE WHEN x.kind = 'int'
									   THEN consent.has_all(x.subject::bigint, x.arr) IS DISTINCT FROM x.all_expected
											OR consent.has_any(x.subject::bigint, x.arr) IS DISTINCT FROM x.any_expected
									   ELSE consent.has_all(x.subject::uuid, x.arr) IS DISTINCT FROM x.all_expected
											OR consent.has_any(x.subject::uuid, x.arr) IS DISTINCT FROM x.any_expected
								  END)
	  INTO array_checks, array_mismatches
	  FROM (SELECT s.subject, s.kind, a.arr, coalesce(bool_and(e.expected), true) AS all_expected,
				   coalesce(bool_or(e.expected), false) AS any_expected
			  FROM diff_arrays a CROSS JOIN diff_subjects s
			  LEFT JOIN diff_expected e ON e.subject = s.subject AND e.pkey::text = ANY (a.arr::text[])
			 WHERE s.ord <= 2000 OR s.kind = 'uuid'
			 GROUP BY s.subject, s.kind, a.n, a.arr) x;
END
$$;

-- What the counters say about the path taken.
CREATE FUNCTION diff_path(probes bigint, map_builds bigint, map_hits bigint, checks bigint,
	OUT probes_made text, OUT maps_built bigint, OUT map_hits_cover_checks boolean)
LANGUAGE sql AS $$
	SELECT CASE WHEN probes = 0 THEN 'none'
				WHEN probes = 1000 THEN 'up to the threshold (1000)'
				WHEN probes >= checks THEN 'one or more per check'
				ELSE 'only ' || probes END,
		   map_builds, map_hits >= checks
$$;

-- The history: three phases, with notices published and a purpose retired
-- between them.
SELECT setseed(0.42);
SELECT diff_events(20000);
-- a first comparison, under the bulk map, in this session: its cache must
-- notice every later write
SET consent.bulk_threshold = 0;
SELECT mode_, pairs, mismatches, all_mismatches, any_mismatches FROM diff_compare('bulk, after phase 1');
RESET consent.bulk_threshold;
-- a non-material version of pp, a material version of tos
SELECT consent.publish_notice('pp', 2, 'Privacy v2', '{a,c}') > 0 AS pp2,
	   consent.publish_notice('tos', 2, 'Terms v2', '{b}', material => true) > 0 AS tos2;
SELECT consent.retire_purpose('d');
SELECT diff_events(12000);
SET consent.bulk_threshold = 0;
SELECT mode_, pairs, mismatches, all_mismatches, any_mismatches FROM diff_compare('bulk, after phase 2');
RESET consent.bulk_threshold;
-- a material version of pp, then a non-material one (in two locales)
SELECT consent.publish_notice('pp', 3, 'Privacy v3', '{a,c}', material => true) > 0 AS pp3;
SELECT diff_events(8000);
SELECT consent.publish_notice('pp', 4, 'Privacy v4', '{a,c}') > 0 AS pp4,
	   consent.publish_notice('pp', 4, 'Datenschutz v4', '{a,c}', 'de') > 0 AS pp4_de;
SELECT diff_events(3000);

-- Expiry in the past by direct update (expired by time, status still
-- granted), and some rows marked expired; chosen by hash, so as
-- deterministic as the rest.
UPDATE consent.records SET expires_at = now() - (1 + abs(hashtext(subject)) % 48) * interval '1 hour'
 WHERE status = 'granted' AND abs(hashtext(subject || ':' || purpose_id)) % 8 = 0;
UPDATE consent.records SET status = 'expired'
 WHERE status IN ('granted', 'pending') AND abs(hashtext(subject || ':' || purpose_id)) % 8 = 1;

-- The history covers every case the rule distinguishes (not the exact
-- numbers, which would only restate the generator).
SELECT count(*) > 20000 AS many_records,
	   count(*) FILTER (WHERE r.status = 'granted' AND r.expires_at IS NULL) > 100 AS open_grants,
	   count(*) FILTER (WHERE r.status = 'granted' AND r.expires_at > now()) > 100 AS future_expiry,
	   count(*) FILTER (WHERE r.status = 'granted' AND r.expires_at <= now()) > 100 AS past_expiry_still_granted,
	   count(*) FILTER (WHERE r.status = 'expired') > 100 AS stored_expired,
	   count(*) FILTER (WHERE r.status = 'pending') > 100 AS pending,
	   count(*) FILTER (WHERE r.status = 'denied') > 100 AS denied,
	   count(*) FILTER (WHERE r.status = 'withdrawn') > 100 AS withdrawn,
	   count(*) FILTER (WHERE r.status = 'granted' AND r.notice_key = 'pp' AND r.notice_version < 3) > 100 AS pp_superseded,
	   count(*) FILTER (WHERE r.status = 'granted' AND r.notice_key = 'pp' AND r.notice_version = 3) > 100 AS pp_current,
	   count(*) FILTER (WHERE r.status = 'granted' AND r.notice_key = 'pp' AND r.notice_version = 4) > 10 AS pp_after_material,
	   count(*) FILTER (WHERE r.status = 'granted' AND r.notice_key = 'tos' AND r.notice_version = 1) > 100 AS tos_superseded,
	   count(*) FILTER (WHERE r.status = 'granted' AND p.requires_confirmation) > 100 AS confirmed,
	   count(*) FILTER (WHERE p.retired_at IS NOT NULL AND r.status = 'granted') > 100 AS granted_then_retired,
	   count(DISTINCT r.subject) FILTER (WHERE r.subject LIKE '%-%') > 100 AS uuid_subjects
  FROM consent.records r JOIN consent.purposes p ON p.id = r.purpose_id;
-- and nearer records override farther ones on the path
SELECT count(*) > 100 AS child_overrides_parent
  FROM consent.records rc
  JOIN consent.purposes pc ON pc.id = rc.purpose_id
  JOIN consent.purposes pp ON pp.key::text = consent.parent(pc.key)::text
  JOIN consent.records rp ON rp.subject = rc.subject AND rp.purpose_id = pp.id
 WHERE (rc.status = 'granted') <> (rp.status = 'granted');

-- Mode 1: index probes only.  A new session each time, so that no bulk map
-- from an earlier mode is left in this backend's cache.
\c -
SET max_parallel_workers_per_gather = 0;
SET consent.bulk_threshold = -1;
SELECT c.mode_, c.pairs, c.mismatches, c.array_checks, c.all_mismatches, c.any_mismatches, p.*
  FROM diff_compare('probes') c, diff_path(c.probes, c.map_builds, c.map_hits, c.has_calls_on_active) p;
SELECT * FROM diff_compare_typed('probes');

-- Mode 2: bulk map from the first call.
\c -
SET max_parallel_workers_per_gather = 0;
SET consent.bulk_threshold = 0;
SELECT c.mode_, c.pairs, c.mismatches, c.array_checks, c.all_mismatches, c.any_mismatches, p.*
  FROM diff_compare('bulk') c, diff_path(c.probes, c.map_builds, c.map_hits, c.has_calls_on_active) p;
SELECT * FROM diff_compare_typed('bulk');

-- Mode 3: the default threshold.
\c -
SET max_parallel_workers_per_gather = 0;
SHOW consent.bulk_threshold;
SELECT c.mode_, c.pairs, c.mismatches, c.array_checks, c.all_mismatches, c.any_mismatches, p.*
  FROM diff_compare('default') c, diff_path(c.probes, c.map_builds, c.map_hits, c.has_calls_on_active) p;
SELECT * FROM diff_compare_typed('default');

-- Mode 4: bulk maps again, with the uuid subjects' records gone, so that
-- every subject with a record is a bigint in a narrow range and the map is
-- dense (one verdict byte per id).  The uuid subjects stay in the
-- comparison, now without records.
DELETE FROM consent.records WHERE subject LIKE '%-%';
\c -
SET max_parallel_workers_per_gather = 0;
SET consent.bulk_threshold = 0;
SELECT (consent.cache_info() ->> 'dense_map_builds')::bigint AS dense_before \gset
SELECT c.mode_, c.pairs, c.mismatches, c.array_checks, c.all_mismatches, c.any_mismatches, p.*
  FROM diff_compare('bulk, dense') c, diff_path(c.probes, c.map_builds, c.map_hits, c.has_calls_on_active) p;
SELECT * FROM diff_compare_typed('bulk, dense');
SELECT (consent.cache_info() ->> 'dense_map_builds')::bigint > :dense_before AS dense_maps_built;

-- Clean up.
DROP FUNCTION diff_compare(text), diff_compare_typed(text), diff_path(bigint, bigint, bigint, bigint),
	diff_events(integer);
DROP VIEW diff_reference;
DROP TABLE diff_arrays, diff_subjects;
DROP EXTENSION consent CASCADE;
CREATE EXTENSION consent;
