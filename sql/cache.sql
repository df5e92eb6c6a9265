--
-- The enforcement caches (src/cache.c): which path answers, that every
-- path gives the same answers, the memory bound, and invalidation.
-- consent.cache_info() counters are per backend; the tests look at deltas.
--
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS consent CASCADE;
CREATE EXTENSION consent;
RESET client_min_messages;
SET search_path = public, consent;

SELECT consent.define_purpose('mkt', 'Marketing') IS NOT NULL AS defined;
SELECT consent.define_purpose('mkt.email', 'E-mail') IS NOT NULL AS defined;

-- 3000 subjects: ids 1..3000 as bigint; every third granted on mkt.email,
-- every fifth denied on mkt (the parent), some with an expiry.
INSERT INTO consent.records (subject, purpose_id, status, expires_at, method)
SELECT g::text, (SELECT id FROM consent.purposes WHERE key = 'mkt.email'),
	   'granted', CASE WHEN g % 7 = 0 THEN now() + interval '1 day' END, 'test'
  FROM generate_series(1, 3000) g WHERE g % 3 = 0;
INSERT INTO consent.records (subject, purpose_id, status, method)
SELECT g::text, (SELECT id FROM consent.purposes WHERE key = 'mkt'), 'denied', 'test'
  FROM generate_series(1, 3000) g WHERE g % 5 = 0;
-- an expired-by-time grant: the map stores the expiry, the lookup compares
UPDATE consent.records SET expires_at = now() - interval '1 second'
 WHERE subject = '21' AND purpose_id = (SELECT id FROM consent.purposes WHERE key = 'mkt.email');

CREATE TEMP TABLE subjects AS SELECT g::bigint AS id FROM generate_series(1, 3100) g;

CREATE FUNCTION pg_temp.counters() RETURNS jsonb LANGUAGE sql AS
$$ SELECT consent.cache_info() $$;
CREATE FUNCTION pg_temp.delta(before jsonb, field text) RETURNS bigint LANGUAGE sql AS
$$ SELECT (consent.cache_info() ->> field)::bigint - (before ->> field)::bigint $$;

-- the expected answer, in plain SQL
CREATE TEMP VIEW expected AS
SELECT s.id,
	   coalesce((SELECT r.status = 'granted' AND (r.expires_at IS NULL OR r.expires_at > now())
				   FROM consent.records r JOIN consent.purposes p ON p.id = r.purpose_id
				  WHERE r.subject = s.id::text AND p.key::text IN ('mkt.email', 'mkt')
				  ORDER BY p.key::text = 'mkt.email' DESC LIMIT 1), false) AS allowed
  FROM subjects s;

--
-- 1. Probes only: bulk_threshold = -1.
--
SET consent.bulk_threshold = -1;
SELECT pg_temp.counters() AS c0 \gset
SELECT count(*) FILTER (WHERE consent.has(s.id, 'mkt.email') IS DISTINCT FROM e.allowed) AS mismatches,
	   count(*) FILTER (WHERE e.allowed) AS allowed
  FROM subjects s JOIN expected e USING (id);
SELECT pg_temp.delta(:'c0', 'probes') = 3100 AS probed_every_row,
	   pg_temp.delta(:'c0', 'map_builds') = 0 AS no_map;

--
-- 2. A bulk map from the first call: bulk_threshold = 0.  bigint subjects
-- in a narrow range make it dense.
--
SET consent.bulk_threshold = 0;
SELECT pg_temp.counters() AS c0 \gset
SELECT count(*) FILTER (WHERE consent.has(s.id, 'mkt.email') IS DISTINCT FROM e.allowed) AS mismatches
  FROM subjects s JOIN expected e USING (id);
SELECT pg_temp.delta(:'c0', 'map_builds') = 1 AS one_map,
	   pg_temp.delta(:'c0', 'dense_map_builds') = 1 AS dense,
	   pg_temp.delta(:'c0', 'probes') = 0 AS no_probes,
	   pg_temp.delta(:'c0', 'map_hits') = 3100 AS every_row_from_the_map;

-- The same subjects as text: the same map answers.
SELECT pg_temp.counters() AS c0 \gset
SELECT count(*) FILTER (WHERE consent.has(s.id::text, 'mkt.email') IS DISTINCT FROM e.allowed) AS mismatches,
	   count(*) FILTER (WHERE consent.has(' ' || s.id::text, 'mkt.email')) AS non_canonical_text_allowed
  FROM subjects s JOIN expected e USING (id);
SELECT pg_temp.delta(:'c0', 'map_builds') = 0 AS map_reused;

-- 3. Kept across statements and transactions: the next statement builds
-- nothing.
SELECT pg_temp.counters() AS c0 \gset
SELECT count(*) FILTER (WHERE consent.has(id, 'mkt.email')) AS allowed FROM subjects;
SELECT pg_temp.delta(:'c0', 'scope_builds') = 0 AS scope_kept,
	   pg_temp.delta(:'c0', 'map_builds') = 0 AS map_kept;

