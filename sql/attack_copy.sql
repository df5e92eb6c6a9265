--
-- Attack: read gated rows with COPY table TO STDOUT and
-- COPY (query) TO STDOUT; COPY FROM is refused for gated roles.
--
\set VERBOSITY terse
DROP EXTENSION IF EXISTS consent CASCADE;
CREATE EXTENSION consent;
SET max_parallel_workers_per_gather = 0;

-- The table owner and the attacker: an ordinary role, no BYPASSRLS.
CREATE ROLE atk_owner;
CREATE ROLE atk_attacker;
GRANT consent_admin TO atk_owner;
SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'atk_attacker';

-- Customers 1-3 consent to marketing; 4 refused, 5 withdrew, 6 was
-- granted until yesterday, 7 consented under a notice since materially
-- changed, 8 has no record.  Every row the attacker must not see carries
-- the word SECRET.
SELECT consent.define_purpose('marketing', 'Marketing') > 0 AS defined;
SELECT consent.publish_notice('privacy', 1, 'Privacy notice v1', ARRAY['marketing']::consent.purpose_key[]) > 0 AS published;
CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, email text);
INSERT INTO customers
SELECT g, CASE WHEN g <= 3 THEN 'visible-' ELSE 'SECRET-' END || g,
	   CASE WHEN g <= 3 THEN 'visible' ELSE 'secret' END || g || '@example.org'
  FROM generate_series(1, 8) g;
ALTER TABLE customers OWNER TO atk_owner;
SELECT consent.grant(g, 'marketing') FROM generate_series(1, 3) g;
SELECT consent.deny(4::bigint, 'marketing'), consent.grant(5::bigint, 'marketing'),
	   consent.withdraw(5::bigint, 'marketing'), consent.grant(6::bigint, 'marketing'),
	   consent.grant(7::bigint, 'marketing', 'privacy');
UPDATE consent.records SET expires_at = now() - interval '1 day' WHERE subject = '6';
SELECT consent.publish_notice('privacy', 2, 'Privacy notice v2', ARRAY['marketing']::consent.purpose_key[],
							  material => true) > 0 AS published;
SELECT id, consent.has(id, 'marketing') AS consents FROM customers ORDER BY id;

SET ROLE atk_owner;
SELECT consent.protect('customers', 'id', 'marketing');
RESET ROLE;
GRANT SELECT ON customers TO atk_attacker;

SET ROLE atk_attacker;
-- COPY table TO STDOUT goes through row security like a SELECT
COPY customers TO STDOUT;
COPY customers (id, email) TO STDOUT WITH (FORMAT csv, HEADER);
COPY customers TO STDOUT WITH (FORMAT binary) \g /dev/null
-- COPY (query) TO STDOUT
COPY (SELECT * FROM customers) TO STDOUT;
COPY (SELECT * FROM customers WHERE id = 4) TO STDOUT;
COPY (SELECT * FROM customers WHERE name LIKE 'SECRET%') TO STDOUT;
COPY (SELECT count(*) FROM customers) TO STDOUT;
-- the same with the bulk map and with probes
SET consent.bulk_threshold = 0;
COPY customers (id) TO STDOUT;
SET consent.bulk_threshold = -1;
COPY customers (id) TO STDOUT;
RESET consent.bulk_threshold;
-- \copy (client side) is COPY TO STDOUT too
\copy customers (id, name) to stdout
RESET ROLE;

-- COPY FROM into a table whose row security applies to the caller is
-- refused outright, so it cannot be used to probe for gated rows either.
GRANT INSERT ON customers TO atk_attacker;
SET ROLE atk_attacker;
COPY customers FROM STDIN;
9	new	new@example.org
\.
RESET ROLE;

-- The owner (row security not forced) copies every row; a superuser too.
SET ROLE atk_owner;
COPY (SELECT count(*) FROM customers) TO STDOUT;
RESET ROLE;
COPY (SELECT count(*) FROM customers) TO STDOUT;

-- Clean up.
RESET ROLE;
DROP SCHEMA IF EXISTS atk CASCADE;
DROP TABLE customers CASCADE;
DROP EXTENSION consent CASCADE;
-- protect() granted USAGE on schema consent, which outlives the extension
DROP OWNED BY atk_owner, atk_attacker;
DROP ROLE atk_owner, atk_attacker;
CREATE EXTENSION consent;
