-- consent: extension script, assembled from src/sql/NN_*.sql by the Makefile.
\echo Use "CREATE EXTENSION consent" to load this file. \quit

--
-- Capabilities.  Three NOLOGIN roles carry what the extension lets people do;
-- DBAs grant them to login roles.  Roles belong to the cluster, not to one
-- database, so a second CREATE EXTENSION in another database reuses them and
-- DROP EXTENSION leaves them in place.
--
--   consent_admin     define and retire purposes, publish notices
--   consent_recorder  record choices: grant, deny, withdraw, confirm
--   consent_reader    read consent state, decisions and (later) the audit views
--
DO $setup$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['consent_admin', 'consent_recorder', 'consent_reader']
	LOOP
		IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
			EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
END
$setup$;

COMMENT ON SCHEMA consent IS
	'consent management: purposes, notices, recorded choices and their enforcement';

-- The schema is the extension's; nobody but its owner may create in it.
REVOKE ALL ON SCHEMA consent FROM PUBLIC;
GRANT USAGE ON SCHEMA consent TO consent_admin, consent_recorder, consent_reader;