-- 4. A write commits: the next statement rebuilds, and sees it.
SELECT consent.grant(1, 'mkt.email') AS granted;
SELECT pg_temp.counters() AS c0 \gset
SELECT consent.has(1::bigint, 'mkt.email') AS has_1,
	   count(*) FILTER (WHERE consent.has(s.id, 'mkt.email') IS DISTINCT FROM e.allowed) AS mismatches
  FROM subjects s JOIN expected e USING (id);
SELECT pg_temp.delta(:'c0', 'scope_builds') >= 1 AS scope_rebuilt;

-- 5. This transaction's own writes: seen at once, and no cache kept.
BEGIN;
SELECT consent.withdraw(1, 'mkt.email') AS withdrawn;
SELECT consent.has(1::bigint, 'mkt.email') AS has_1_after_own_withdrawal,
	   count(*) FILTER (WHERE consent.has(s.id, 'mkt.email') IS DISTINCT FROM e.allowed) AS mismatches
  FROM subjects s JOIN expected e USING (id);
ROLLBACK;
SELECT consent.has(1::bigint, 'mkt.email') AS has_1_after_rollback;

-- 6. Text subjects that are not integers: a hash map, which also holds
-- the bigint subjects loaded before the first text one.
INSERT INTO consent.records (subject, purpose_id, status, method)
SELECT 'user-' || g, (SELECT id FROM consent.purposes WHERE key = 'mkt.email'), 'granted', 'test'
  FROM generate_series(1, 500) g WHERE g % 2 = 0;
SELECT pg_temp.counters() AS c0 \gset
SELECT count(*) FILTER (WHERE consent.has('user-' || g, 'mkt.email')) AS allowed,
	   count(*) FILTER (WHERE consent.has('user-' || g, 'mkt.email') <> (g % 2 = 0)) AS mismatches
  FROM generate_series(1, 500) g;
SELECT count(*) FILTER (WHERE consent.has(s.id, 'mkt.email') IS DISTINCT FROM e.allowed) AS mismatches
  FROM subjects s JOIN expected e USING (id);
SELECT pg_temp.delta(:'c0', 'map_builds') = 1 AS one_map,
	   pg_temp.delta(:'c0', 'dense_map_builds') = 0 AS not_dense,
	   pg_temp.delta(:'c0', 'probes') = 0 AS no_probes;
DELETE FROM consent.records WHERE subject LIKE 'user-%';

-- 6b. bigint subjects too far apart for one byte per id: a hash map.  The
-- parent's record is stored before the child's here (the reverse of the
-- data above), and the nearer record still decides.
INSERT INTO consent.records (subject, purpose_id, status, method)
SELECT (g * 1000000000000)::text, (SELECT id FROM consent.purposes WHERE key = 'mkt'), 'denied', 'test'
  FROM generate_series(1, 400) g;
INSERT INTO consent.records (subject, purpose_id, status, method)
SELECT (g * 1000000000000)::text, (SELECT id FROM consent.purposes WHERE key = 'mkt.email'), 'granted', 'test'
  FROM generate_series(1, 400) g WHERE g % 4 = 0;
SELECT pg_temp.counters() AS c0 \gset
SELECT count(*) FILTER (WHERE consent.has(g * 1000000000000, 'mkt.email')) AS allowed,
	   count(*) FILTER (WHERE consent.has(g * 1000000000000, 'mkt.email') <> (g % 4 = 0)) AS mismatches
  FROM generate_series(1, 400) g;
SELECT count(*) FILTER (WHERE consent.has(s.id, 'mkt.email') IS DISTINCT FROM e.allowed) AS mismatches
  FROM subjects s JOIN expected e USING (id);
SELECT pg_temp.delta(:'c0', 'map_builds') = 1 AS one_map,
	   pg_temp.delta(:'c0', 'dense_map_builds') = 0 AS not_dense;
DELETE FROM consent.records WHERE length(subject) > 12;

-- 6c. Parent stored first, ids close together: a dense map, and the nearer
-- record decides there too.
INSERT INTO consent.records (subject, purpose_id, status, method)
SELECT (5000 + g)::text, (SELECT id FROM consent.purposes WHERE key = 'mkt'), 'granted', 'test'
  FROM generate_series(1, 400) g;
INSERT INTO consent.records (subject, purpose_id, status, expires_at, method)
SELECT (5000 + g)::text, (SELECT id FROM consent.purposes WHERE key = 'mkt.email'),
	   CASE WHEN g % 3 = 0 THEN 'withdrawn' ELSE 'granted' END::consent.status,
	   CASE WHEN g % 3 = 1 THEN now() + interval '1 day' END, 'test'
  FROM generate_series(1, 400) g WHERE g % 2 = 0;
