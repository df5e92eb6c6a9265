--
-- The effective rule, by example, through consent.has, has_all, has_any,
-- mask, status, decisions and explain:
--
--   - a retired purpose is never allowed;
--   - else the nearest record on the path from the purpose up to its root
--     decides: a grant counts while unexpired at the transaction's time and
--     while its notice has no newer material version; every other status
--     refuses;
--   - with no record on the path, the legal basis decides: consent and
--     explicit_consent refuse, every other basis allows.
--
-- Runs in a database of its own (see registry.sql).
--
\set origdb :DBNAME
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_consent_rule WITH (FORCE);
RESET client_min_messages;
CREATE DATABASE regress_consent_rule
	TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';
-- The settings pg_regress gives its own database, for stable output.
ALTER DATABASE regress_consent_rule SET lc_messages TO 'C';
ALTER DATABASE regress_consent_rule SET lc_monetary TO 'C';
ALTER DATABASE regress_consent_rule SET lc_numeric TO 'C';
ALTER DATABASE regress_consent_rule SET lc_time TO 'C';
ALTER DATABASE regress_consent_rule SET bytea_output TO 'hex';
ALTER DATABASE regress_consent_rule SET timezone_abbreviations TO 'Default';
\c regress_consent_rule
CREATE EXTENSION consent;
SET search_path = public, consent;
\set VERBOSITY terse

SELECT consent.define_purpose('marketing', 'Marketing');
SELECT consent.define_purpose('marketing.email', 'Marketing e-mail');
SELECT consent.define_purpose('marketing.email.weekly', 'Weekly digest');
SELECT consent.define_purpose('marketing.sms', 'Marketing SMS');
SELECT consent.define_purpose('health', 'Health data', 'explicit_consent');
SELECT consent.define_purpose('analytics', 'Analytics', 'legitimate_interests');
SELECT consent.define_purpose('analytics.ab_tests', 'A/B tests', 'legitimate_interests');
SELECT consent.define_purpose('billing', 'Billing', 'contract');
SELECT consent.define_purpose('tax', 'Tax records', 'legal_obligation');
SELECT consent.define_purpose('emergency', 'Emergency contact', 'vital_interests');
SELECT consent.define_purpose('census', 'Census', 'public_task');
SELECT consent.define_purpose('newsletter', 'Newsletter', requires_confirmation => true);

-- The decision for every purpose, from three angles that must agree:
-- has(), explain() and decisions().
CREATE FUNCTION pg_temp.show(subj text)
RETURNS TABLE (purpose consent.purpose_key, has boolean, status text,
			   decided_by text, reason text, agree boolean)
LANGUAGE sql AS $$
	SELECT d.purpose, consent.has(subj, d.purpose), e.status, e.decided_by, e.reason,
		   consent.has(subj, d.purpose) = e.allowed AND e.allowed = d.allowed
		   AND e.status IS NOT DISTINCT FROM consent.status(subj, d.purpose)::text
		   AND e.status IS NOT DISTINCT FROM d.status::text
		   AND e.reason = d.reason
	  FROM consent.decisions(subj) d
	 CROSS JOIN LATERAL consent.explain(subj, d.purpose) e
	 ORDER BY d.purpose
$$;

