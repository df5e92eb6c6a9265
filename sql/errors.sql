--
-- Bad input fails with a documented SQLSTATE and changes nothing.
--
-- Each case runs through pg_temp.try(), which executes one statement,
-- catches its error, and reports the SQLSTATE, message, detail and hint,
-- plus whether a fingerprint of every row of consent.records,
-- consent.purposes and consent.notices is the same after the statement as
-- before it ("unchanged").  A case that unexpectedly succeeded would show
-- SQLSTATE 00000 and, if it wrote anything, unchanged = f.
--
-- Runs in a database of its own (see registry.sql).
--
\set origdb :DBNAME
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_consent_errors WITH (FORCE);
RESET client_min_messages;
CREATE DATABASE regress_consent_errors
	TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';
-- The settings pg_regress gives its own database, for stable output.
ALTER DATABASE regress_consent_errors SET lc_messages TO 'C';
ALTER DATABASE regress_consent_errors SET lc_monetary TO 'C';
ALTER DATABASE regress_consent_errors SET lc_numeric TO 'C';
ALTER DATABASE regress_consent_errors SET lc_time TO 'C';
ALTER DATABASE regress_consent_errors SET bytea_output TO 'hex';
ALTER DATABASE regress_consent_errors SET timezone_abbreviations TO 'Default';
\c regress_consent_errors
CREATE EXTENSION consent;
SET search_path = public, consent;
\set VERBOSITY terse

\i sql/include/try.sql

-- The cases of one area, numbered, each with the statement it ran.
CREATE FUNCTION pg_temp.cases(VARIADIC stmts text[])
RETURNS TABLE (n integer, stmt text, sqlstate text, message text, detail text,
			   hint text, unchanged boolean)
LANGUAGE plpgsql AS $$
DECLARE
	i integer;
BEGIN
	FOR i IN 1 .. cardinality(stmts) LOOP
		n := i;
		stmt := stmts[i];
		SELECT t.state, t.message, t.detail, t.hint, t.unchanged
		  INTO sqlstate, message, detail, hint, unchanged
		  FROM pg_temp.try(stmt) t;
		RETURN NEXT;
	END LOOP;
END
$$;

-- The state the cases run against.
SELECT consent.define_purpose('newsletter', 'Newsletter');
SELECT consent.define_purpose('newsletter.weekly', 'Weekly newsletter');
SELECT consent.define_purpose('news_digest', 'News digest');
SELECT consent.define_purpose('profiling', 'Profiling', requires_confirmation => true);
SELECT consent.define_purpose('analytics', 'Analytics', 'legitimate_interests');
SELECT consent.define_purpose('billing', 'Billing', 'contract');
SELECT consent.define_purpose('legacy', 'Legacy programme');
SELECT consent.retire_purpose('legacy');
SELECT consent.publish_notice('privacy', 1, 'Privacy, version 1.', '{newsletter}');
SELECT consent.publish_notice('privacy', 2, 'Privacy, version 2.', '{newsletter,profiling}');
SELECT consent.grant('s1', 'newsletter', 'privacy');
SELECT consent.grant('s1', 'newsletter.weekly');
SELECT consent.grant('s1', 'profiling');
SELECT consent.grant('s1', 'billing');
SELECT count(*) AS records FROM consent.records;

-- The fingerprint sees a change: a successful statement flips it.
SELECT state AS sqlstate, unchanged FROM pg_temp.try($$SELECT consent.grant('s0', 'newsletter')$$);
SELECT state AS sqlstate, unchanged FROM pg_temp.try($$SELECT consent.has('s0', 'newsletter')$$);

\x on