SELECT pg_temp.counters() AS c0 \gset
SELECT count(*) FILTER (WHERE consent.has(5000 + g, 'mkt.email')) AS allowed,
	   count(*) FILTER (WHERE consent.has(5000 + g, 'mkt.email') <> (g % 2 = 1 OR g % 3 <> 0)) AS mismatches
  FROM generate_series(1, 400) g;
SELECT pg_temp.delta(:'c0', 'map_builds') = 1 AS one_map,
	   pg_temp.delta(:'c0', 'dense_map_builds') = 1 AS dense;
DELETE FROM consent.records WHERE subject::bigint > 5000;

-- 7. The memory bound: a map that does not fit is given up, and the
-- answers come from probes, still right.
SET consent.cache_memory = '64kB';
SET consent.cross_statement_cache = off;
INSERT INTO consent.records (subject, purpose_id, status, method)
SELECT 'big-' || g, (SELECT id FROM consent.purposes WHERE key = 'mkt.email'), 'granted', 'test'
  FROM generate_series(1, 20000) g;
SELECT pg_temp.counters() AS c0 \gset
SELECT count(*) FILTER (WHERE consent.has('big-' || g, 'mkt.email')) AS allowed
  FROM generate_series(1, 20000) g;
SELECT pg_temp.delta(:'c0', 'map_builds') = 0 AS no_map_fits,
	   pg_temp.delta(:'c0', 'probes') = 20000 AS fell_back_to_probes;
RESET consent.cache_memory;
RESET consent.cross_statement_cache;
RESET consent.bulk_threshold;

-- 7b. Subjects at both ends of bigint: too far apart for a dense map (the
-- span must not wrap around), and both still found.
DELETE FROM consent.records WHERE subject LIKE 'big-%';
INSERT INTO consent.records (subject, purpose_id, status, method)
SELECT v, (SELECT id FROM consent.purposes WHERE key = 'mkt.email'), 'granted', 'test'
  FROM unnest(ARRAY['-9223372036854775808', '9223372036854775807']) v;
SET consent.bulk_threshold = 0;
SELECT pg_temp.counters() AS c0 \gset
SELECT consent.has((-9223372036854775807 - 1)::bigint, 'mkt.email') AS has_min,
	   consent.has(9223372036854775807::bigint, 'mkt.email') AS has_max,
	   consent.has('9223372036854775807', 'mkt.email') AS has_max_text;
SELECT pg_temp.delta(:'c0', 'map_builds') = 1 AS one_map,
	   pg_temp.delta(:'c0', 'dense_map_builds') = 0 AS not_dense;
DELETE FROM consent.records WHERE length(subject) > 12;

-- 7c. A map load canceled part-way (statement_timeout fires inside the
-- load of 400,000 records) leaves nothing half-built: the next statement
-- answers right.
SET session_replication_role = replica;
INSERT INTO consent.records (subject, purpose_id, status, method)
SELECT (100000 + g)::text, (SELECT id FROM consent.purposes WHERE key = 'mkt.email'),
	   CASE WHEN g % 2 = 0 THEN 'granted' ELSE 'denied' END::consent.status, 'test'
  FROM generate_series(1, 400000) g;
RESET session_replication_role;
SET consent.bulk_threshold = 0;
SET statement_timeout = '1ms';
SELECT consent.has(100002::bigint, 'mkt.email');
RESET statement_timeout;
SELECT consent.has(100002::bigint, 'mkt.email') AS has_even,
	   consent.has(100003::bigint, 'mkt.email') AS has_odd,
	   count(*) FILTER (WHERE consent.has(100000 + g, 'mkt.email') <> (g % 2 = 0)) AS mismatches
  FROM generate_series(1, 400000, 997) g;
DELETE FROM consent.records WHERE length(subject) = 6 AND subject BETWEEN '100001' AND '500000';

-- 7d. A parallel worker reads its leader's uncommitted writes as its own:
-- no map it builds is kept, or shared with other backends.
SELECT consent.has(300::bigint, 'mkt.email') AS has_300_before;
BEGIN;
UPDATE consent.records SET status = 'withdrawn'
 WHERE subject = '300' AND purpose_id = (SELECT id FROM consent.purposes WHERE key = 'mkt.email');
SET LOCAL force_parallel_mode = on;
SET LOCAL max_parallel_workers_per_gather = 2;
SET LOCAL consent.bulk_threshold = 0;
EXPLAIN (COSTS OFF) SELECT consent.has(300::bigint, 'mkt.email');
SELECT consent.has(300::bigint, 'mkt.email') AS has_300_in_transaction;
ROLLBACK;
\c -
SET consent.bulk_threshold = 0;
SELECT consent.has(300::bigint, 'mkt.email') AS has_300_after_rollback;
RESET consent.bulk_threshold;

-- 8. The settings and their bounds.
SHOW consent.bulk_threshold;
SHOW consent.cache_memory;
SHOW consent.cross_statement_cache;
SET consent.bulk_threshold = -2;
SET consent.cache_memory = -1;

DROP EXTENSION consent CASCADE;
CREATE EXTENSION consent;
