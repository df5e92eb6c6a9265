--
-- The BI views (audit_trail, current_consents, purpose_summary,
-- activity_daily, expiring), consent receipts and export_subject.
--
\i sql/include/audit_setup.sql

SELECT consent.define_purpose('marketing', 'Marketing') IS NOT NULL AS defined;
SELECT consent.define_purpose('marketing.email', 'E-mail newsletter', valid_for => '1 year') IS NOT NULL AS defined;
SELECT consent.define_purpose('research', 'Research', 'explicit_consent',
							  description => 'Medical research', requires_confirmation => true) IS NOT NULL AS defined;
SELECT consent.define_purpose('fraud', 'Fraud prevention', 'legitimate_interests') IS NOT NULL AS defined;
SELECT consent.define_purpose('old', 'Old purpose') IS NOT NULL AS defined;
SELECT consent.publish_notice('terms', 1, 'Terms v1', ARRAY['marketing']::consent.purpose_key[]) IS NOT NULL AS published;
SELECT consent.publish_notice('privacy', 1, 'Privacy v1', ARRAY['research']::consent.purpose_key[]) IS NOT NULL AS published;

SELECT consent.grant('u1', 'marketing', 'terms');
SELECT consent.grant('u1', 'marketing.email', expires_at => now() + interval '10 days');
SELECT consent.grant('u2', 'marketing.email');
SELECT consent.grant('u3', 'marketing.email', expires_at => now() + interval '20 days');
SELECT consent.deny('u2', 'marketing');
SELECT consent.grant('u1', 'research', 'privacy');
SELECT consent.grant('u2', 'research', 'privacy');
SELECT consent.confirm('u2', 'research');
SELECT consent.deny('u3', 'fraud');
SELECT consent.grant('u3', 'old');
SELECT consent.retire_purpose('old');
-- a grant that lapsed before the sweeper came by, and one superseded by a
-- material notice change
UPDATE consent.records SET expires_at = now() - interval '1 day'
 WHERE subject = 'u3' AND purpose_id = (SELECT id FROM consent.purposes WHERE key::text = 'marketing.email');
SELECT consent.publish_notice('terms', 2, 'Terms v2', ARRAY['marketing']::consent.purpose_key[], material => true)
	IS NOT NULL AS published;
SELECT consent.withdraw('u4', 'marketing');
SELECT consent.grant('u5', 'marketing.email', expires_at => now() + interval '3 days');

--
-- current_consents: one row per record, the decision of consent.explain().
--
SELECT subject, purpose, title, legal_basis, status, allowed, reason, notice_key, notice_version,
	   notice_superseded, expires_at IS NOT NULL AS expires
  FROM consent.current_consents ORDER BY subject, purpose;
SELECT count(*) AS disagreements
  FROM consent.current_consents c
 CROSS JOIN LATERAL consent.explain(c.subject, c.purpose::consent.purpose_key) e
 WHERE e.allowed IS DISTINCT FROM c.allowed OR e.reason IS DISTINCT FROM c.reason
	OR e.status IS DISTINCT FROM c.status OR e.decided_by IS DISTINCT FROM c.purpose;
SELECT count(*) = (SELECT count(*) FROM consent.records) AS one_row_per_record FROM consent.current_consents;

--
-- purpose_summary
--
SELECT * FROM consent.purpose_summary ORDER BY purpose;

--
-- activity_daily: the same before and after a seal moves events into the
-- rollup, and after more events follow.
--
SELECT day = timezone('UTC', date_trunc('day', timezone('UTC', now()))) AS today_utc,
	   purpose, grants, confirmations, denials, withdrawals, expiries, events
  FROM consent.activity_daily ORDER BY purpose NULLS FIRST;
SELECT sum(events) = (SELECT count(*) FROM consent.audit_events) AS every_event_counted
  FROM consent.activity_daily;
CREATE TEMP TABLE before_seal AS SELECT * FROM consent.activity_daily;
SELECT consent.seal() AS sealed;
SELECT count(*) AS rollup_rows, sum(events) = (SELECT count(*) FROM consent.audit_events) AS rollup_complete
  FROM consent.activity_rollup;
SELECT (SELECT count(*) FROM (TABLE before_seal EXCEPT TABLE consent.activity_daily) a)
	 + (SELECT count(*) FROM (TABLE consent.activity_daily EXCEPT TABLE before_seal) b) AS differences;
SELECT consent.withdraw('u2', 'marketing.email');
SELECT purpose, withdrawals, events FROM consent.activity_daily WHERE purpose = 'marketing.email';
SELECT consent.seal() AS sealed_again;
SELECT purpose, withdrawals, events FROM consent.activity_daily WHERE purpose = 'marketing.email';

--
-- expiring(within)
--
SELECT subject, purpose, title, seconds_left BETWEEN 0 AND 30 * 86400 AS within_30_days, method
  FROM consent.expiring('30 days');
SELECT count(*) AS within_2_years FROM consent.expiring('2 years');
SELECT count(*) AS within_5_days FROM consent.expiring('5 days');
SELECT subject, purpose FROM consent.expiring();

