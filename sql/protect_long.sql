--
-- consent.protect() with purpose keys whose policy name would pass
-- PostgreSQL's 63-byte limit on names: the name is shortened with a hash,
-- so that two long keys sharing a prefix get distinct policies.
--
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS consent CASCADE;
CREATE EXTENSION consent;
RESET client_min_messages;

-- two 63-byte keys that differ only at the end
SELECT consent.define_purpose('abbbbbbb', 'Root') IS NOT NULL AS root,
	   consent.define_purpose('abbbbbbb.x', 'X') IS NOT NULL AS x,
	   consent.define_purpose(('a' || repeat('b', 7) || '.x.' || repeat('c', 51) || '1')::consent.purpose_key, 'Long 1') IS NOT NULL AS long1,
	   consent.define_purpose(('a' || repeat('b', 7) || '.x.' || repeat('c', 51) || '2')::consent.purpose_key, 'Long 2') IS NOT NULL AS long2;
SELECT octet_length(key::text) AS bytes, octet_length(consent.policy_name(key)) AS policy_name_bytes
  FROM consent.purposes ORDER BY key;

CREATE TABLE longp (id bigint PRIMARY KEY);
INSERT INTO longp SELECT generate_series(1, 4);
SELECT consent.grant(1, ('a' || repeat('b', 7) || '.x.' || repeat('c', 51) || '1')::consent.purpose_key),
	   consent.grant(1, ('a' || repeat('b', 7) || '.x.' || repeat('c', 51) || '2')::consent.purpose_key),
	   consent.grant(2, ('a' || repeat('b', 7) || '.x.' || repeat('c', 51) || '1')::consent.purpose_key);
CREATE ROLE longp_reader;
GRANT SELECT ON longp TO longp_reader;
SELECT consent.protect('longp', 'id', ('a' || repeat('b', 7) || '.x.' || repeat('c', 51) || '1')::consent.purpose_key, '{longp_reader}');
SELECT consent.protect('longp', 'id', ('a' || repeat('b', 7) || '.x.' || repeat('c', 51) || '2')::consent.purpose_key, '{longp_reader}');
SELECT count(*) AS protections, bool_and(policy_present) AS policies_present,
	   count(DISTINCT consent.policy_name(purpose::consent.purpose_key)) AS distinct_policy_names
  FROM consent.protected_tables WHERE table_name = 'longp';
SET ROLE longp_reader;
SELECT id FROM longp ORDER BY id;		-- only 1 consents to both
RESET ROLE;
SELECT consent.unprotect('longp', ('a' || repeat('b', 7) || '.x.' || repeat('c', 51) || '1')::consent.purpose_key);
SET ROLE longp_reader;
SELECT id FROM longp ORDER BY id;		-- 1 consents to the remaining one
RESET ROLE;
SELECT consent.unprotect('longp', ('a' || repeat('b', 7) || '.x.' || repeat('c', 51) || '2')::consent.purpose_key);
SELECT count(*) AS policies_left FROM pg_policy WHERE polrelid = 'longp'::regclass;
SET ROLE longp_reader;
SELECT count(*) AS visible_again FROM longp;
RESET ROLE;

DROP TABLE longp;
DROP OWNED BY longp_reader;
DROP ROLE longp_reader;
