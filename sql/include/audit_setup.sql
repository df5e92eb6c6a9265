-- Shared set-up of sql/audit*.sql: a fresh extension and pg_temp.outcome(),
-- which shows what a statement raises.  Included with \i from the tree root
-- (where pg_regress runs).
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS consent CASCADE;
CREATE EXTENSION consent;
RESET client_min_messages;

-- What a statement raises, as SQLSTATE and message ('ok' when nothing).
CREATE FUNCTION pg_temp.outcome(sql text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
