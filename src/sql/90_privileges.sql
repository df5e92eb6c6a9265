--
-- Privileges and pg_dump.  Runs last, so that it covers every object above.
--

-- Nothing for PUBLIC: every function is granted to the capability that
-- needs it.  (Types and operators stay usable, but the schema itself is
-- closed to PUBLIC, see 00_setup.sql.)
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA consent FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA consent FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA consent FROM PUBLIC;

-- The purpose_key type's I/O, operators and helpers are harmless and are
-- needed by anyone who may use the type.
DO $grants$
DECLARE
	f regprocedure;
BEGIN
	FOR f IN
		SELECT p.oid::regprocedure
		  FROM pg_catalog.pg_proc p
		 WHERE p.pronamespace = 'consent'::regnamespace
		   AND (p.proname LIKE 'purpose\_key\_%' OR p.proname IN ('parent', 'depth'))
	LOOP
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', f);
	END LOOP;
END
$grants$;

-- administer purposes and notices
GRANT EXECUTE ON FUNCTION
	consent.define_purpose(consent.purpose_key, text, consent.legal_basis, text, interval, boolean),
	consent.retire_purpose(consent.purpose_key),
	consent.publish_notice(text, integer, text, consent.purpose_key[], text, boolean)
	TO consent_admin;
GRANT SELECT ON consent.purposes, consent.notices TO consent_admin;

-- record choices
GRANT EXECUTE ON FUNCTION
	consent.grant(text, consent.purpose_key, text, text, text, timestamptz, jsonb),
	consent.grant(bigint, consent.purpose_key, text, text, text, timestamptz, jsonb),
	consent.grant(uuid, consent.purpose_key, text, text, text, timestamptz, jsonb),
	consent.deny(text, consent.purpose_key, text, text, text, jsonb),
	consent.deny(bigint, consent.purpose_key, text, text, text, jsonb),
	consent.deny(uuid, consent.purpose_key, text, text, text, jsonb),
	consent.confirm(text, consent.purpose_key, text, text, jsonb),
	consent.confirm(bigint, consent.purpose_key, text, text, jsonb),
	consent.confirm(uuid, consent.purpose_key, text, text, jsonb),
	consent.withdraw(text, consent.purpose_key, text, text),
	consent.withdraw(bigint, consent.purpose_key, text, text),
	consent.withdraw(uuid, consent.purpose_key, text, text),
	consent.withdraw_all(text, text),
	consent.withdraw_all(bigint, text),
	consent.withdraw_all(uuid, text)
	TO consent_recorder;
GRANT SELECT ON consent.purposes, consent.notices TO consent_recorder;

-- read
GRANT SELECT ON consent.purposes, consent.notices, consent.records TO consent_reader;
GRANT EXECUTE ON FUNCTION
	consent.has(text, consent.purpose_key),
	consent.has(bigint, consent.purpose_key),
	consent.has(uuid, consent.purpose_key),
	consent.has_all(text, consent.purpose_key[]),
	consent.has_all(bigint, consent.purpose_key[]),
	consent.has_all(uuid, consent.purpose_key[]),
	consent.has_any(text, consent.purpose_key[]),
	consent.has_any(bigint, consent.purpose_key[]),
	consent.has_any(uuid, consent.purpose_key[]),
	consent.mask(anyelement, text, consent.purpose_key),
	consent.mask(anyelement, bigint, consent.purpose_key),
	consent.mask(anyelement, uuid, consent.purpose_key),
	consent.explain(text, consent.purpose_key),
	consent.status(text, consent.purpose_key),
	consent.status(bigint, consent.purpose_key),
	consent.status(uuid, consent.purpose_key),
	consent.decisions(text),
	consent.decisions(bigint),
	consent.decisions(uuid),
	consent.cache_info()
	TO consent_reader;

-- pg_dump keeps the user's data: rows and sequence positions.
SELECT pg_catalog.pg_extension_config_dump('consent.purposes', '');
SELECT pg_catalog.pg_extension_config_dump('consent.purposes_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('consent.notices', '');
SELECT pg_catalog.pg_extension_config_dump('consent.notices_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('consent.notice_heads', '');
SELECT pg_catalog.pg_extension_config_dump('consent.records', '');
