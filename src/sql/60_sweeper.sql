--
-- Sweeper: expiry of grants, expiry warnings, and the notification outbox
-- (src/sweeper.c holds the background worker, consent.sweep() and the
-- outbox trigger; docs/sweeper.md the contract).
--

--
-- The outbox.  Every change of consent.records, from any source, and every
-- expiry warning is written here in the same transaction as the change, so
-- that relays (webhooks, queues) get each one at least once.
--
CREATE TABLE consent.outbox (
	id			bigserial PRIMARY KEY,
	event		text NOT NULL
				CHECK (event IN ('grant', 'deny', 'withdraw', 'confirm', 'expire', 'erase', 'update', 'warning')),
	subject		text COLLATE "C" NOT NULL,
	purpose		text NOT NULL,
	status		text NOT NULL,
	previous_status text,
	expires_at	timestamptz,
	at			timestamptz NOT NULL,
	event_id	bigint,
	payload		jsonb,
	claimed_until timestamptz,
	claimed_by	text,
	attempts	integer NOT NULL DEFAULT 0,
	acked_at	timestamptz
);
-- What a consumer claims: unacknowledged rows in id order.
CREATE INDEX outbox_pending_idx ON consent.outbox (id) WHERE acked_at IS NULL;
-- What the sweep prunes: old rows.  BRIN: rows arrive in time order, and a
-- BRIN entry costs almost nothing to maintain on insert.
CREATE INDEX outbox_at_idx ON consent.outbox USING brin (at);

COMMENT ON TABLE consent.outbox IS
	'Notification outbox: one row per change of consent.records and per expiry warning, written in the same transaction; read with claim_notifications/ack_notifications';
COMMENT ON COLUMN consent.outbox.id IS 'delivery order and the id to acknowledge';
COMMENT ON COLUMN consent.outbox.event IS 'grant, deny, withdraw, confirm, expire, erase (the subject key was replaced), update (details only, e.g. redacted free text) or warning (expiry is near)';
COMMENT ON COLUMN consent.outbox.subject IS 'the person (consent.records.subject)';
COMMENT ON COLUMN consent.outbox.purpose IS 'the purpose key';
COMMENT ON COLUMN consent.outbox.status IS 'stored status after the change (pending for a grant awaiting confirmation)';
COMMENT ON COLUMN consent.outbox.previous_status IS 'stored status before the change; NULL when the record is new';
COMMENT ON COLUMN consent.outbox.expires_at IS 'expiry of the record after the change (for a warning: the coming expiry)';
COMMENT ON COLUMN consent.outbox.at IS 'transaction time of the change';
COMMENT ON COLUMN consent.outbox.event_id IS 'id of the audit event written for the change (consent.last_event_id()), when the audit trail is installed';
COMMENT ON COLUMN consent.outbox.payload IS 'further details of a change of consent.records: method, source and notice (key@version); NULL for warnings';
COMMENT ON COLUMN consent.outbox.claimed_until IS 'end of the current claim''s lease; the row is offered again after it';
COMMENT ON COLUMN consent.outbox.claimed_by IS 'consumer named in the last claim (default: its session user)';
COMMENT ON COLUMN consent.outbox.attempts IS 'how many times the row has been claimed';
COMMENT ON COLUMN consent.outbox.acked_at IS 'when a consumer acknowledged delivery; NULL until then';
COMMENT ON SEQUENCE consent.outbox_id_seq IS 'ids of consent.outbox, in the order rows were written';
COMMENT ON INDEX consent.outbox_pending_idx IS 'unacknowledged rows in delivery order, for claim_notifications';
COMMENT ON INDEX consent.outbox_at_idx IS 'rows by age (BRIN), for pruning';

--
-- Expiry warnings already sent: one per grant and expiry, so a renewed
-- grant (with a new expires_at) is warned again.  Rows whose expiry has
-- passed are no longer needed and are removed by the sweep.
--
CREATE TABLE consent.expiry_warnings (
	subject		text COLLATE "C" NOT NULL,
	purpose_id	integer NOT NULL,
	expires_at	timestamptz NOT NULL,
	warned_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (subject, purpose_id, expires_at)
);
CREATE INDEX expiry_warnings_expires_at_idx ON consent.expiry_warnings (expires_at);
COMMENT ON TABLE consent.expiry_warnings IS
	'Expiry warnings sent: one row per (subject, purpose, expiry) so that each grant is warned once';
