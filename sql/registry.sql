--
-- The registry: consent.define_purpose, consent.retire_purpose,
-- consent.publish_notice, and what they store in consent.purposes and
-- consent.notices.
--
-- Every pg_regress file of this suite runs in a database of its own, so
-- that whole tables can be shown and no file depends on another's keys.
--
\set origdb :DBNAME
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_consent_registry WITH (FORCE);
RESET client_min_messages;
-- UTF8 and the C locale, whatever the cluster's defaults.
CREATE DATABASE regress_consent_registry
	TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';
-- The settings pg_regress gives its own database, for stable output.
ALTER DATABASE regress_consent_registry SET lc_messages TO 'C';
ALTER DATABASE regress_consent_registry SET lc_monetary TO 'C';
ALTER DATABASE regress_consent_registry SET lc_numeric TO 'C';
ALTER DATABASE regress_consent_registry SET lc_time TO 'C';
ALTER DATABASE regress_consent_registry SET bytea_output TO 'hex';
ALTER DATABASE regress_consent_registry SET timezone_abbreviations TO 'Default';
\c regress_consent_registry
CREATE EXTENSION consent;
SET search_path = public, consent;
-- Errors are shown with their message only: details carry timestamps.
\set VERBOSITY terse

--
-- define_purpose: the defaults are legal basis consent, no description,
-- no default validity, no double opt-in.  It returns the new id.
--
BEGIN;
SELECT consent.define_purpose('marketing', 'Marketing') AS id;
SELECT key, parent_key, title, description, legal_basis, valid_for,
	   requires_confirmation, retired_at IS NULL AS active,
	   created_at = now() AS created_now
  FROM consent.purposes;
COMMIT;

-- Every argument, by name.
SELECT consent.define_purpose(
	key => 'marketing.email',
	title => 'Marketing e-mail',
	legal_basis => 'consent',
	description => 'Newsletters and offers by e-mail',
	valid_for => interval '2 years',
	requires_confirmation => true) AS id;

-- A hierarchy: children name their parent in the key; the parent must exist
-- first (see errors.sql).  parent_key is generated from the key.
SELECT consent.define_purpose('marketing.email.weekly', 'Weekly digest');
SELECT consent.define_purpose('marketing.sms', 'Marketing SMS', valid_for => '6 months');
SELECT consent.define_purpose('analytics', 'Product analytics', 'legitimate_interests');
SELECT consent.define_purpose('analytics.crash_reports', 'Crash reports', 'legitimate_interests');
SELECT consent.define_purpose('health', 'Health data', 'explicit_consent', requires_confirmation => true);

-- One purpose for each of the other legal bases.
SELECT consent.define_purpose('billing', 'Billing', 'contract');
SELECT consent.define_purpose('tax_records', 'Tax records', 'legal_obligation');
SELECT consent.define_purpose('emergency', 'Emergency contact', 'vital_interests');
SELECT consent.define_purpose('census', 'Census', 'public_task');

SELECT id, key, parent_key, consent.depth(key) AS depth, title, legal_basis,
	   valid_for, requires_confirmation
  FROM consent.purposes
 ORDER BY key;

-- The legal bases, in declaration order.
SELECT unnest(enum_range(NULL::consent.legal_basis)) AS legal_basis;

-- The generated column cannot be written.
INSERT INTO consent.purposes (key, parent_key, title)
VALUES ('marketing.post', 'analytics', 'Post');

-- The hierarchy through the key operators.
SELECT key FROM consent.purposes WHERE key <@ 'marketing' ORDER BY key;
SELECT p.key, c.key AS child
  FROM consent.purposes p JOIN consent.purposes c ON c.parent_key = p.key
 ORDER BY 1, 2;

--
-- publish_notice: the digest is computed by the database from the body's
-- bytes, never supplied.
--
BEGIN;
SELECT consent.publish_notice('privacy', 1, 'We send you e-mail.', '{marketing.email}') AS id;
SELECT key, version, locale, body, purposes, material, published_at = now() AS published_now,
	   encode(body_sha256, 'hex') AS sha256
  FROM consent.notices;
COMMIT;
-- The same digest, computed independently (the literal is the output of
-- printf '%s' 'We send you e-mail.' | sha256sum).
SELECT body_sha256 = sha256(convert_to(body, 'UTF8')) AS matches_convert_to,
	   body_sha256 = sha256('We send you e-mail.'::bytea) AS matches_bytes,
	   encode(body_sha256, 'hex') = '658ede708839d48ae53871c6045795c5f8d52d907df4602987ca05858b1915af' AS matches_sha256sum
  FROM consent.notices WHERE key = 'privacy';

-- A body with non-ASCII characters: the digest is over its bytes.
SELECT consent.publish_notice('privacy', 1, U&'Wir senden Ihnen E-Mails. Gr\00FC\00DFe!', '{marketing.email}', 'de') AS id;
SELECT locale, octet_length(body) AS bytes, length(body) AS chars,
	   body_sha256 = sha256(convert_to(body, 'UTF8')) AS matches_convert_to,
	   encode(body_sha256, 'hex') AS sha256
  FROM consent.notices WHERE key = 'privacy' ORDER BY version, locale;