--
-- Purposes: define_purpose and retire_purpose.
--
SELECT * FROM pg_temp.cases(
	-- the parent must exist first (foreign_key_violation)
	$$SELECT consent.define_purpose('reports.monthly', 'Monthly reports')$$,
	-- a key is defined once, even when retired (duplicate_object)
	$$SELECT consent.define_purpose('newsletter', 'Newsletter again')$$,
	$$SELECT consent.define_purpose('legacy', 'Legacy again')$$,
	-- invalid keys (invalid_text_representation, from the type)
	$$SELECT consent.define_purpose('News', 'News')$$,
	$$SELECT consent.define_purpose('newsletter..daily', 'Daily')$$,
	$$SELECT consent.define_purpose('a.b.c.d.e.f.g.h.i', 'Too deep')$$,
	$$SELECT consent.define_purpose(repeat('x', 64)::consent.purpose_key, 'Too long')$$,
	-- empty title (invalid_parameter_value)
	$$SELECT consent.define_purpose('surveys', '')$$,
	$$SELECT consent.define_purpose('surveys', '   ')$$,
	-- non-positive validity (invalid_parameter_value)
	$$SELECT consent.define_purpose('surveys', 'Surveys', valid_for => '0')$$,
	$$SELECT consent.define_purpose('surveys', 'Surveys', valid_for => '-1 day')$$,
	-- double opt-in needs a consent basis (invalid_parameter_value)
	$$SELECT consent.define_purpose('surveys', 'Surveys', 'contract', requires_confirmation => true)$$,
	$$SELECT consent.define_purpose('surveys', 'Surveys', 'legitimate_interests', requires_confirmation => true)$$,
	-- NULL where a value is required (null_value_not_allowed)
	$$SELECT consent.define_purpose(NULL, 'Surveys')$$,
	$$SELECT consent.define_purpose('surveys', 'Surveys', NULL)$$,
	$$SELECT consent.define_purpose('surveys', 'Surveys', requires_confirmation => NULL)$$,
	-- no child under a retired parent (object_not_in_prerequisite_state)
	$$SELECT consent.define_purpose('legacy.rewards', 'Rewards')$$,
	-- retire: unknown (undefined_object), already retired
	-- (object_not_in_prerequisite_state), NULL (null_value_not_allowed)
	$$SELECT consent.retire_purpose('newsleter')$$,
	$$SELECT consent.retire_purpose('legacy')$$,
	$$SELECT consent.retire_purpose(NULL)$$);

--
-- Recording: the purpose.
--
SELECT * FROM pg_temp.cases(
	-- unknown purpose, with the closest keys as a hint (undefined_object)
	$$SELECT consent.grant('s2', 'newsleter')$$,
	$$SELECT consent.deny('s2', 'newsletter.weekli')$$,
	$$SELECT consent.withdraw('s2', 'profile')$$,
	$$SELECT consent.confirm('s2', 'analytic')$$,
	-- a retired purpose cannot be granted or confirmed; the hint names
	-- active keys only (object_not_in_prerequisite_state)
	$$SELECT consent.grant('s2', 'legacy')$$,
	$$SELECT consent.confirm('s2', 'legacy')$$,
	-- a purpose that does not rest on consent cannot be withdrawn or
	-- denied (object_not_in_prerequisite_state)
	$$SELECT consent.withdraw('s1', 'billing')$$,
	$$SELECT consent.deny('s1', 'billing')$$,
	-- nothing pending to confirm (object_not_in_prerequisite_state)
	$$SELECT consent.confirm('s1', 'newsletter')$$,
	$$SELECT consent.confirm('s2', 'profiling')$$,
	-- invalid key (invalid_text_representation, from the type)
	$$SELECT consent.grant('s2', 'Newsletter')$$,
	$$SELECT consent.grant('s2', 'news letter')$$);

--
-- Recording: notices.
--
SELECT * FROM pg_temp.cases(
	-- unknown notice, unknown version (undefined_object)
	$$SELECT consent.grant('s2', 'newsletter', 'cookies')$$,
	$$SELECT consent.grant('s2', 'newsletter', 'cookies@1')$$,
	$$SELECT consent.grant('s2', 'newsletter', 'privacy@3')$$,
	$$SELECT consent.deny('s2', 'newsletter', 'privacy@999999999')$$,
	-- the notice does not cover the purpose (invalid_parameter_value)
	$$SELECT consent.grant('s2', 'analytics', 'privacy')$$,
	$$SELECT consent.grant('s2', 'profiling', 'privacy@1')$$,
	-- malformed references (invalid_text_representation)
	$$SELECT consent.grant('s2', 'newsletter', 'privacy@')$$,
	$$SELECT consent.grant('s2', 'newsletter', '@1')$$,
	$$SELECT consent.grant('s2', 'newsletter', 'privacy@0')$$,
	$$SELECT consent.grant('s2', 'newsletter', 'privacy@01')$$,
	$$SELECT consent.grant('s2', 'newsletter', 'privacy@-1')$$,
	$$SELECT consent.grant('s2', 'newsletter', 'privacy@x')$$,
	$$SELECT consent.grant('s2', 'newsletter', 'privacy@1@2')$$,
	$$SELECT consent.grant('s2', 'newsletter', 'privacy@1234567890')$$,
	$$SELECT consent.grant('s2', 'newsletter', 'privacy policy')$$,
	$$SELECT consent.grant('s2', 'newsletter', ' privacy')$$,
	$$SELECT consent.grant('s2', 'newsletter', '')$$,
	$$SELECT consent.deny('s2', 'newsletter', 'a@')$$);