COMMENT ON COLUMN consent.expiry_warnings.subject IS 'the person';
COMMENT ON COLUMN consent.expiry_warnings.purpose_id IS 'the purpose (consent.purposes.id)';
COMMENT ON COLUMN consent.expiry_warnings.expires_at IS 'the expiry that was announced';
COMMENT ON COLUMN consent.expiry_warnings.warned_at IS 'when the warning was written to the outbox';
COMMENT ON INDEX consent.expiry_warnings_expires_at_idx IS 'warnings by expiry, for removing those whose expiry has passed';

--
-- The outbox trigger (C): after each row inserted or updated in
-- consent.records it writes the outbox row and sends NOTIFY consent.
-- Named "outbox" so that it fires after the audit trigger ("audit") on the
-- same row and can read the audit event's id.
--
CREATE FUNCTION consent.outbox_trigger() RETURNS trigger
	AS 'MODULE_PATHNAME', 'consent_outbox_trigger'
	LANGUAGE C;
COMMENT ON FUNCTION consent.outbox_trigger() IS
	'Internal row trigger on consent.records: writes each change to consent.outbox and sends NOTIFY consent';

CREATE TRIGGER outbox AFTER INSERT OR UPDATE ON consent.records
	FOR EACH ROW EXECUTE FUNCTION consent.outbox_trigger();
COMMENT ON TRIGGER outbox ON consent.records IS
	'writes every change to consent.outbox and NOTIFY consent, in the same transaction';

--
-- One batch of each step of a sweep.  Each runs in whatever transaction
-- calls it: the background worker gives every batch its own transaction.
-- Rows are taken with SKIP LOCKED, so a batch never waits for a session
-- that is changing the same record, and concurrent sweeps never take the
-- same row.  Internal: called by the worker and by consent.sweep().
--

-- Grants whose expiry has passed become "expired".  A plain UPDATE of the
-- current row, so the audit trigger records it and the outbox trigger
-- announces it, like any other change.
--
-- Which part of a sweep a subject belongs to (see expire_batch).
CREATE FUNCTION consent.sweep_part(subject text, parts integer, part integer) RETURNS boolean
	AS 'MODULE_PATHNAME', 'consent_sweep_part'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION consent.sweep_part(text, integer, integer) IS
	'Internal: is the subject in part "part" (0 to parts - 1) of a sweep that splits the subjects between parts processes?';

-- A sweep may run its batches in several processes at once
-- (consent.sweep_workers).  Each then takes one part of the subjects, by a
-- hash of the subject: "parts" parts, this batch's is "part".  So two
-- processes never hold records of the same person, and never wait for each
-- other on that person's audit chain (nor deadlock, whatever order their
-- rows are updated in).  "after" lets a process resume where its previous
-- batch stopped, instead of reading again, batch after batch, the rows of
-- the other parts that lie before it.  A row skipped because it was locked
-- is left behind by "after"; the sweep ends with a pass over every part
-- from the start (parts = 1), which takes it if it is free by then.
CREATE FUNCTION consent.expire_batch(
	n integer,
	parts integer DEFAULT 1,
	part integer DEFAULT 0,
	after timestamptz DEFAULT '-infinity',
	OUT expired integer,
	OUT last_expires_at timestamptz,
	OUT seen integer)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
	IF n IS NULL OR parts IS NULL OR part IS NULL OR after IS NULL THEN
		RAISE EXCEPTION 'batch size, parts, part and after must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF n < 1 THEN
		RAISE EXCEPTION 'batch size must be positive, not %', n
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF parts < 1 OR part < 0 OR part >= parts THEN
		RAISE EXCEPTION 'part % of % parts does not exist', part, parts
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Parts are numbered from 0 to parts - 1.';
	END IF;
	WITH due AS (
		SELECT r.ctid AS tid, r.expires_at
		  FROM consent.records r
		 WHERE r.status = 'granted' AND r.expires_at <= now()
		   AND r.expires_at >= after
		   AND (parts = 1 OR consent.sweep_part(r.subject, parts, part))
		 ORDER BY r.expires_at
		 LIMIT n
		   FOR UPDATE OF r SKIP LOCKED
	), done AS (
		-- The rows are locked: a TID scan finds them without another index
		-- probe (and, unlike a join with "due", whatever the table's size:
		-- a join was planned as a hash join over the whole table when the
		-- table was small).  A row that someone else changed and committed
		-- after this statement's snapshot is locked in its newest version,
		-- which the snapshot does not see: it is not expired now ("seen"
		-- counts it, "expired" does not) and is left for a later pass.  The
		-- conditions below are checked again on the version updated.
		UPDATE consent.records r
		   SET status = 'expired',
			   effective_at = r.expires_at,
			   method = 'expiry',
			   source = NULL,
			   actor = coalesce(nullif(current_setting('consent.actor', true), ''), session_user::text),
			   reason = NULL,
			   evidence = NULL,
			   recorded_at = clock_timestamp()
		 WHERE r.ctid = ANY (ARRAY(SELECT due.tid FROM due))
		   AND r.status = 'granted' AND r.expires_at <= now()
		RETURNING 1
	)
	SELECT (SELECT count(*)::integer FROM done), (SELECT max(due.expires_at) FROM due),
		   (SELECT count(*)::integer FROM due)
	  INTO expired, last_expires_at, seen;
