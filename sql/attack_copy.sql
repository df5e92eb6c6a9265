--
-- Attack: read gated rows with COPY table TO STDOUT and
-- COPY (query) TO STDOUT; COPY FROM is refused for gated roles.
--
\i sql/include/attack_setup.sql

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