--
-- Recording: subject, expiry, method, evidence.
--
SELECT * FROM pg_temp.cases(
	-- expiry in the past, or exactly now (invalid_parameter_value)
	$$SELECT consent.grant('s2', 'newsletter', expires_at => now() - interval '1 second')$$,
	$$SELECT consent.grant('s2', 'newsletter', expires_at => now())$$,
	$$SELECT consent.grant('s2', 'newsletter', expires_at => '-infinity')$$,
	-- empty subject (invalid_parameter_value)
	$$SELECT consent.grant('', 'newsletter')$$,
	$$SELECT consent.withdraw('', 'newsletter')$$,
	-- oversize subject: 257 bytes, in ASCII or in two-byte characters
	-- (string_data_right_truncation)
	$$SELECT consent.grant(repeat('x', 257), 'newsletter')$$,
	$$SELECT consent.deny(repeat(U&'\00E9', 128) || 'x', 'newsletter')$$,
	-- NULL where a value is required (null_value_not_allowed)
	$$SELECT consent.grant(NULL::text, 'newsletter')$$,
	$$SELECT consent.grant(NULL::bigint, 'newsletter')$$,
	$$SELECT consent.deny(NULL::uuid, 'newsletter')$$,
	$$SELECT consent.grant('s2', NULL)$$,
	$$SELECT consent.withdraw('s2', NULL)$$,
	$$SELECT consent.grant('s2', 'newsletter', method => NULL)$$,
	$$SELECT consent.withdraw('s1', 'newsletter', method => NULL)$$,
	$$SELECT consent.withdraw_all(NULL::text)$$,
	-- empty or oversize method (invalid_parameter_value)
	$$SELECT consent.grant('s2', 'newsletter', method => ' ')$$,
	$$SELECT consent.grant('s2', 'newsletter', method => repeat('m', 65))$$,
	-- evidence must be a JSON object (invalid_parameter_value)
	$$SELECT consent.grant('s2', 'newsletter', evidence => '[1, 2]')$$,
	$$SELECT consent.deny('s2', 'newsletter', evidence => '"signed"')$$,
	$$SELECT consent.confirm('s1', 'profiling', evidence => 'null')$$);

\x off
-- The limits are 256 bytes for a subject and 64 for a method: these work
-- (and so change the state), in ASCII and in two-byte characters.
SELECT n, stmt, sqlstate, unchanged FROM pg_temp.cases(
	$$SELECT consent.grant(repeat('x', 256), 'newsletter')$$,
	$$SELECT consent.grant(repeat(U&'\00E9', 128), 'newsletter')$$,
	$$SELECT consent.grant('s2', 'newsletter', method => repeat('m', 64))$$);
SELECT length(subject) AS chars, octet_length(subject) AS bytes
  FROM consent.records WHERE octet_length(subject) = 256 ORDER BY 1;
\x on

--
-- Notices: publish_notice.
--
SELECT * FROM pg_temp.cases(
	-- versions only grow (invalid_parameter_value)
	$$SELECT consent.publish_notice('privacy', 1, 'Older.', '{newsletter}')$$,
	$$SELECT consent.publish_notice('privacy', 1, 'Older, in German.', '{newsletter}', 'de')$$,
	-- the same version and locale again (duplicate_object)
	$$SELECT consent.publish_notice('privacy', 2, 'Again.', '{newsletter}')$$,
	-- a translation keeps the material flag (invalid_parameter_value)
	$$SELECT consent.publish_notice('privacy', 2, 'Neu.', '{newsletter}', 'de', true)$$,
	-- a translation covers the same purposes (invalid_parameter_value)
	$$SELECT consent.publish_notice('privacy', 2, 'Neu.', '{profiling}', 'de')$$,
	-- covered purposes: unknown, with a hint (undefined_object); retired
	-- (object_not_in_prerequisite_state); none (invalid_parameter_value)
	$$SELECT consent.publish_notice('privacy', 3, 'New.', '{newsletter,profilling}')$$,
	$$SELECT consent.publish_notice('privacy', 3, 'New.', '{newsletter,legacy}')$$,
	$$SELECT consent.publish_notice('privacy', 3, 'New.', '{}')$$,
	-- bad locale (invalid_parameter_value)
	$$SELECT consent.publish_notice('privacy', 3, 'New.', '{newsletter}', 'EN')$$,
	$$SELECT consent.publish_notice('privacy', 3, 'New.', '{newsletter}', 'en_US')$$,
	$$SELECT consent.publish_notice('privacy', 3, 'New.', '{newsletter}', 'english')$$,
	$$SELECT consent.publish_notice('privacy', 3, 'New.', '{newsletter}', '')$$,
	-- bad notice key (invalid_parameter_value)
	$$SELECT consent.publish_notice('privacy@3', 3, 'New.', '{newsletter}')$$,
	$$SELECT consent.publish_notice('-privacy', 1, 'New.', '{newsletter}')$$,
	$$SELECT consent.publish_notice('', 1, 'New.', '{newsletter}')$$,
	$$SELECT consent.publish_notice(repeat('k', 129), 1, 'New.', '{newsletter}')$$,
	-- non-positive version, empty body (invalid_parameter_value)
	$$SELECT consent.publish_notice('cookies', 0, 'Cookies.', '{newsletter}')$$,
	$$SELECT consent.publish_notice('cookies', -1, 'Cookies.', '{newsletter}')$$,
	$$SELECT consent.publish_notice('cookies', 1, ' ', '{newsletter}')$$,
	-- NULL where a value is required (null_value_not_allowed)
	$$SELECT consent.publish_notice('cookies', 1, NULL, '{newsletter}')$$,
	$$SELECT consent.publish_notice('cookies', 1, 'Cookies.', NULL)$$,
	$$SELECT consent.publish_notice('cookies', 1, 'Cookies.', '{newsletter}', NULL)$$);