END
$$;
COMMENT ON FUNCTION consent.expire_batch(integer, integer, integer, timestamptz) IS
	'Internal: mark at most n granted records whose expiry has passed (from "after" on, of part "part" of "parts" by subject) as expired (SKIP LOCKED); returns how many, the latest expiry it locked and how many rows it locked';

-- Grants whose expiry falls within warn_before and that were not warned
-- about yet get one "warning" outbox row.  "after" lets the caller resume
-- where the previous batch stopped instead of re-reading warned rows;
-- "seen" < n means there is nothing more to do now.
CREATE FUNCTION consent.warn_batch(
	n integer,
	warn_before interval,
	after timestamptz DEFAULT '-infinity',
	OUT warned integer,
	OUT seen integer,
	OUT last_expires_at timestamptz)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
	WITH due AS (
		SELECT r.subject, r.purpose_id, r.expires_at
		  FROM consent.records r
		 WHERE r.status = 'granted'
		   AND r.expires_at > now()
		   AND r.expires_at <= now() + warn_before
		   AND r.expires_at >= after
		   AND NOT EXISTS (SELECT 1 FROM consent.expiry_warnings w
							WHERE w.subject = r.subject AND w.purpose_id = r.purpose_id
							  AND w.expires_at = r.expires_at)
		 ORDER BY r.expires_at
		 LIMIT n
		   FOR SHARE OF r SKIP LOCKED
	), noted AS (
		INSERT INTO consent.expiry_warnings AS w (subject, purpose_id, expires_at, warned_at)
		SELECT due.subject, due.purpose_id, due.expires_at, now() FROM due
		ON CONFLICT DO NOTHING
		RETURNING w.subject, w.purpose_id, w.expires_at
	), sent AS (
		INSERT INTO consent.outbox AS o (event, subject, purpose, status, previous_status, expires_at, at, payload)
		SELECT 'warning', noted.subject, p.key::text, 'granted', 'granted', noted.expires_at, now(), NULL
		  FROM noted JOIN consent.purposes p ON p.id = noted.purpose_id
		RETURNING o.id, o.event, o.subject, o.purpose, o.status, o.expires_at, o.at
	), notified AS (
		-- the same compact JSON as the outbox trigger's notifications
		SELECT CASE WHEN current_setting('consent.notify', true) IS DISTINCT FROM 'off' THEN
					pg_notify('consent', format('{"id":%s,"event":"warning","subject":%s,"purpose":%s,"status":"granted","at":%s,"event_id":null}',
												sent.id, to_json(sent.subject), to_json(sent.purpose), to_json(sent.at)))
			   END
		  FROM sent
	)
	SELECT (SELECT count(*)::integer FROM notified),
		   (SELECT count(*)::integer FROM due),
		   (SELECT max(due.expires_at) FROM due)
	  INTO warned, seen, last_expires_at;
END
$$;
COMMENT ON FUNCTION consent.warn_batch(integer, interval, timestamptz) IS
	'Internal: write one warning to the outbox for at most n grants expiring within warn_before that were not warned about yet';

