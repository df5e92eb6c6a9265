-- The five-minute tour of consent (run by `make demo`).
\set ON_ERROR_STOP on
\pset footer off
\echo '1. Install the extension: it lives in schema consent.'
CREATE EXTENSION consent;

\echo '2. Register purposes: dotted keys form a hierarchy, each with a legal basis.'
SELECT consent.define_purpose('marketing', 'Marketing');
SELECT consent.define_purpose('marketing.email', 'Marketing e-mails', valid_for => '1 year');
SELECT consent.define_purpose('marketing.sms', 'Marketing text messages');
SELECT consent.define_purpose('newsletter', 'Newsletter', requires_confirmation => true);
SELECT consent.define_purpose('fraud', 'Fraud prevention', 'legitimate_interests');
SELECT key, legal_basis, valid_for, requires_confirmation FROM consent.purposes ORDER BY key;

\echo '3. Publish the notice people see; the database hashes its text.'
SELECT consent.publish_notice('privacy', 1, 'We send offers by e-mail and SMS if you agree.', '{marketing}');
SELECT key, version, encode(body_sha256, 'hex') AS sha256 FROM consent.notices;

\echo '4. Record choices, with proof: notice, method, collection point, evidence.'
SELECT consent.grant(1, 'marketing.email', notice => 'privacy', method => 'web_form',
					 source => 'signup', evidence => '{"ip": "192.0.2.10"}');
SELECT consent.grant(2, 'marketing', notice => 'privacy@1', method => 'web_form');
SELECT consent.deny(3, 'marketing.email', notice => 'privacy');
SELECT consent.grant(4, 'newsletter');			-- pending: double opt-in
SELECT consent.confirm(4, 'newsletter');
SELECT consent.deny(5, 'fraud');				-- an objection to legitimate interests
SELECT * FROM consent.decisions(2) WHERE purpose::text LIKE 'marketing%';

\echo '5. Enforce it: a customers table whose rows need consent to marketing.email.'
CREATE TABLE customers (id bigint PRIMARY KEY, name text, email text);
INSERT INTO customers VALUES
	(1, 'Ada', 'ada@example.com'), (2, 'Brian', 'brian@example.com'),
	(3, 'Chen', 'chen@example.com'), (4, 'Dana', 'dana@example.com');
CREATE ROLE mailer NOLOGIN;
GRANT SELECT ON customers TO mailer;
SELECT consent.protect('customers', 'id', 'marketing.email', roles => '{mailer}');
SELECT * FROM consent.protected_tables;

\echo 'The mailer role sees only the people who consent (1 granted; 2 via the parent purpose):'
SET ROLE mailer;
SELECT id, name, email FROM customers ORDER BY id;
RESET ROLE;

\echo '6. Withdrawal is as easy as consent, and takes effect at once.'
SELECT consent.withdraw(2, 'marketing', reason => 'too many e-mails');
SET ROLE mailer;
SELECT id, name, email FROM customers ORDER BY id;
RESET ROLE;

\echo '7. A material change of the notice: earlier grants under it stop counting.'
SELECT consent.publish_notice('privacy', 2, 'We now also share your e-mail with partners.', '{marketing}', material => true);
SET ROLE mailer;
SELECT count(*) AS visible_after_material_change FROM customers;
RESET ROLE;
SELECT purpose, allowed, status, reason FROM consent.decisions(1) WHERE purpose::text = 'marketing.email';

\echo '8. Prove it: every change is an audit event on a per-person hash chain.'
SELECT id, subject, purpose, action, old_status, new_status, notice_key, method
  FROM consent.audit_trail WHERE subject IN ('1', '2') ORDER BY id;
SELECT consent.seal() IS NOT NULL AS sealed;
SELECT ok, events_checked, seals_checked FROM consent.verify_audit();

\echo '9. Tell applications: every change is in the outbox (and on NOTIFY consent).'
SELECT id, event, subject, purpose, status FROM consent.outbox ORDER BY id LIMIT 5;

\echo '10. Expiry is swept by the background worker; consent.sweep() runs one sweep now.'
SELECT * FROM consent.sweep();