--
-- Enforcement functions: unknown purposes (undefined_object) and NULL
-- elements (null_value_not_allowed).
--
SELECT n, stmt, sqlstate, message, unchanged FROM pg_temp.cases(
	$$SELECT consent.has('s1', 'newsleter')$$,
	$$SELECT consent.has_all('s1', '{newsletter,newsleter}')$$,
	$$SELECT consent.has_any('s1', ARRAY['newsletter', NULL]::consent.purpose_key[])$$,
	$$SELECT consent.mask(1, 's1', 'newsleter')$$,
	$$SELECT consent.status('s1', 'newsleter')$$,
	$$SELECT * FROM consent.explain('s1', 'newsleter')$$);

--
-- The tables' own constraints hold even for a superuser writing directly
-- (check_violation, foreign_key_violation, unique_violation, ...).
-- Purpose 1 is newsletter.
--
-- The hierarchy check is a deferred constraint trigger (it runs at
-- commit, so that pg_restore may load a child before its parent); make it
-- immediate here so that each case fails on its own.
BEGIN;
SET CONSTRAINTS ALL IMMEDIATE;
SELECT * FROM pg_temp.cases(
	$$INSERT INTO consent.records (subject, purpose_id, status) VALUES ('', 1, 'granted')$$,
	$$INSERT INTO consent.records (subject, purpose_id, status) VALUES (repeat('x', 257), 1, 'granted')$$,
	$$INSERT INTO consent.records (subject, purpose_id, status, evidence) VALUES ('s9', 1, 'granted', '[]')$$,
	$$INSERT INTO consent.records (subject, purpose_id, status, notice_key) VALUES ('s9', 1, 'granted', 'privacy')$$,
	$$INSERT INTO consent.records (subject, purpose_id, status, method) VALUES ('s9', 1, 'granted', '')$$,
	$$INSERT INTO consent.records (subject, purpose_id, status) VALUES ('s9', 9999, 'granted')$$,
	$$INSERT INTO consent.records (subject, purpose_id, status) VALUES ('s1', 1, 'denied')$$,
	$$INSERT INTO consent.records (subject, purpose_id, status) VALUES ('s9', 1, 'maybe')$$,
	$$UPDATE consent.records SET subject = '' WHERE subject = 's1'$$,
	$$INSERT INTO consent.purposes (key, title) VALUES ('surveys', '')$$,
	$$INSERT INTO consent.purposes (key, title, valid_for) VALUES ('surveys', 'Surveys', '-1 day')$$,
	$$INSERT INTO consent.purposes (key, title) VALUES ('reports.monthly', 'Monthly')$$,
	$$INSERT INTO consent.notices (key, version, body, purposes) VALUES ('cookies', 0, 'Cookies.', '{newsletter}')$$,
	$$INSERT INTO consent.notices (key, version, locale, body, purposes) VALUES ('cookies', 1, 'EN', 'Cookies.', '{newsletter}')$$,
	$$INSERT INTO consent.notices (key, version, body, purposes) VALUES ('cookies', 1, 'Cookies.', '{}')$$,
	$$INSERT INTO consent.notices (key, version, body, purposes) VALUES ('privacy', 2, 'Again.', '{newsletter}')$$);
COMMIT;

\x off