-- Outbox rows older than the retention that are acknowledged or not under
-- a lease, and expiry warnings whose expiry has passed.
CREATE FUNCTION consent.prune_batch(
	n integer,
	retention interval,
	OUT pruned integer,
	OUT forgotten integer)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
	WITH old AS (
		SELECT o.id
		  FROM consent.outbox o
		 WHERE o.at < now() - retention
		   AND (o.acked_at IS NOT NULL OR o.claimed_until IS NULL OR o.claimed_until <= now())
		 ORDER BY o.id
		 LIMIT n
		   FOR UPDATE OF o SKIP LOCKED
	), gone AS (
		DELETE FROM consent.outbox o USING old WHERE o.id = old.id RETURNING 1
	)
	SELECT count(*)::integer INTO pruned FROM gone;

	WITH stale AS (
		SELECT w.subject, w.purpose_id, w.expires_at
		  FROM consent.expiry_warnings w
		 WHERE w.expires_at < now()
		 ORDER BY w.expires_at
		 LIMIT n
		   FOR UPDATE OF w SKIP LOCKED
	), forgot AS (
		DELETE FROM consent.expiry_warnings w USING stale
		 WHERE w.subject = stale.subject AND w.purpose_id = stale.purpose_id
		   AND w.expires_at = stale.expires_at
		RETURNING 1
	)
	SELECT count(*)::integer INTO forgotten FROM forgot;
END
$$;
COMMENT ON FUNCTION consent.prune_batch(integer, interval) IS
	'Internal: delete at most n outbox rows older than retention that are acknowledged or not leased, and at most n warnings whose expiry has passed';

--
-- One sweep in the current database, in the caller's transaction: for
-- pg_cron and for servers without shared_preload_libraries.
--
CREATE FUNCTION consent.sweep(
	OUT expired bigint,
	OUT warned bigint,
	OUT pruned bigint,
	OUT sealed boolean)
	AS 'MODULE_PATHNAME', 'consent_sweep'
	LANGUAGE C VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION consent.sweep() IS
	'Run one sweep now in the current database (expire, warn, prune, seal) and return its counts';

CREATE FUNCTION consent.sweeper_stats(
	OUT datid oid,
	OUT pid integer,
	OUT state text,
	OUT sweeps bigint,
	OUT last_start timestamptz,
	OUT last_end timestamptz,
	OUT expired bigint,
	OUT warned bigint,
	OUT pruned bigint,
	OUT last_expired bigint,
	OUT last_warned bigint,
	OUT last_pruned bigint,
	OUT longest_batch_ms double precision,
	OUT last_error text,
	OUT last_error_at timestamptz)
RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'consent_sweeper_stats'
	LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION consent.sweeper_stats() IS
	'Internal: the sweeper counters kept in shared memory, one row per database (empty without shared_preload_libraries)';

CREATE VIEW consent.sweeper_status AS
	SELECT s.datid,
		   d.datname::text AS database,
		   s.pid,
		   s.state,
		   s.sweeps,
		   s.last_start,
		   s.last_end,
		   s.expired,
		   s.warned,
		   s.pruned,
		   s.last_expired,
		   s.last_warned,
		   s.last_pruned,
		   s.longest_batch_ms,
		   s.last_error,
		   s.last_error_at
	  FROM consent.sweeper_stats() s
	  LEFT JOIN pg_catalog.pg_database d ON d.oid = s.datid;
COMMENT ON VIEW consent.sweeper_status IS
	'What the sweeper did, per database, since the server started (needs shared_preload_libraries = ''consent'')';
COMMENT ON COLUMN consent.sweeper_status.datid IS 'database OID';
COMMENT ON COLUMN consent.sweeper_status.database IS 'database name';
COMMENT ON COLUMN consent.sweeper_status.pid IS 'process sweeping the database now; NULL when idle';
COMMENT ON COLUMN consent.sweeper_status.state IS 'sweeping or idle';
COMMENT ON COLUMN consent.sweeper_status.sweeps IS 'sweeps finished since the server started';
COMMENT ON COLUMN consent.sweeper_status.last_start IS 'when the last sweep started';
COMMENT ON COLUMN consent.sweeper_status.last_end IS 'when the last sweep ended (NULL while the first one runs)';
COMMENT ON COLUMN consent.sweeper_status.expired IS 'records expired since the server started';
COMMENT ON COLUMN consent.sweeper_status.warned IS 'expiry warnings sent since the server started';
COMMENT ON COLUMN consent.sweeper_status.pruned IS 'outbox rows pruned since the server started';
COMMENT ON COLUMN consent.sweeper_status.last_expired IS 'records expired by the last (or current) sweep';
COMMENT ON COLUMN consent.sweeper_status.last_warned IS 'warnings sent by the last (or current) sweep';
COMMENT ON COLUMN consent.sweeper_status.last_pruned IS 'outbox rows pruned by the last (or current) sweep';
COMMENT ON COLUMN consent.sweeper_status.longest_batch_ms IS 'duration of the longest batch transaction of the last sweep, in milliseconds';
COMMENT ON COLUMN consent.sweeper_status.last_error IS 'message of the last error a sweep met';
COMMENT ON COLUMN consent.sweeper_status.last_error_at IS 'when that error happened';