--
-- audit_trail: every event, plain types.
--
SELECT count(*) = (SELECT count(*) FROM consent.audit_events) AS all_events,
	   bool_and(length(hash) = 64 AND length(prev_hash) = 64) AS hex_hashes,
	   bool_and(NOT erased) AS none_erased
  FROM consent.audit_trail;
SELECT id, subject, purpose, action, old_status, new_status, notice_key, notice_version,
	   length(notice_sha256) AS sha_hex_len
  FROM consent.audit_trail WHERE subject = 'u1' ORDER BY id;
SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type
  FROM pg_attribute a
 WHERE a.attrelid = 'consent.audit_trail'::regclass AND a.attnum > 0
 ORDER BY a.attnum;

--
-- Receipts (Kantara Consent Receipt v1.1 field names).
--
SET consent.controller_name = 'Example Ltd';
SET consent.controller_email = 'privacy@example.com';
SET consent.controller_address = '1 Main Street, Dublin';
SET consent.controller_url = 'https://example.com';
SET consent.jurisdiction = 'IE';
SET consent.policy_url = 'https://example.com/privacy';
SELECT id AS grant_event FROM consent.audit_events
 WHERE subject = 'u1' AND purpose = 'research' AND action = 'grant' \gset
SELECT consent.receipt(:grant_event) AS r \gset
SELECT k FROM jsonb_object_keys(:'r'::jsonb) k ORDER BY k;
SELECT r->>'version' AS version, r->>'jurisdiction' AS jurisdiction,
	   r->>'collectionMethod' AS method, r->>'piiPrincipalId' AS principal,
	   r->>'policyUrl' AS policy, r->'sensitive' AS sensitive, r->'spiCat' AS spicat,
	   r->'piiControllers' AS controllers,
	   jsonb_typeof(r->'consentTimestamp') AS ts_type,
	   (r->>'consentTimestamp')::bigint BETWEEN extract(epoch FROM now()) - 3600 AND extract(epoch FROM now()) + 1 AS ts_now,
	   r->>'consentReceiptID' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' AS uuid_v4,
	   r->'notice'->>'key' AS notice, r->>'auditEventId' = :'grant_event' AS event_id
  FROM (SELECT :'r'::jsonb AS r) x;
SELECT jsonb_pretty(:'r'::jsonb->'services') AS services;
SELECT consent.receipt(:grant_event) = :'r'::jsonb AS same_receipt_again;
SELECT consent.receipt(id)->>'consentReceiptID' <> :'r'::jsonb->>'consentReceiptID' AS ids_differ
  FROM consent.audit_events WHERE subject = 'u2' AND action = 'confirm';
SELECT consent.receipt(id)->'services'->0->'purposes'->0->>'consentType' AS marketing_type,
	   consent.receipt(id)->'sensitive' AS sensitive
  FROM consent.audit_events WHERE subject = 'u1' AND purpose = 'marketing' AND action = 'grant';
RESET consent.controller_name;
SELECT consent.receipt(:grant_event)->'piiControllers'->0->>'piiController' AS unnamed;
SELECT pg_temp.outcome('SELECT consent.receipt(NULL)');
SELECT pg_temp.outcome('SELECT consent.receipt(100000)');
SELECT pg_temp.outcome('SELECT consent.receipt(1)');

--
-- export_subject (Art. 15): decisions, records, history, verification.
--
SELECT consent.export_subject('u1') AS x \gset
SELECT k FROM jsonb_object_keys(:'x'::jsonb) k ORDER BY k;
SELECT x->>'subject' AS subject,
	   jsonb_array_length(x->'decisions') = (SELECT count(*) FROM consent.purposes) AS every_purpose,
	   jsonb_array_length(x->'records') AS records,
	   jsonb_array_length(x->'history') = (SELECT count(*) FROM consent.audit_events WHERE subject = 'u1') AS full_history,
	   x->'history'->0 ? 'subject' AS subject_repeated,
	   x->'verification'->'ok' AS verified
  FROM (SELECT :'x'::jsonb AS x) s;
SELECT h->>'action' AS action, h->>'purpose' AS purpose, h->>'new_status' AS status
  FROM jsonb_array_elements(:'x'::jsonb->'history') h;
SELECT jsonb_array_length(consent.export_subject(42::bigint)->'history') AS nobody_history;
SELECT pg_temp.outcome('SELECT consent.export_subject(NULL::text)');

-- Controller settings are for superusers (and roles granted SET on them).
CREATE ROLE regress_audit_views_user;
SET ROLE regress_audit_views_user;
SELECT pg_temp.outcome($$SET consent.controller_name = 'Mallory'$$);
RESET ROLE;
DROP ROLE regress_audit_views_user;


-- Leave a fresh extension behind for the files that follow.
SET client_min_messages = warning;
DROP EXTENSION consent CASCADE;
CREATE EXTENSION consent;
RESET client_min_messages;
