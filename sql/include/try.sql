--
-- Shared by the regression files that test bad input: pg_temp.fp(), a
-- fingerprint of the consent state, and pg_temp.try(stmt), which runs one
-- statement and reports its SQLSTATE, message, detail and hint and whether
-- the state is unchanged.  Include with \i sql/include/try.sql.
--
-- Fingerprint of the consent state: every column of every row.
CREATE FUNCTION pg_temp.fp() RETURNS text LANGUAGE sql AS $$
	SELECT md5(coalesce((SELECT string_agg(r::text, '|' ORDER BY r::text) FROM consent.records r), '')
			|| coalesce((SELECT string_agg(p::text, '|' ORDER BY p.id) FROM consent.purposes p), '')
			|| coalesce((SELECT string_agg(n::text, '|' ORDER BY n.id) FROM consent.notices n), ''))
$$;

-- Run one statement; report its error and whether the state is unchanged.
-- Timestamps in messages and details are masked, as they change per run.
CREATE FUNCTION pg_temp.try(stmt text,
	OUT state text, OUT message text, OUT detail text, OUT hint text,
	OUT unchanged boolean)
LANGUAGE plpgsql AS $$
DECLARE
	before text := pg_temp.fp();
BEGIN
	BEGIN
		EXECUTE stmt;
		state := '00000';
		message := 'no error';
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE,
								message = MESSAGE_TEXT,
								detail = PG_EXCEPTION_DETAIL,
								hint = PG_EXCEPTION_HINT;
	END;
	message := regexp_replace(message, '^expiry .* is not in the future$',
							  'expiry <timestamp> is not in the future');
	detail := regexp_replace(nullif(detail, ''), 'retired at .*\.$', 'retired at <timestamp>.');
	detail := regexp_replace(detail, '^Failing row contains .*$', 'Failing row contains (...).');
	hint := nullif(hint, '');
	unchanged := pg_temp.fp() = before;
END
$$;