--
-- Consumers: at-least-once delivery.  A consumer claims rows for a lease,
-- delivers them, and acknowledges them; rows not acknowledged before the
-- lease ends are offered again.  Concurrent consumers get disjoint rows.
--
CREATE FUNCTION consent.claim_notifications(
	n integer,
	lease interval,
	consumer text DEFAULT NULL)
RETURNS SETOF consent.outbox
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF n IS NULL OR n < 1 THEN
		RAISE EXCEPTION 'number of notifications to claim must be positive, not %', coalesce(n::text, 'NULL')
			USING ERRCODE = CASE WHEN n IS NULL THEN 'null_value_not_allowed' ELSE 'invalid_parameter_value' END;
	END IF;
	IF lease IS NULL OR lease <= interval '0' THEN
		RAISE EXCEPTION 'lease must be a positive interval, not %', coalesce(lease::text, 'NULL')
			USING ERRCODE = CASE WHEN lease IS NULL THEN 'null_value_not_allowed' ELSE 'invalid_parameter_value' END,
				  HINT = 'Choose a lease longer than a delivery takes, e.g. interval ''1 minute''.';
	END IF;
	RETURN QUERY
	WITH claimable AS (
		SELECT o.id
		  FROM consent.outbox o
		 WHERE o.acked_at IS NULL
		   AND (o.claimed_until IS NULL OR o.claimed_until <= now())
		 ORDER BY o.id
		 LIMIT n
		   FOR UPDATE OF o SKIP LOCKED
	), claimed AS (
		UPDATE consent.outbox o
		   SET claimed_until = now() + lease,
			   claimed_by = coalesce(consumer, session_user::text),
			   attempts = o.attempts + 1
		  FROM claimable
		 WHERE o.id = claimable.id
		RETURNING o.*
	)
	SELECT * FROM claimed ORDER BY claimed.id;
END
$$;
COMMENT ON FUNCTION consent.claim_notifications(integer, interval, text) IS
	'Claim at most n unacknowledged notifications for a lease (SKIP LOCKED: concurrent consumers get disjoint rows); unacknowledged rows come back after the lease';

CREATE FUNCTION consent.ack_notifications(ids bigint[]) RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	WITH acked AS (
		UPDATE consent.outbox o
		   SET acked_at = pg_catalog.now(), claimed_until = NULL
		 WHERE o.id = ANY (ids) AND o.acked_at IS NULL
		RETURNING 1
	)
	SELECT pg_catalog.count(*)::integer FROM acked
$$;
COMMENT ON FUNCTION consent.ack_notifications(bigint[]) IS
	'Acknowledge delivered notifications; returns how many were newly acknowledged (acknowledging twice is harmless)';

--
-- Privileges.  Relays get their own capability: claiming and acknowledging
-- notifications, and nothing else.
--
DO $relay$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'consent_relay') THEN
		CREATE ROLE consent_relay NOLOGIN;
	END IF;
END
$relay$;
GRANT USAGE ON SCHEMA consent TO consent_relay;

REVOKE ALL ON consent.outbox, consent.expiry_warnings, consent.sweeper_status FROM PUBLIC;
REVOKE ALL ON FUNCTION
	consent.outbox_trigger(),
	consent.sweep_part(text, integer, integer),
	consent.expire_batch(integer, integer, integer, timestamptz),
	consent.warn_batch(integer, interval, timestamptz),
	consent.prune_batch(integer, interval),
	consent.sweep(),
	consent.sweeper_stats(),
	consent.claim_notifications(integer, interval, text),
	consent.ack_notifications(bigint[])
	FROM PUBLIC;

GRANT EXECUTE ON FUNCTION consent.sweep() TO consent_admin;
GRANT EXECUTE ON FUNCTION consent.sweeper_stats() TO consent_admin, consent_reader;
GRANT SELECT ON consent.sweeper_status TO consent_admin, consent_reader;
GRANT SELECT ON consent.outbox TO consent_admin, consent_reader;
GRANT EXECUTE ON FUNCTION
	consent.claim_notifications(integer, interval, text),
	consent.ack_notifications(bigint[])
	TO consent_relay;

-- pg_dump keeps undelivered notifications and the warnings already sent.
SELECT pg_catalog.pg_extension_config_dump('consent.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('consent.outbox_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('consent.expiry_warnings', '');