-- The digest follows the body: it cannot be supplied, and an UPDATE of the
-- body recomputes it.
INSERT INTO consent.notices (key, version, body, body_sha256, purposes)
VALUES ('privacy', 9, 'x', '\x00', '{marketing}');
BEGIN;
UPDATE consent.notices SET body = 'changed' WHERE key = 'privacy' AND locale = 'en';
SELECT body_sha256 = sha256('changed'::bytea) AS recomputed
  FROM consent.notices WHERE key = 'privacy' AND locale = 'en';
ROLLBACK;

-- Versions only grow, but need not be consecutive.
SELECT consent.publish_notice('privacy', 2, 'We send you e-mail and SMS.', '{marketing.email,marketing.sms}') AS id;
SELECT consent.publish_notice('privacy', 5, 'We send you e-mail, SMS and post.', '{marketing}', material => true) AS id;
-- An older version is refused, in any locale.
SELECT consent.publish_notice('privacy', 4, 'Too late.', '{marketing}', material => true);
SELECT consent.publish_notice('privacy', 2, 'Zu spaet.', '{marketing}', 'de');
-- The same version and locale again is refused.
SELECT consent.publish_notice('privacy', 5, 'Again.', '{marketing}', material => true);
-- A translation of the latest version is allowed, and keeps its material flag.
SELECT consent.publish_notice('privacy', 5, 'Wir senden Ihnen E-Mails, SMS und Post.', '{marketing}', 'de', true) AS id;
SELECT consent.publish_notice('privacy', 5, 'Nous vous envoyons des e-mails.', '{marketing}', 'fr', false);
SELECT consent.publish_notice('privacy', 5, 'Enviamos correo.', '{marketing}', 'pt-BR', true) AS id;

-- Notice keys are independent of each other.
SELECT consent.publish_notice('terms', 1, 'Terms of service.', '{billing,tax_records}') AS id;
SELECT consent.publish_notice('analytics-info:v', 3, 'We measure usage.', '{analytics}') AS id;

SELECT key, version, locale, purposes, material, octet_length(body) AS bytes,
	   body_sha256 = sha256(convert_to(body, 'UTF8')) AS sha256_ok
  FROM consent.notices
 ORDER BY key, version, locale;

--
-- retire_purpose: retires the purpose and its descendants at once; rows
-- stay, and records made before stay too.
--
SELECT consent.grant('alice', 'marketing.sms');
SELECT consent.grant('alice', 'marketing.email.weekly', 'privacy');
-- marketing.email requires confirmation: carol's grant is pending.
SELECT consent.grant('carol', 'marketing.email');
SELECT r.subject, p.key, r.status
  FROM consent.records r JOIN consent.purposes p ON p.id = r.purpose_id
 ORDER BY 1, 2;

BEGIN;
SELECT consent.retire_purpose('marketing.email');
SELECT key, retired_at IS NOT NULL AS retired, retired_at = now() AS retired_now
  FROM consent.purposes WHERE key <@ 'marketing' ORDER BY key;
COMMIT;

-- History stays: the records are untouched.
SELECT r.subject, p.key, r.status, r.notice_key, r.notice_version
  FROM consent.records r JOIN consent.purposes p ON p.id = r.purpose_id
 ORDER BY 1, 2;

-- A retired purpose cannot be granted again, nor confirmed, nor can a child
-- be defined under it, nor a notice cover it.
SELECT consent.grant('bob', 'marketing.email');
SELECT consent.grant('alice', 'marketing.email.weekly');
SELECT consent.confirm('carol', 'marketing.email');
SELECT consent.define_purpose('marketing.email.daily', 'Daily digest');
SELECT consent.publish_notice('privacy', 6, 'E-mail again.', '{marketing.email}');
-- ... and it cannot be retired twice.
SELECT consent.retire_purpose('marketing.email.weekly');

-- It can still be withdrawn (and denied): withdrawal stays possible.
SELECT consent.withdraw('alice', 'marketing.email.weekly', 'no longer wanted');
SELECT consent.deny('bob', 'marketing.email');
SELECT r.subject, p.key, r.status, r.reason
  FROM consent.records r JOIN consent.purposes p ON p.id = r.purpose_id
 ORDER BY 1, 2;

-- The parent and the siblings are not retired.
SELECT consent.grant('bob', 'marketing');
SELECT consent.grant('bob', 'marketing.sms');

-- Retiring a root takes the whole tree.
SELECT consent.retire_purpose('analytics');
SELECT key, retired_at IS NOT NULL AS retired
  FROM consent.purposes ORDER BY key;

-- Retired keys stay taken.
SELECT consent.define_purpose('analytics', 'Analytics again');

-- Leave the original database, and drop this one.
\c :origdb
DROP DATABASE regress_consent_registry WITH (FORCE);