-- An error as a row: SQLSTATE, message and hint.
CREATE FUNCTION pg_temp.err(stmt text, OUT state text, OUT message text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	state := '00000';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
							hint = PG_EXCEPTION_HINT;
END
$$;

--
-- 1. With no record, the legal basis decides.
--
SELECT * FROM pg_temp.show('nobody');

--
-- 2. The nearest record on the path decides.
--
-- A child's denial beats the parent's grant, for the child and below it.
SELECT consent.grant('p1', 'marketing');
SELECT consent.deny('p1', 'marketing.email');
SELECT * FROM pg_temp.show('p1') WHERE purpose <@ 'marketing';
-- A child's grant beats the parent's denial.
SELECT consent.deny('p2', 'marketing');
SELECT consent.grant('p2', 'marketing.email.weekly');
SELECT * FROM pg_temp.show('p2') WHERE purpose <@ 'marketing';
-- Withdrawing the parent withdraws the child's grant too: nothing below
-- it is allowed any more.
SELECT consent.withdraw('p2', 'marketing');
SELECT * FROM pg_temp.show('p2') WHERE purpose <@ 'marketing';
-- A grant on the root covers every purpose below it that has no record
-- of its own.
SELECT consent.grant('p3', 'marketing');
SELECT * FROM pg_temp.show('p3') WHERE purpose <@ 'marketing';

--
-- 3. Legal bases.
--
-- consent and explicit_consent are opt-in: allowed once granted.
SELECT consent.grant('b1', 'health');
SELECT consent.has('b1', 'health') AS granted, consent.has('b2', 'health') AS no_record;
-- Legitimate interests: allowed until the person objects (denies or
-- withdraws), for the purpose and below it; a later grant allows again.
SELECT consent.deny('li1', 'analytics');
SELECT consent.withdraw('li2', 'analytics');
SELECT consent.withdraw('li3', 'analytics.ab_tests');
SELECT s AS subject, consent.has(s, 'analytics') AS analytics,
	   consent.has(s, 'analytics.ab_tests') AS ab_tests,
	   consent.status(s, 'analytics.ab_tests') AS ab_status
  FROM unnest('{li0,li1,li2,li3}'::text[]) s;
SELECT consent.grant('li1', 'analytics');
SELECT consent.has('li1', 'analytics') AS after_grant;
-- Other bases allow without a record, and a refusal cannot be recorded.
SELECT e.*
  FROM unnest(ARRAY[$$SELECT consent.withdraw('b3', 'billing')$$,
					$$SELECT consent.deny('b3', 'tax')$$,
					$$SELECT consent.withdraw('b3', 'emergency')$$,
					$$SELECT consent.deny('b3', 'census')$$]) AS s,
	   LATERAL pg_temp.err(s) e;
SELECT k AS purpose, consent.has('b3', k) AS has, consent.status('b3', k) AS status
  FROM unnest('{billing,tax,emergency,census}'::consent.purpose_key[]) k;
-- Nor can a grant: their answer never rests on a record.
SELECT e.* FROM pg_temp.err($$SELECT consent.grant('b4', 'billing')$$) e;
SELECT * FROM pg_temp.show('b4') WHERE purpose = 'billing';

--
-- 4. Pending (double opt-in) is not consent; confirmation makes it so.
--
SELECT consent.grant('c1', 'newsletter');
SELECT * FROM pg_temp.show('c1') WHERE purpose = 'newsletter';
SELECT consent.confirm('c1', 'newsletter');
SELECT * FROM pg_temp.show('c1') WHERE purpose = 'newsletter';

--
-- 5. Expiry, at the transaction's time (now()).
--
-- A grant that lapsed: simulated by moving its expiry into the past.
SELECT consent.grant('x1', 'marketing', expires_at => now() + interval '1 day');
SELECT consent.has('x1', 'marketing') AS before_lapse;
UPDATE consent.records SET expires_at = now() - interval '1 day'
 WHERE subject = 'x1';
-- The stored status is still granted; the decision says expired.
SELECT * FROM pg_temp.show('x1') WHERE purpose <@ 'marketing';
-- A record the sweeper marked expired refuses too.
SELECT consent.grant('x2', 'marketing');
UPDATE consent.records SET status = 'expired' WHERE subject = 'x2';
SELECT * FROM pg_temp.show('x2') WHERE purpose = 'marketing';
-- A fresh grant counts again.
SELECT consent.grant('x1', 'marketing');
SELECT consent.has('x1', 'marketing') AS regranted;
-- Time is the transaction's: a transaction that started before the
-- expiry still sees the grant after the wall clock has passed it; the
-- next transaction does not.
BEGIN;
SELECT consent.grant('x3', 'marketing', expires_at => clock_timestamp() + interval '200 ms');
SELECT pg_sleep(0.5);
SELECT clock_timestamp() > expires_at AS wall_clock_past_expiry,
	   now() < expires_at AS transaction_time_before_expiry
  FROM consent.records WHERE subject = 'x3';
SELECT consent.has('x3', 'marketing') AS in_same_transaction;
COMMIT;
SELECT consent.has('x3', 'marketing') AS in_next_transaction;
SELECT * FROM pg_temp.show('x3') WHERE purpose = 'marketing';

--
-- 6. Notices: a material version supersedes grants given under older
-- versions of that notice; a non-material one does not.
--
SELECT consent.publish_notice('pp', 1, 'Privacy, version 1.', '{marketing}');
SELECT consent.publish_notice('other', 1, 'Another notice.', '{marketing}');
SELECT consent.grant('m1', 'marketing.email', 'pp');
SELECT consent.grant('m2', 'marketing', 'pp@1');
SELECT consent.grant('m3', 'marketing');
SELECT consent.grant('m4', 'marketing', 'other');
CREATE TEMP VIEW notice_effect AS
SELECT s AS subject, consent.has(s, 'marketing.email') AS has,
	   (consent.explain(s, 'marketing.email')).reason AS reason,
	   consent.status(s, 'marketing.email') AS status
  FROM unnest('{m1,m2,m3,m4}'::text[]) s;
SELECT * FROM notice_effect;
-- Version 2 is not material: every grant still counts.
SELECT consent.publish_notice('pp', 2, 'Privacy, version 2 (typo fixed).', '{marketing}');
SELECT * FROM notice_effect;
-- Version 3 is material: grants under versions 1 and 2 stop counting; a
-- grant without a notice, or under another notice, is untouched.
SELECT consent.publish_notice('pp', 3, 'Privacy, version 3 (new partners).', '{marketing}',
							  material => true);
SELECT * FROM notice_effect;
SELECT * FROM pg_temp.show('m2') WHERE purpose <@ 'marketing';
-- A translation of version 3 changes nothing more.
SELECT consent.publish_notice('pp', 3, 'Datenschutz, Version 3.', '{marketing}', 'de', true);
SELECT * FROM notice_effect;
-- Consenting again under the new version counts again.
SELECT consent.grant('m1', 'marketing.email', 'pp');
SELECT consent.grant('m2', 'marketing', 'pp@3');
SELECT * FROM notice_effect;
-- A later non-material version keeps the version 3 grants.
SELECT consent.publish_notice('pp', 4, 'Privacy, version 4 (wording).', '{marketing}');
SELECT * FROM notice_effect;
-- A material change of another notice touches only its own grants.
SELECT consent.publish_notice('other', 2, 'Another notice, changed.', '{marketing}',
							  material => true);
SELECT * FROM notice_effect;

--
-- 7. A retired purpose is never allowed, whatever the record or basis.
--
SELECT consent.define_purpose('legacy', 'Legacy programme');
SELECT consent.define_purpose('legacy.rewards', 'Legacy rewards');
SELECT consent.define_purpose('old_contract', 'Old contract', 'contract');
SELECT consent.grant('r1', 'legacy');
SELECT consent.grant('r1', 'legacy.rewards');
SELECT consent.has('r1', 'legacy') AS legacy, consent.has('r1', 'legacy.rewards') AS rewards,
	   consent.has('r1', 'old_contract') AS old_contract;
SELECT consent.retire_purpose('legacy');
SELECT consent.retire_purpose('old_contract');
SELECT * FROM pg_temp.show('r1') WHERE purpose <@ 'legacy' OR purpose = 'old_contract';

--
-- 8. has_all and has_any.
--
SELECT consent.has_all('p1', '{marketing,marketing.sms}') AS all_granted,
	   consent.has_all('p1', '{marketing,marketing.email}') AS all_one_denied,
	   consent.has_any('p1', '{marketing.email,marketing.sms}') AS any_one_granted,
	   consent.has_any('p1', '{marketing.email,health}') AS any_none_granted,
	   consent.has_all('p1', '{marketing,marketing,marketing.sms}') AS all_repeated;
-- Empty arrays: all of nothing is true, any of nothing is false.
SELECT consent.has_all('p1', '{}') AS all_empty, consent.has_any('p1', '{}') AS any_empty,
	   consent.has_all('nobody', '{}') AS all_empty_nobody;
-- A NULL array or subject gives NULL (the functions are strict) ...
SELECT consent.has_all('p1', NULL) IS NULL AS null_array,
	   consent.has_any(NULL::text, '{marketing}') IS NULL AS null_subject,
	   consent.has(NULL::text, 'marketing') IS NULL AS has_null_subject;
-- ... but a NULL element is an error (22004).
SELECT state, message FROM pg_temp.err($$SELECT consent.has_all('p1', ARRAY['marketing', NULL]::consent.purpose_key[])$$);
SELECT state, message FROM pg_temp.err($$SELECT consent.has_any('p1', ARRAY[NULL]::consent.purpose_key[])$$);
-- An unknown purpose is an error (42704), not a silent false: also where
-- the answer would be known without it.
SELECT state, message FROM pg_temp.err($$SELECT consent.has('p1', 'marketing.fax')$$);
SELECT state, message FROM pg_temp.err($$SELECT consent.has_any('p1', '{marketing,marketing.fax}')$$);
SELECT state, message FROM pg_temp.err($$SELECT consent.has_all('p1', '{health,marketing.fax}')$$);
SELECT state, message FROM pg_temp.err($$SELECT consent.status('p1', 'marketing.fax')$$);
SELECT state, message FROM pg_temp.err($$SELECT * FROM consent.explain('p1', 'marketing.fax')$$);
SELECT state, message FROM pg_temp.err($$SELECT * FROM consent.decisions('p1') WHERE NOT consent.has('p1', 'marketing.fax')$$);
-- The bigint and uuid overloads.
SELECT consent.grant(1001::bigint, 'marketing.email');
SELECT consent.grant('6ba7b810-9dad-11d1-80b4-00c04fd430c8'::uuid, 'marketing.sms');
SELECT consent.has(1001::bigint, 'marketing.email') AS has_bigint,
	   consent.has_all(1001::bigint, '{marketing.email,marketing.email.weekly}') AS has_all_bigint,
	   consent.has_any(1001::bigint, '{marketing.sms}') AS has_any_bigint,
	   consent.has('6BA7B810-9DAD-11D1-80B4-00C04FD430C8'::uuid, 'marketing.sms') AS has_uuid,
	   consent.has_all('6ba7b810-9dad-11d1-80b4-00c04fd430c8'::uuid, '{}') AS has_all_uuid,
	   consent.has_any('6ba7b810-9dad-11d1-80b4-00c04fd430c8'::uuid, '{marketing,marketing.sms}') AS has_any_uuid;

--
-- 9. mask: the value when the subject consents, else NULL, for any type.
--
CREATE TEMP TABLE customers (id bigint, email text, visits integer, prefs jsonb, born date);
INSERT INTO customers VALUES
	(1001, 'ann@example.com', 12, '{"lang": "en"}', '1990-05-01'),
	(1002, 'ben@example.com', 3, '{"lang": "de"}', '1985-11-23'),
	(1003, NULL, 7, NULL, NULL);
SELECT consent.grant(1003::bigint, 'marketing');
SELECT id,
	   consent.mask(email, id, 'marketing.email') AS email,
	   consent.mask(visits, id, 'marketing.email') AS visits,
	   consent.mask(prefs, id, 'marketing.email') AS prefs,
	   to_char(consent.mask(born, id::text, 'marketing.email'), 'YYYY-MM-DD') AS born,
	   consent.mask(visits, id, 'billing') AS visits_billing
  FROM customers ORDER BY id;
SELECT consent.mask('secret'::text, 'p3', 'marketing.sms') AS granted,
	   consent.mask('secret'::text, 'p1', 'marketing.email') AS denied,
	   consent.mask(42, 'nobody', 'marketing') AS opt_in,
	   consent.mask(42, 'nobody', 'analytics') AS legitimate_interests,
	   consent.mask('{"a": 1}'::jsonb, '6ba7b810-9dad-11d1-80b4-00c04fd430c8'::uuid, 'marketing.sms') AS uuid_subject;
SELECT pg_typeof(consent.mask(42, 'nobody', 'analytics')) AS integer_type,
	   pg_typeof(consent.mask('{}'::jsonb, 'nobody', 'analytics')) AS jsonb_type;
SELECT state, message FROM pg_temp.err($$SELECT consent.mask(42, 'nobody', 'marketing.fax')$$);

\c :origdb
DROP DATABASE regress_consent_rule WITH (FORCE);
