-- Shared set-up of sql/attack_*.sql (one file per attack): the extension,
-- an owner and an attacker role, a customers table whose rows 4-8 must stay
-- hidden, and the consent state behind that.  Included with \i from the tree root (where pg_regress runs).

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