--
-- A failing statement leaves nothing behind, even where it had written
-- rows before it failed.  withdraw() first records the withdrawal of the
-- purpose, then one for each descendant grant; a trigger (standing in for
-- anything that fails on the way) makes the descendant's write fail.
--
CREATE FUNCTION public.refuse_weekly() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NEW.purpose_id = (SELECT id FROM consent.purposes WHERE key::text = 'newsletter.weekly') THEN
		-- Show what the statement had already written when it failed.
		RAISE EXCEPTION 'refused by test trigger; newsletter is % at this point',
			(SELECT r.status FROM consent.records r JOIN consent.purposes p ON p.id = r.purpose_id
			  WHERE r.subject = NEW.subject AND p.key::text = 'newsletter')
			USING ERRCODE = 'triggered_action_exception';
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER refuse_weekly BEFORE UPDATE ON consent.records
	FOR EACH ROW EXECUTE FUNCTION public.refuse_weekly();

SELECT p.key, r.status FROM consent.records r JOIN consent.purposes p ON p.id = r.purpose_id
 WHERE r.subject = 's1' ORDER BY 1;
SELECT state AS sqlstate, message, unchanged
  FROM pg_temp.try($$SELECT consent.withdraw('s1', 'newsletter')$$);
-- The same at top level: the error, then the same rows as before.
SELECT pg_temp.fp() AS fp \gset
SELECT consent.withdraw('s1', 'newsletter');
SELECT pg_temp.fp() = :'fp' AS unchanged;
SELECT p.key, r.status FROM consent.records r JOIN consent.purposes p ON p.id = r.purpose_id
 WHERE r.subject = 's1' ORDER BY 1;

-- withdraw_all likewise: newsletter is withdrawn first, then
-- newsletter.weekly fails, and newsletter keeps its grant.
SELECT state AS sqlstate, message, unchanged FROM pg_temp.try($$SELECT consent.withdraw_all('s1')$$);

DROP TRIGGER refuse_weekly ON consent.records;
DROP FUNCTION public.refuse_weekly();
SELECT consent.withdraw('s1', 'newsletter');
SELECT p.key, r.status FROM consent.records r JOIN consent.purposes p ON p.id = r.purpose_id
 WHERE r.subject = 's1' ORDER BY 1;

-- Inside a transaction, an error discards the statements before it too.
SELECT pg_temp.fp() AS fp \gset
BEGIN;
SELECT consent.grant('s3', 'newsletter');
SELECT consent.grant('s3', 'newsleter');
COMMIT;
SELECT pg_temp.fp() = :'fp' AS unchanged,
	   (SELECT count(*) FROM consent.records WHERE subject = 's3') AS s3_records;

--
-- Rules added after review: each fails and changes nothing.
--
SELECT consent.publish_notice('terms', 1, 'Terms v1.', '{profiling}');
SELECT consent.grant('s4', 'profiling', 'terms');		-- pending, under terms@1
SELECT consent.publish_notice('terms', 2, 'Terms v2.', '{profiling}', material => true);
SELECT * FROM pg_temp.cases(
	-- a grant under a superseded notice version would never count (55000)
	$$SELECT consent.grant('s5', 'profiling', 'terms@1')$$,
	-- confirming a pending grant whose notice was superseded meanwhile (55000)
	$$SELECT consent.confirm('s4', 'profiling')$$,
	-- purposes that do not rest on consent cannot be granted either (55000)
	$$SELECT consent.grant('s4', 'billing')$$,
	-- nor sit under a purpose a person can refuse (22023)
	$$SELECT consent.define_purpose('newsletter.invoices', 'Invoices', 'contract')$$,
	-- NULL title (22004); NULL among a notice's purposes (22004)
	$$SELECT consent.define_purpose('reports', NULL)$$,
	$$SELECT consent.publish_notice('privacy', 9, 'x', ARRAY['newsletter', NULL]::consent.purpose_key[])$$,
	-- withdraw_all checks its subject like every other function (22023, 22001)
	$$SELECT consent.withdraw_all('')$$,
	$$SELECT consent.withdraw_all(repeat('x', 257))$$,
	-- unknown purposes in the check functions name the closest keys (42704)
	$$SELECT consent.has('s4', 'newsleter')$$,
	$$SELECT consent.has_all(4::bigint, '{profiling,profilin}')$$,
	-- only consent expires: no validity for other bases, no expiring grant
	-- for legitimate interests (22023)
	$$SELECT consent.define_purpose('security', 'Security', 'legitimate_interests', valid_for => '1 year')$$,
	$$SELECT consent.grant('s4', 'analytics', expires_at => now() + interval '1 day')$$);

\c :origdb
DROP DATABASE regress_consent_errors WITH (FORCE);
