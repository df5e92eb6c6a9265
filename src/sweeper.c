/*-------------------------------------------------------------------------
 *
 * sweeper.c
 *		The background worker that expires grants, warns before expiries
 *		and prunes the notification outbox in every database that installed
 *		the extension; consent.sweep() for servers without it; the sweeper
 *		counters behind consent.sweeper_status; and the outbox trigger.
 *
 * Processes.  A launcher (bgw_type "consent launcher", registered under
 * shared_preload_libraries and started once recovery has finished, so a hot
 * standby runs none) connects to no database: it reads pg_database, a shared
 * catalog, and every consent.sweep_interval starts one short-lived sweeper
 * (bgw_type "consent sweeper", a dynamic worker) for each database named by
 * consent.databases, at most consent.max_sweepers at a time.  A sweeper
 * connects to its database, checks that the extension is installed there,
 * runs one sweep and exits.  So:
 *
 *	 - CREATE EXTENSION is picked up by the next interval's sweeper, and after
 *	   DROP EXTENSION the next sweeper finds nothing and exits at once;
 *	 - between sweeps no process of ours is connected to the database, and
 *	   during a sweep the sweeper checks before each batch whether someone
 *	   wants the database to itself (DROP DATABASE, ALTER DATABASE, CREATE
 *	   DATABASE ... TEMPLATE lock it in a mode that conflicts with the lock a
 *	   new connection takes) and stops if so: it never blocks DROP DATABASE;
 *	 - a setting that names no usable database gives a LOG line and an idle
 *	   launcher, never a restart loop; an error in a sweep is logged and kept
 *	   in shared memory, and the next interval tries again.
 *
 * A sweep, in batches of consent.sweep_batch_size, each batch its own
 * transaction taking rows with SKIP LOCKED (src/sql/60_sweeper.sql):
 * expire granted records whose expiry has passed (a plain UPDATE, so the
 * audit and outbox triggers record it like any change), warn once about each
 * grant that expires within consent.warn_before, prune the outbox, and call
 * consent.seal() when the audit trail provides it.  A crash loses at most the
 * batch in flight, which the next sweep does again: every expiry is recorded
 * exactly once.  An advisory lock keeps two sweeps of one database apart.
 *
 * Helpers.  The expiry step is CPU-bound in one process.  When its first
 * batch is full (a backlog), a sweeper started by the launcher starts
 * consent.sweep_workers - 1 helpers (bgw_type "consent sweep helper",
 * dynamic workers that tell the sweeper when they exit) and the processes
 * split the subjects between them by a hash of the subject: each expires
 * the records of its part, in batches of their own, each batch its own
 * transaction.  No two processes of a sweep ever hold records of one person
 * at the same time, so they never wait for each other on that person's
 * audit chain.  The helpers add their counts to the sweeper's slot in
 * shared memory (consent.sweeper_status shows one sweeper per database) and
 * stop when their part is done, or before a batch when the sweeper has
 * exited or someone wants the database.  The sweeper waits for them, then
 * makes a last pass over all parts, which also takes what a helper that
 * never started or stopped early left behind.
 *
 * The outbox trigger writes a row to consent.outbox for every row inserted or
 * updated in consent.records, directly through the table AM and the index
 * AMs (no SPI per row), and queues NOTIFY consent with a JSON payload for
 * the commit (src/notify_relay.c sends it).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

/* These are always necessary for a bgworker */
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"

/* these headers are used by this particular worker's code */
#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/dependency.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_database.h"
#include "catalog/pg_enum.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "commands/async.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/procarray.h"
#include "tcop/pquery.h"
#include "tcop/tcopprot.h"
#include "utils/inval.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "audit.h"
#include "consent.h"
#include "notify_relay.h"
#include "sweeper.h"

PG_FUNCTION_INFO_V1(consent_sweep);
PG_FUNCTION_INFO_V1(consent_sweeper_stats);
PG_FUNCTION_INFO_V1(consent_outbox_trigger);
PG_FUNCTION_INFO_V1(consent_sweep_part);

/* Databases whose counters shared memory keeps. */
#define SWEEPER_SLOTS			128
#define SWEEPER_ERROR_LEN		256

/*
 * The advisory lock that keeps two sweeps of one database apart, as
 * pg_advisory_lock(1668247155, 1937204581) ("cons", "swee").  Holding it in
 * a session pauses the background sweeper in that database.
 */
#define SWEEP_LOCK_KEY1			0x636F6E73
#define SWEEP_LOCK_KEY2			0x73776565

/* The background sweeper seals after this many batches' worth of expiries. */
#define SEAL_EVERY_BATCHES		50

/* ----------------------------------------------------------------
 * Settings
 * ----------------------------------------------------------------
 */
char	   *consent_databases = NULL;
int			consent_sweep_interval = 60;
int			consent_max_sweepers = 2;
int			consent_sweep_batch_size = 1000;
int			consent_sweep_workers = 2;
int			consent_warn_before = 14 * SECS_PER_DAY;
int			consent_outbox_retention = 7 * SECS_PER_DAY;
bool		consent_notify = true;

/*
 * consent.databases: '*' (every database that allows connections and is not
 * a template), '' (none), or a comma-separated list of names.
 */
static bool
check_databases(char **newval, void **extra pg_attribute_unused(),
				GucSource source pg_attribute_unused())
{
	char	   *raw;
	List	   *names;
	ListCell   *lc;

	raw = pstrdup(*newval);
	if (!SplitGUCList(raw, ',', &names))
	{
		GUC_check_errdetail("List syntax is invalid.");
		GUC_check_errhint("Write '*' for every database, or database names separated by commas.");
		pfree(raw);
		list_free(names);
		return false;
	}
	foreach(lc, names)
	{
		char	   *name = (char *) lfirst(lc);

		if (strcmp(name, "*") == 0 && list_length(names) > 1)
		{
			GUC_check_errdetail("\"*\" (every database) cannot be combined with database names.");
			pfree(raw);
			list_free(names);
			return false;
		}
		if (strlen(name) >= NAMEDATALEN)
		{
			GUC_check_errdetail("Database name \"%s\" is longer than %d bytes.", name, NAMEDATALEN - 1);
			pfree(raw);
			list_free(names);
			return false;
		}
	}
	pfree(raw);
	list_free(names);
	return true;
}

/* consent.outbox_retention: -1 (keep) or at least a minute. */
static bool
check_outbox_retention(int *newval, void **extra pg_attribute_unused(),
					   GucSource source pg_attribute_unused())
{
	if (*newval == -1 || *newval >= SECS_PER_MINUTE)
		return true;
	GUC_check_errdetail("consent.outbox_retention must be -1 (never prune) or at least 1 minute, not %d s.", *newval);
	return false;
}

/* consent.warn_before: 0 (no warnings) up to a year. */
static bool
check_warn_before(int *newval, void **extra pg_attribute_unused(),
				  GucSource source pg_attribute_unused())
{
	if (*newval >= 0 && *newval <= 366 * SECS_PER_DAY)
		return true;
	GUC_check_errdetail("consent.warn_before must be between 0 (no warnings) and 366 days.");
	return false;
}

/* ----------------------------------------------------------------
 * Shared memory: counters per database
 * ----------------------------------------------------------------
 */
typedef struct SweeperSlot
{
	Oid			datid;			/* InvalidOid: slot is free */
	pid_t		pid;			/* process sweeping now, or 0 */
	int64		sweeps;
	TimestampTz last_start;
	TimestampTz last_end;
	int64		expired;
	int64		warned;
	int64		pruned;
	int64		last_expired;
	int64		last_warned;
	int64		last_pruned;
	double		longest_batch_ms;
	TimestampTz last_error_at;
	char		last_error[SWEEPER_ERROR_LEN];
	bool		worker_seen;	/* a background sweeper has swept it */
	int64		last_helped;	/* of last_expired, by helpers */
} SweeperSlot;

typedef struct SweeperShared
{
	LWLock	   *lock;
	SweeperSlot slots[SWEEPER_SLOTS];
} SweeperShared;

static SweeperShared *sweeper_shared = NULL;

/* Under shared_preload_libraries (consent.c): the shared memory we need. */
void
consent_sweeper_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(SweeperShared)));
	RequestNamedLWLockTranche("consent_sweeper", 1);
}

/* ... and its set-up, from the shmem_startup_hook (consent.c). */
void
consent_sweeper_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	sweeper_shared = ShmemInitStruct("consent sweeper", sizeof(SweeperShared), &found);
	if (!found)
	{
		memset(sweeper_shared, 0, sizeof(SweeperShared));
		sweeper_shared->lock = &(GetNamedLWLockTranche("consent_sweeper"))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Index of the slot of "datid", or -1.  Caller holds the lock. */
static int
slot_find(Oid datid)
{
	for (int i = 0; i < SWEEPER_SLOTS; i++)
		if (sweeper_shared->slots[i].datid == datid)
			return i;
	return -1;
}

/*
 * Mark the start of a sweep of the current database by this process.
 * Returns the slot (or -1 without shared memory or with every slot taken).
 * Sets *first when this is the first sweep of a background sweeper in the
 * database since the server started or the extension was installed.
 */
static int
slot_sweep_begin(bool worker, bool *first)
{
	int			i;
	SweeperSlot *s;

	*first = false;
	if (sweeper_shared == NULL)
		return -1;

	LWLockAcquire(sweeper_shared->lock, LW_EXCLUSIVE);
	i = slot_find(MyDatabaseId);
	if (i < 0)
	{
		i = slot_find(InvalidOid);
		if (i >= 0)
		{
			memset(&sweeper_shared->slots[i], 0, sizeof(SweeperSlot));
			sweeper_shared->slots[i].datid = MyDatabaseId;
		}
	}
	if (i >= 0)
	{
		s = &sweeper_shared->slots[i];
		if (worker && !s->worker_seen)
		{
			s->worker_seen = true;
			*first = true;
		}
		s->pid = MyProcPid;
		s->last_start = GetCurrentTimestamp();
		s->last_expired = s->last_warned = s->last_pruned = 0;
		s->last_helped = 0;
		s->longest_batch_ms = 0;
	}
	LWLockRelease(sweeper_shared->lock);

	if (i < 0)
		ereport(LOG,
				(errmsg("consent sweeper: no free status slot for database \"%s\"",
						get_database_name(MyDatabaseId)),
				 errdetail("consent.sweeper_status keeps %d databases; this one is swept but not shown.",
						   SWEEPER_SLOTS)));
	return i;
}

/*
 * This database's status slot "i", with the lock held in "mode"; NULL
 * (and no lock held) when there is none or it now belongs to another
 * database.  The caller releases sweeper_shared->lock.
 */
static SweeperSlot *
slot_lock(int i, LWLockMode mode)
{
	if (i < 0 || sweeper_shared == NULL)
		return NULL;
	LWLockAcquire(sweeper_shared->lock, mode);
	if (sweeper_shared->slots[i].datid == MyDatabaseId)
		return &sweeper_shared->slots[i];
	LWLockRelease(sweeper_shared->lock);
	return NULL;
}

static void
slot_set_error(SweeperSlot *s, const char *error, TimestampTz at)
{
	strlcpy(s->last_error, error, SWEEPER_ERROR_LEN);
	s->last_error_at = at;
}

/* Add one batch's counts ("helped": expired by a helper). */
static void
slot_add(int i, int64 expired, int64 warned, int64 pruned, double batch_ms,
		 bool helped)
{
	SweeperSlot *s = slot_lock(i, LW_EXCLUSIVE);

	if (s == NULL)
		return;
	s->expired += expired;
	s->warned += warned;
	s->pruned += pruned;
	s->last_expired += expired;
	s->last_warned += warned;
	s->last_pruned += pruned;
	if (helped)
		s->last_helped += expired;
	if (batch_ms > s->longest_batch_ms)
		s->longest_batch_ms = batch_ms;
	LWLockRelease(sweeper_shared->lock);
}

/* Mark the end of a sweep; "error" (may be NULL) is kept as the last error. */
static void
slot_sweep_end(int i, bool finished, const char *error)
{
	SweeperSlot *s = slot_lock(i, LW_EXCLUSIVE);

	if (s == NULL)
		return;
	if (s->pid == MyProcPid)
		s->pid = 0;
	s->last_end = GetCurrentTimestamp();
	if (finished)
		s->sweeps++;
	if (error != NULL)
		slot_set_error(s, error, s->last_end);
	LWLockRelease(sweeper_shared->lock);
}

/* Keep an error of a helper as the last error of its sweeper's slot. */
static void
slot_note_error(int i, const char *error)
{
	SweeperSlot *s = slot_lock(i, LW_EXCLUSIVE);

	if (s == NULL)
		return;
	slot_set_error(s, error, GetCurrentTimestamp());
	LWLockRelease(sweeper_shared->lock);
}

/* Records the helpers expired in the last (or current) sweep. */
static int64
slot_helped(int i)
{
	SweeperSlot *s = slot_lock(i, LW_SHARED);
	int64		helped;

	if (s == NULL)
		return 0;
	helped = s->last_helped;
	LWLockRelease(sweeper_shared->lock);
	return helped;
}

/* Forget a database; returns whether it had a slot. */
static bool
slot_forget(Oid datid)
{
	int			i;

	if (sweeper_shared == NULL)
		return false;
	LWLockAcquire(sweeper_shared->lock, LW_EXCLUSIVE);
	i = slot_find(datid);
	if (i >= 0)
		memset(&sweeper_shared->slots[i], 0, sizeof(SweeperSlot));
	LWLockRelease(sweeper_shared->lock);
	return i >= 0;
}

/* ----------------------------------------------------------------
 * The sweep
 * ----------------------------------------------------------------
 */
typedef struct Sweep
{
	bool		own_xacts;		/* worker: one transaction per batch */
	int			slot;			/* shared memory slot or -1 */
	const char *dbname;
	int			batch_size;
	int64		expired;
	int64		warned;
	int64		pruned;
	bool		sealed;
	double		longest_ms;
	const char *stopped;		/* why a worker stopped early, or NULL */
	pid_t		leader;			/* helper: the sweeper it helps; else 0 */
	int			can_seal;		/* consent.seal() exists: 1, no: -1, unknown: 0 */
	int64		sealed_at;		/* expiries (helpers' too) at the last seal */
	int			helpers;		/* sweeper: helpers it registered */
	long		own_part_ms;	/* sweeper: its own part(s) of the expiry step */
	long		waited_ms;		/* sweeper: then waiting for its helpers */
} Sweep;

/*
 * Does another backend want this database to itself?  DROP DATABASE, ALTER
 * DATABASE and CREATE DATABASE ... TEMPLATE lock it in a mode that conflicts
 * with the RowExclusiveLock every new connection takes (postinit.c) and then
 * wait for its other users to leave.  Call inside a transaction.
 */
static bool
database_wanted(void)
{
	LOCKTAG		tag;

	SET_LOCKTAG_OBJECT(tag, InvalidOid, DatabaseRelationId, MyDatabaseId, 0);
	if (LockAcquire(&tag, RowExclusiveLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
		return true;
	LockRelease(&tag, RowExclusiveLock, false);
	return false;
}

static bool
sweep_lock(bool session)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, SWEEP_LOCK_KEY1, SWEEP_LOCK_KEY2, 2);
	return LockAcquire(&tag, ExclusiveLock, session, true) != LOCKACQUIRE_NOT_AVAIL;
}

/* In a worker's loop: die if asked to, reread the settings on SIGHUP. */
static void
worker_poll(void)
{
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/*
 * Run one batch statement and copy the first row's (pass-by-value) columns
 * into out[].  A worker runs it in a transaction of its own; it returns
 * false, running nothing, when the sweep must stop (database wanted by
 * someone else, extension dropped).
 */
static bool
sweep_batch(Sweep *sw, const char *sql, int nargs, Oid *argtypes, Datum *args,
			Datum *out, bool *outnull, int nout)
{
	instr_time	start,
				duration;
	int			ret;
	double		ms;

	INSTR_TIME_SET_CURRENT(start);

	if (sw->own_xacts)
	{
		worker_poll();
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		if (sw->leader != 0 && BackendPidGetProc(sw->leader) == NULL)
			sw->stopped = "the sweeper it helped has exited";
		else if (database_wanted())
			sw->stopped = "another session is waiting for exclusive use of the database";
		else if (!OidIsValid(get_extension_oid("consent", true)))
			sw->stopped = "the extension was dropped";
		if (sw->stopped)
		{
			CommitTransactionCommand();
			return false;
		}
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, sql);
	}

	ret = SPI_execute_with_args(sql, nargs, argtypes, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "consent sweeper: \"%s\" returned %d rows (SPI result %d)",
			 sql, (int) SPI_processed, ret);
	for (int i = 0; i < nout; i++)
	{
		Assert(TupleDescAttr(SPI_tuptable->tupdesc, i)->attbyval);
		out[i] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1, &outnull[i]);
	}

	if (sw->own_xacts)
	{
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_stat(false);
		pgstat_report_activity(STATE_IDLE, NULL);
	}

	INSTR_TIME_SET_CURRENT(duration);
	INSTR_TIME_SUBTRACT(duration, start);
	ms = INSTR_TIME_GET_MILLISEC(duration);
	if (ms > sw->longest_ms)
		sw->longest_ms = ms;
	/* a batch is meant to take a fraction of a second: say when it did not */
	if (sw->own_xacts && ms >= 1000.0)
		ereport(LOG,
				(errmsg("consent %s: database \"%s\": a transaction took %.0f ms",
						sw->leader != 0 ? "sweep helper" : "sweeper", sw->dbname, ms),
				 errdetail("Statement: %s", sql)));
	return true;
}

/* Count one batch: in shared memory at once when it committed. */
static void
sweep_count(Sweep *sw, const char *step, int64 expired, int64 warned, int64 pruned)
{
	sw->expired += expired;
	sw->warned += warned;
	sw->pruned += pruned;
	if (sw->own_xacts)
		slot_add(sw->slot, expired, warned, pruned, sw->longest_ms, sw->leader != 0);
	elog(DEBUG1, "consent sweeper: database \"%s\": %s batch: %lld expired, %lld warned, %lld pruned",
		 sw->dbname, step, (long long) expired, (long long) warned, (long long) pruned);
}

static Interval *
seconds_interval(int secs)
{
	Interval   *iv = palloc0(sizeof(Interval));

	iv->time = (int64) secs * USECS_PER_SEC;
	return iv;
}

/*
 * Seal the audit chain, when the audit trail is installed.  A seal must see
 * what concurrent writers commit, so only under READ COMMITTED (a
 * consent.sweep() called in a REPEATABLE READ transaction skips it).  The
 * seal's transaction counts in longest_batch_ms like a batch.
 */
static bool
sweep_seal(Sweep *sw)
{
	Datum		out[1];
	bool		nulls[1];

	if (IsolationUsesXactSnapshot())
		return true;
	if (sw->can_seal == 0)
	{
		if (!sweep_batch(sw, "SELECT pg_catalog.to_regprocedure('consent.seal()') IS NOT NULL",
						 0, NULL, NULL, out, nulls, 1))
			return false;
		sw->can_seal = DatumGetBool(out[0]) ? 1 : -1;
	}
	if (sw->can_seal < 0)
		return true;
	if (!sweep_batch(sw, "SELECT FROM consent.seal()", 0, NULL, NULL, out, nulls, 0))
		return false;
	sw->sealed = true;
	if (sw->own_xacts)
		slot_add(sw->slot, 0, 0, 0, sw->longest_ms, false);
	return true;
}

/*
 * A seal reads every event since the previous one: one at the end of a
 * sweep of a million expiries took seconds, in one transaction.  So the
 * background sweeper also seals during a long expiry step, after every
 * SEAL_EVERY_BATCHES batches' worth of expiries (its helpers' included).
 */
static bool
maybe_seal(Sweep *sw)
{
	int64		total;

	if (!sw->own_xacts || sw->leader != 0)
		return true;
	total = sw->expired + slot_helped(sw->slot);
	if (total - sw->sealed_at < (int64) sw->batch_size * SEAL_EVERY_BATCHES)
		return true;
	if (!sweep_seal(sw))
		return false;
	sw->sealed_at = total;
	return true;
}

/*
 * One batch of expiries of part "part" of "parts" (by subject), from
 * *after on.  Sets *seen to the rows it locked, *expired to those it
 * expired, and moves *after to the latest expiry it locked; returns false
 * when the sweep must stop.
 */
static bool
expire_one(Sweep *sw, int parts, int part, TimestampTz *after, int *seen, int *expired)
{
	Oid			types[4] = {INT4OID, INT4OID, INT4OID, TIMESTAMPTZOID};
	Datum		args[4];
	Datum		out[3];
	bool		nulls[3];

	args[0] = Int32GetDatum(sw->batch_size);
	args[1] = Int32GetDatum(parts);
	args[2] = Int32GetDatum(part);
	args[3] = TimestampTzGetDatum(*after);
	if (!sweep_batch(sw, "SELECT expired, last_expires_at, seen FROM consent.expire_batch($1, $2, $3, $4)",
					 4, types, args, out, nulls, 3))
		return false;
	*expired = DatumGetInt32(out[0]);
	if (!nulls[1])
		*after = DatumGetTimestampTz(out[1]);
	*seen = DatumGetInt32(out[2]);
	sweep_count(sw, "expiry", *expired, 0, 0);
	return maybe_seal(sw);
}

/*
 * Expire part "part" of "parts" until a batch locks fewer rows than the
 * batch size.  (A batch can expire fewer rows than it locked: a row changed
 * and committed by someone else between the batch's snapshot and its lock
 * is locked in its new version, which the batch's UPDATE does not see.
 * Such a row is behind "after" from then on; the last pass of a sweep with
 * helpers, or the next sweep, takes it.)
 */
static bool
expire_part(Sweep *sw, int parts, int part)
{
	TimestampTz after = DT_NOBEGIN;
	int			seen;
	int			k;

	do
	{
		TimestampTz before = after;

		if (!expire_one(sw, parts, part, &after, &seen, &k))
			return false;
		/* rows it locks and cannot expire (a user's trigger, say): stop */
		if (k == 0 && after == before)
			break;
	} while (seen >= sw->batch_size);
	return true;
}

/*
 * consent.sweep_part(subject, parts, part): is the subject in part "part"
 * (0 to parts - 1) of the sweep?  A hash of the subject's bytes, so every
 * record of one person is in the same part.  In C, rather than the same
 * expression in SQL, for the planner: it estimates an opaque boolean
 * function to keep a third of the rows, near enough to the truth
 * (1 / parts) to keep the batch on the expiry index, where an equality
 * (estimated at 1 / 200) made it read and sort the whole table.
 */
Datum
consent_sweep_part(PG_FUNCTION_ARGS)
{
	text	   *subject = PG_GETARG_TEXT_PP(0);
	int32		parts = PG_GETARG_INT32(1);
	int32		part = PG_GETARG_INT32(2);
	uint32		h;

	if (parts < 1 || part < 0 || part >= parts)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("part %d of %d parts does not exist", part, parts),
				 errhint("Parts are numbered from 0 to parts - 1.")));
	h = DatumGetUInt32(hash_any((const unsigned char *) VARDATA_ANY(subject),
								VARSIZE_ANY_EXHDR(subject)));
	PG_RETURN_BOOL(h % (uint32) parts == (uint32) part);
}

/* What a sweep helper is told (bgw_extra). */
typedef struct HelperArgs
{
	pid_t		leader;
	int			parts;
	int			part;
	int			batch_size;
} HelperArgs;

StaticAssertDecl(sizeof(HelperArgs) <= BGW_EXTRALEN, "HelperArgs must fit into bgw_extra");

static BackgroundWorkerHandle *
launch_helper(Sweep *sw, int parts, int part)
{
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;
	HelperArgs	args;

	consent_worker_init(&bgw, "consent_sweep_helper_main", "consent sweep helper");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "consent sweep helper for database \"%s\"", sw->dbname);
	bgw.bgw_main_arg = ObjectIdGetDatum(MyDatabaseId);
	bgw.bgw_notify_pid = MyProcPid;
	memset(&args, 0, sizeof(args));
	args.leader = MyProcPid;
	args.parts = parts;
	args.part = part;
	args.batch_size = sw->batch_size;
	memcpy(bgw.bgw_extra, &args, sizeof(args));

	if (!RegisterDynamicBackgroundWorker(&bgw, &handle))
		return NULL;
	return handle;
}

/* The sweeper's helpers, for sweeper_exit() to stop on any exit. */
static BackgroundWorkerHandle **helper_handles = NULL;
static int	helper_handles_n = 0;

static void
terminate_helpers(BackgroundWorkerHandle **handles, int n)
{
	for (int i = 1; i < n; i++)
		if (handles[i] != NULL)
			TerminateBackgroundWorker(handles[i]);
}

/*
 * Wait until every helper has exited, sealing as their expiries add up.
 * Stop them instead, without waiting, when the sweep is stopping ("ok"
 * false) or someone wants the database to itself: a helper that is still
 * connecting waits for the lock DROP DATABASE holds and is not yet counted
 * as a user of the database, so it would never leave by itself and DROP
 * DATABASE would wait for this sweeper in vain.  A helper stopped in a
 * batch rolls that batch back; the next sweep does it.  Returns whether
 * the sweep goes on.
 */
static bool
wait_helpers(Sweep *sw, BackgroundWorkerHandle **handles, bool ok)
{
	int			n = sw->helpers + 1;

	for (;;)
	{
		int			alive = 0;
		bool		wanted;

		for (int i = 1; i < n; i++)
		{
			pid_t		pid;

			if (handles[i] == NULL)
				continue;
			switch (GetBackgroundWorkerPid(handles[i], &pid))
			{
				case BGWH_STOPPED:
					pfree(handles[i]);
					handles[i] = NULL;
					break;
				case BGWH_POSTMASTER_DIED:
					proc_exit(1);
					break;
				default:
					alive++;
					break;
			}
		}
		if (alive == 0)
			return ok;
		if (!ok)
		{
			terminate_helpers(handles, n);
			return false;
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100, WAIT_EVENT_BGWORKER_SHUTDOWN);
		ResetLatch(MyLatch);
		worker_poll();

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		wanted = database_wanted();
		CommitTransactionCommand();
		if (wanted)
		{
			sw->stopped = "another session is waiting for exclusive use of the database";
			ok = false;
		}
		else if (!maybe_seal(sw))
			ok = false;
	}
}

/*
 * The expiry step.  A background sweeper that finds a backlog (a full
 * first batch) and may use more processes (consent.sweep_workers) starts
 * helpers and takes part 0 of the subjects itself, and the parts of
 * helpers that could not be started; then it waits for the helpers and
 * makes a last pass over all parts.  Helpers need the status slot, which
 * is where they add their counts.
 */
static bool
expire_step(Sweep *sw)
{
	int			workers = consent_sweep_workers;
	BackgroundWorkerHandle **handles;
	TimestampTz after = DT_NOBEGIN;
	TimestampTz start;
	TimestampTz own_end;
	int			seen;
	int			k;
	bool		ok = true;

	if (!sw->own_xacts || sw->leader != 0 || sw->slot < 0 || workers <= 1)
		return expire_part(sw, 1, 0);

	if (!expire_one(sw, 1, 0, &after, &seen, &k))
		return false;
	if (seen < sw->batch_size)
		return true;

	handles = MemoryContextAllocZero(TopMemoryContext, sizeof(BackgroundWorkerHandle *) * workers);
	helper_handles = handles;
	helper_handles_n = workers;
	for (int i = 1; i < workers; i++)
	{
		handles[i] = launch_helper(sw, workers, i);
		if (handles[i] == NULL)
		{
			ereport(LOG,
					(errmsg("consent sweeper: database \"%s\": no free background worker slot for %d of %d sweep helpers",
							sw->dbname, workers - i, workers - 1),
					 errhint("Raise max_worker_processes, or lower consent.sweep_workers; the sweeper does their part itself.")));
			break;
		}
		sw->helpers++;
	}

	start = GetCurrentTimestamp();
	ok = expire_part(sw, workers, 0);
	for (int i = sw->helpers + 1; i < workers && ok; i++)
		ok = expire_part(sw, workers, i);
	own_end = GetCurrentTimestamp();
	sw->own_part_ms = TimestampDifferenceMilliseconds(start, own_end);

	ok = wait_helpers(sw, handles, ok);
	sw->waited_ms = TimestampDifferenceMilliseconds(own_end, GetCurrentTimestamp());
	helper_handles = NULL;
	helper_handles_n = 0;
	pfree(handles);

	/* what helpers left (stopped early, never started) or rows then locked */
	if (ok)
		ok = expire_part(sw, 1, 0);
	return ok;
}

static void
sweep_run(Sweep *sw)
{
	int			n = sw->batch_size;
	Oid			types[3];
	Datum		args[3];
	Datum		out[3];
	bool		nulls[3];

	/* 1. expire */
	if (!expire_step(sw))
		return;

	types[0] = INT4OID;
	args[0] = Int32GetDatum(n);

	/* 2. warn, resuming each batch where the previous one stopped */
	if (consent_warn_before > 0)
	{
		TimestampTz after = DT_NOBEGIN;

		types[1] = INTERVALOID;
		types[2] = TIMESTAMPTZOID;
		args[1] = IntervalPGetDatum(seconds_interval(consent_warn_before));
		for (;;)
		{
			int			warned,
						seen;

			args[2] = TimestampTzGetDatum(after);
			if (!sweep_batch(sw, "SELECT warned, seen, last_expires_at FROM consent.warn_batch($1, $2, $3)",
							 3, types, args, out, nulls, 3))
				return;
			warned = DatumGetInt32(out[0]);
			seen = DatumGetInt32(out[1]);
			sweep_count(sw, "warning", 0, warned, 0);
			if (seen < n || nulls[2])
				break;
			after = DatumGetTimestampTz(out[2]);
		}
	}

	/* 3. prune the outbox and forget warnings whose expiry has passed */
	if (consent_outbox_retention >= 0)
	{
		types[1] = INTERVALOID;
		args[1] = IntervalPGetDatum(seconds_interval(consent_outbox_retention));
		for (;;)
		{
			int			pruned,
						forgotten;

			if (!sweep_batch(sw, "SELECT pruned, forgotten FROM consent.prune_batch($1, $2)",
							 2, types, args, out, nulls, 2))
				return;
			pruned = DatumGetInt32(out[0]);
			forgotten = DatumGetInt32(out[1]);
			sweep_count(sw, "pruning", 0, 0, pruned);
			if (pruned < n && forgotten < n)
				break;
		}
	}

	/* 4. seal the audit chain */
	(void) sweep_seal(sw);
}

/* The message of the error being handled, for the status view. */
static char *
current_error_message(void)
{
	ErrorData  *edata;
	char	   *msg;

	edata = CopyErrorData();
	msg = pstrdup(edata->message ? edata->message : "unknown error");
	FreeErrorData(edata);
	return msg;
}

/* ----------------------------------------------------------------
 * consent.sweep(): one sweep in the caller's transaction
 * ----------------------------------------------------------------
 */
Datum
consent_sweep(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	Sweep		sw;
	bool		first;
	MemoryContext oldcxt = CurrentMemoryContext;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	memset(&sw, 0, sizeof(sw));
	sw.own_xacts = false;
	sw.batch_size = consent_sweep_batch_size;
	sw.dbname = get_database_name(MyDatabaseId);

	if (!sweep_lock(false))
	{
		ereport(NOTICE,
				(errmsg("another sweep is running in database \"%s\", nothing done", sw.dbname)));
	}
	else
	{
		sw.slot = slot_sweep_begin(false, &first);
		SPI_connect();
		PG_TRY();
		{
			sweep_run(&sw);
		}
		PG_CATCH();
		{
			char	   *msg;

			MemoryContextSwitchTo(oldcxt);
			msg = current_error_message();
			slot_sweep_end(sw.slot, false, msg);
			PG_RE_THROW();
		}
		PG_END_TRY();
		SPI_finish();
		slot_add(sw.slot, sw.expired, sw.warned, sw.pruned, sw.longest_ms, false);
		slot_sweep_end(sw.slot, true, NULL);
		elog(DEBUG1, "consent.sweep(): database \"%s\": %lld expired, %lld warned, %lld pruned",
			 sw.dbname, (long long) sw.expired, (long long) sw.warned, (long long) sw.pruned);
	}

	values[0] = Int64GetDatum(sw.expired);
	values[1] = Int64GetDatum(sw.warned);
	values[2] = Int64GetDatum(sw.pruned);
	values[3] = BoolGetDatum(sw.sealed);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

/* ----------------------------------------------------------------
 * The sweeper: one sweep of one database, then exit
 * ----------------------------------------------------------------
 */
static int	my_slot = -1;

/*
 * In a worker's PG_CATCH: log the error, end the transaction; returns the
 * error's message, in TopMemoryContext.  Interrupts stay held: the caller
 * exits.
 */
static char *
worker_catch(void)
{
	char	   *msg;

	HOLD_INTERRUPTS();
	MemoryContextSwitchTo(TopMemoryContext);
	msg = current_error_message();
	EmitErrorReport();
	FlushErrorState();
	AbortOutOfAnyTransaction();
	return msg;
}

/*
 * Start of a sweeper or a sweep helper: signals, the connection to its
 * database, the settings its batches rely on.
 */
static void
sweep_process_start(Oid datid, const char *appname)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnectionByOid(datid, InvalidOid, 0);
	pgstat_report_appname(appname);
	/* helpers too: the same actor in the records and the audit trail */
	SetConfigOption("consent.actor", "consent sweeper", PGC_USERSET, PGC_S_SESSION);

	/*
	 * A batch lost in a crash is done again by the next sweep, whole (its
	 * expiries, audit and outbox rows commit together), so a sweep need not
	 * wait for each commit to reach disk.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION);
	/* batches rely on READ COMMITTED (SKIP LOCKED, rechecks, the seal) */
	SetConfigOption("default_transaction_isolation", "read committed", PGC_USERSET, PGC_S_SESSION);
	/* a per-database lock_timeout must not fail a seal waiting for a batch */
	SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
}

/* On any exit, the slot no longer names this process. */
static void
sweeper_exit(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	/* helpers must not go on without their sweeper (an error, SIGTERM) */
	if (helper_handles != NULL)
		terminate_helpers(helper_handles, helper_handles_n);

	if (my_slot >= 0 && sweeper_shared != NULL)
	{
		LWLockAcquire(sweeper_shared->lock, LW_EXCLUSIVE);
		if (sweeper_shared->slots[my_slot].pid == MyProcPid)
			sweeper_shared->slots[my_slot].pid = 0;
		LWLockRelease(sweeper_shared->lock);
	}
}

void
consent_sweeper_main(Datum main_arg)
{
	Oid			datid = DatumGetObjectId(main_arg);
	bool		in_recovery;
	bool		installed;
	bool		locked = false;
	bool		first;
	char	   *dbname;
	Sweep		sw;
	TimestampTz start;
	int64		helped;

	sweep_process_start(datid, "consent sweeper");

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	in_recovery = RecoveryInProgress();
	installed = OidIsValid(get_extension_oid("consent", true));
	dbname = MemoryContextStrdup(TopMemoryContext, get_database_name(MyDatabaseId));
	if (!in_recovery && installed)
		locked = sweep_lock(true);
	CommitTransactionCommand();

	if (in_recovery)
	{
		elog(DEBUG1, "consent sweeper: the server is in recovery, nothing to do");
		proc_exit(0);
	}
	if (!installed)
	{
		if (slot_forget(datid))
			ereport(LOG,
					(errmsg("consent sweeper: extension \"consent\" is no longer installed in database \"%s\", sweeping it stops",
							dbname)));
		else
			elog(DEBUG1, "consent sweeper: extension \"consent\" is not installed in database \"%s\"", dbname);
		proc_exit(0);
	}
	if (!locked)
	{
		elog(DEBUG1, "consent sweeper: another sweep holds database \"%s\", skipping this interval", dbname);
		proc_exit(0);
	}

	before_shmem_exit(sweeper_exit, (Datum) 0);
	my_slot = slot_sweep_begin(true, &first);
	if (first)
		ereport(LOG,
				(errmsg("consent sweeper: sweeping database \"%s\" every %d s",
						dbname, consent_sweep_interval)));

	memset(&sw, 0, sizeof(sw));
	sw.own_xacts = true;
	sw.slot = my_slot;
	sw.dbname = dbname;
	sw.batch_size = consent_sweep_batch_size;
	start = GetCurrentTimestamp();

	PG_TRY();
	{
		sweep_run(&sw);
	}
	PG_CATCH();
	{
		char	   *msg = worker_catch();

		slot_sweep_end(my_slot, false, msg);
		ereport(LOG,
				(errmsg("consent sweeper: sweep of database \"%s\" failed; the next interval tries again",
						dbname)));
		proc_exit(1);
	}
	PG_END_TRY();

	slot_sweep_end(my_slot, sw.stopped == NULL, NULL);
	helped = slot_helped(my_slot);
	if (sw.stopped)
		ereport(LOG,
				(errmsg("consent sweeper: sweep of database \"%s\" stopped early: %s",
						dbname, sw.stopped),
				 errdetail("%lld records expired, %lld warnings sent, %lld outbox rows pruned before it stopped.",
						   (long long) (sw.expired + helped), (long long) sw.warned, (long long) sw.pruned)));
	else if (sw.helpers > 0)
		ereport(LOG,
				(errmsg("consent sweeper: database \"%s\": %lld records expired, %lld warnings sent, %lld outbox rows pruned in %ld ms",
						dbname, (long long) (sw.expired + helped), (long long) sw.warned, (long long) sw.pruned,
						TimestampDifferenceMilliseconds(start, GetCurrentTimestamp())),
				 errdetail_plural("%d sweep helper expired %lld of the records; the sweeper's own part took %ld ms, then it waited %ld ms for its helper.",
								  "%d sweep helpers expired %lld of the records; the sweeper's own part took %ld ms, then it waited %ld ms for its helpers.",
								  sw.helpers, sw.helpers, (long long) helped, sw.own_part_ms, sw.waited_ms)));
	else
		ereport(sw.expired + sw.warned + sw.pruned > 0 ? LOG : DEBUG1,
				(errmsg("consent sweeper: database \"%s\": %lld records expired, %lld warnings sent, %lld outbox rows pruned in %ld ms",
						dbname, (long long) sw.expired, (long long) sw.warned, (long long) sw.pruned,
						TimestampDifferenceMilliseconds(start, GetCurrentTimestamp()))));
	proc_exit(0);
}

/* ----------------------------------------------------------------
 * A sweep helper: expires one part of a sweeper's backlog, then exits
 * ----------------------------------------------------------------
 */
void
consent_sweep_helper_main(Datum main_arg)
{
	Oid			datid = DatumGetObjectId(main_arg);
	HelperArgs	args;
	Sweep		sw;
	char	   *dbname;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));

	sweep_process_start(datid, "consent sweep helper");

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	dbname = MemoryContextStrdup(TopMemoryContext, get_database_name(MyDatabaseId));
	CommitTransactionCommand();

	memset(&sw, 0, sizeof(sw));
	sw.own_xacts = true;
	sw.leader = args.leader;
	sw.dbname = dbname;
	sw.batch_size = args.batch_size;
	sw.slot = -1;
	if (sweeper_shared != NULL)
	{
		LWLockAcquire(sweeper_shared->lock, LW_SHARED);
		sw.slot = slot_find(MyDatabaseId);
		LWLockRelease(sweeper_shared->lock);
	}

	PG_TRY();
	{
		(void) expire_part(&sw, args.parts, args.part);
	}
	PG_CATCH();
	{
		char	   *msg = worker_catch();

		slot_note_error(sw.slot, msg);
		ereport(LOG,
				(errmsg("consent sweep helper: database \"%s\": part %d of %d failed; the sweeper takes it over",
						dbname, args.part + 1, args.parts)));
		proc_exit(1);
	}
	PG_END_TRY();

	elog(sw.stopped ? LOG : DEBUG1,
		 "consent sweep helper: database \"%s\": part %d of %d: %lld records expired%s%s",
		 dbname, args.part + 1, args.parts, (long long) sw.expired,
		 sw.stopped ? ", stopped early: " : "", sw.stopped ? sw.stopped : "");
	proc_exit(0);
}

/* ----------------------------------------------------------------
 * The launcher
 * ----------------------------------------------------------------
 */
typedef struct Target
{
	Oid			datid;
	char		name[NAMEDATALEN];
} Target;

typedef struct Running
{
	Oid			datid;
	BackgroundWorkerHandle *handle;
} Running;

static List *running = NIL;		/* of Running *, in TopMemoryContext */
static bool problems_logged = false;	/* since the settings last changed */

static bool
is_running(Oid datid)
{
	ListCell   *lc;

	foreach(lc, running)
		if (((Running *) lfirst(lc))->datid == datid)
			return true;
	return false;
}

/* Forget sweepers that have exited. */
static void
reap_sweepers(void)
{
	ListCell   *lc;

	foreach(lc, running)
	{
		Running    *r = (Running *) lfirst(lc);
		pid_t		pid;
		BgwHandleStatus st = GetBackgroundWorkerPid(r->handle, &pid);

		if (st == BGWH_POSTMASTER_DIED)
			proc_exit(1);
		if (st == BGWH_STOPPED)
		{
			pfree(r->handle);
			pfree(r);
			running = foreach_delete_current(running, lc);
		}
	}
}

/*
 * The databases to sweep now, read from pg_database (a shared catalog, so
 * the launcher needs no database connection).  Also forgets the counters of
 * databases that no longer exist.  Problems with consent.databases are
 * logged once per change of the settings.
 */
static List *
sweep_targets(MemoryContext cxt)
{
	char	   *raw;
	List	   *names = NIL;
	List	   *targets = NIL;
	List	   *existing = NIL;
	bool		all = false;
	bool	   *found;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	MemoryContext old;
	ListCell   *lc;
	int			i;

	old = MemoryContextSwitchTo(cxt);
	raw = pstrdup(consent_databases ? consent_databases : "");
	if (!SplitGUCList(raw, ',', &names))
		names = NIL;			/* the check hook prevents this */
	if (list_length(names) == 1 && strcmp((char *) linitial(names), "*") == 0)
		all = true;
	found = palloc0(sizeof(bool) * (list_length(names) + 1));
	MemoryContextSwitchTo(old);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		const char *datname = NameStr(db->datname);
		bool		listed = all;
		const char *problem = NULL;

		old = MemoryContextSwitchTo(cxt);
		existing = lappend_oid(existing, db->oid);
		MemoryContextSwitchTo(old);

		i = 0;
		foreach(lc, names)
		{
			if (!all && strcmp((char *) lfirst(lc), datname) == 0)
			{
				listed = true;
				found[i] = true;
			}
			i++;
		}
		if (!listed)
			continue;

		if (database_is_invalid_form(db))
			problem = "it is invalid (an interrupted DROP DATABASE)";
		else if (db->datistemplate)
			problem = "it is a template";
		else if (!db->datallowconn)
			problem = "it does not allow connections";
		if (problem)
		{
			if (!all && !problems_logged)
				ereport(LOG,
						(errmsg("consent launcher: database \"%s\" named in consent.databases is not swept: %s",
								datname, problem)));
			continue;
		}

		old = MemoryContextSwitchTo(cxt);
		{
			Target	   *t = palloc(sizeof(Target));

			t->datid = db->oid;
			strlcpy(t->name, datname, NAMEDATALEN);
			targets = lappend(targets, t);
		}
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();

	if (!all && !problems_logged)
	{
		i = 0;
		foreach(lc, names)
		{
			if (!found[i])
				ereport(LOG,
						(errmsg("consent launcher: database \"%s\" named in consent.databases does not exist",
								(char *) lfirst(lc)),
						 errhint("Correct consent.databases and reload the configuration; the launcher waits.")));
			i++;
		}
	}
	problems_logged = true;

	/* forget the counters of dropped databases */
	if (sweeper_shared != NULL)
	{
		LWLockAcquire(sweeper_shared->lock, LW_EXCLUSIVE);
		for (i = 0; i < SWEEPER_SLOTS; i++)
		{
			SweeperSlot *s = &sweeper_shared->slots[i];

			if (OidIsValid(s->datid) && s->pid == 0 && !list_member_oid(existing, s->datid))
				memset(s, 0, sizeof(SweeperSlot));
		}
		LWLockRelease(sweeper_shared->lock);
	}

	return targets;
}

static bool
launch_sweeper(const Target *t)
{
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;
	Running    *r;

	consent_worker_init(&bgw, "consent_sweeper_main", "consent sweeper");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "consent sweeper for database \"%s\"", t->name);
	bgw.bgw_main_arg = ObjectIdGetDatum(t->datid);
	bgw.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&bgw, &handle))
		return false;

	r = MemoryContextAlloc(TopMemoryContext, sizeof(Running));
	r->datid = t->datid;
	r->handle = handle;			/* allocated in TopMemoryContext too */
	running = lappend(running, r);
	return true;
}

void
consent_launcher_main(Datum main_arg pg_attribute_unused())
{
	MemoryContext cycle_cxt;
	List	   *pending = NIL;	/* Target * due in this cycle, not started */
	TimestampTz last_cycle = 0;
	TimestampTz next_cycle;
	bool		slots_logged = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	/* No database: pg_database is all the launcher reads. */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	cycle_cxt = AllocSetContextCreate(TopMemoryContext, "consent launcher cycle",
									  ALLOCSET_DEFAULT_SIZES);

	ereport(LOG,
			(errmsg("consent launcher started"),
			 errdetail("consent.databases = '%s', consent.sweep_interval = %d s, consent.max_sweepers = %d.",
					   consent_databases, consent_sweep_interval, consent_max_sweepers)));

	next_cycle = GetCurrentTimestamp();
	while (!ShutdownRequestPending)
	{
		TimestampTz now;
		long		timeout;

		if (ConfigReloadPending)
		{
			char	   *old_databases = pstrdup(consent_databases);
			int			old_interval = consent_sweep_interval;
			int			old_max = consent_max_sweepers;

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (strcmp(old_databases, consent_databases) != 0 ||
				old_interval != consent_sweep_interval ||
				old_max != consent_max_sweepers)
			{
				ereport(LOG,
						(errmsg("consent launcher: settings changed"),
						 errdetail("consent.databases = '%s', consent.sweep_interval = %d s, consent.max_sweepers = %d.",
								   consent_databases, consent_sweep_interval, consent_max_sweepers)));
				problems_logged = false;
				slots_logged = false;
				/* the next cycle is due one (new) interval after the last */
				next_cycle = last_cycle + (int64) consent_sweep_interval * USECS_PER_SEC;
				if (strcmp(old_databases, consent_databases) != 0)
					next_cycle = GetCurrentTimestamp();
			}
			pfree(old_databases);
		}

		reap_sweepers();

		now = GetCurrentTimestamp();
		if (now >= next_cycle && !RecoveryInProgress())
		{
			ListCell   *lc;

			MemoryContextReset(cycle_cxt);
			pending = NIL;
			foreach(lc, sweep_targets(cycle_cxt))
			{
				Target	   *t = (Target *) lfirst(lc);

				/* a sweep still running from the last cycle goes on */
				if (!is_running(t->datid))
					pending = lappend(pending, t);
			}
			last_cycle = now;
			next_cycle = now + (int64) consent_sweep_interval * USECS_PER_SEC;
		}

		while (pending != NIL && list_length(running) < consent_max_sweepers)
		{
			Target	   *t = (Target *) linitial(pending);

			if (!is_running(t->datid) && !launch_sweeper(t))
			{
				if (!slots_logged)
					ereport(LOG,
							(errmsg("consent launcher: no free background worker slot for a sweeper"),
							 errhint("Raise max_worker_processes; the launcher retries every second.")));
				slots_logged = true;
				break;
			}
			pending = list_delete_first(pending);
		}

		now = GetCurrentTimestamp();
		timeout = TimestampDifferenceMilliseconds(now, next_cycle);
		if (pending != NIL)
			timeout = Min(timeout, 1000);	/* retry a start that found no slot */
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(timeout, 1), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}

	ereport(LOG, (errmsg("consent launcher shutting down")));

	/*
	 * Exit code 1: the postmaster starts the launcher again after
	 * bgw_restart_time, unless the server is shutting down.  So a launcher
	 * terminated by pg_terminate_backend() comes back.
	 */
	proc_exit(1);
}

/* ----------------------------------------------------------------
 * consent.sweeper_stats(): the counters, for consent.sweeper_status
 * ----------------------------------------------------------------
 */
Datum
consent_sweeper_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SweeperSlot *copy;
	int			n = 0;

	InitMaterializedSRF(fcinfo, 0);
	if (sweeper_shared == NULL)
		PG_RETURN_VOID();

	copy = palloc(sizeof(SweeperSlot) * SWEEPER_SLOTS);
	LWLockAcquire(sweeper_shared->lock, LW_SHARED);
	for (int i = 0; i < SWEEPER_SLOTS; i++)
		if (OidIsValid(sweeper_shared->slots[i].datid))
			copy[n++] = sweeper_shared->slots[i];
	LWLockRelease(sweeper_shared->lock);

	for (int i = 0; i < n; i++)
	{
		SweeperSlot *s = &copy[i];
		Datum		values[15];
		bool		nulls[15];
		int			c = 0;

		memset(nulls, 0, sizeof(nulls));
		values[c++] = ObjectIdGetDatum(s->datid);
		nulls[c] = (s->pid == 0);
		values[c++] = Int32GetDatum(s->pid);
		values[c++] = CStringGetTextDatum(s->pid != 0 ? "sweeping" : "idle");
		values[c++] = Int64GetDatum(s->sweeps);
		nulls[c] = (s->last_start == 0);
		values[c++] = TimestampTzGetDatum(s->last_start);
		nulls[c] = (s->last_end == 0);
		values[c++] = TimestampTzGetDatum(s->last_end);
		values[c++] = Int64GetDatum(s->expired);
		values[c++] = Int64GetDatum(s->warned);
		values[c++] = Int64GetDatum(s->pruned);
		values[c++] = Int64GetDatum(s->last_expired);
		values[c++] = Int64GetDatum(s->last_warned);
		values[c++] = Int64GetDatum(s->last_pruned);
		values[c++] = Float8GetDatum(s->longest_batch_ms);
		nulls[c] = (s->last_error[0] == '\0');
		values[c++] = CStringGetTextDatum(s->last_error);
		nulls[c] = (s->last_error_at == 0);
		values[c++] = TimestampTzGetDatum(s->last_error_at);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}

/* ----------------------------------------------------------------
 * The outbox trigger
 * ----------------------------------------------------------------
 */

/* Attribute numbers of consent.outbox and consent.records. */
typedef struct OutboxAttnums
{
	AttrNumber	o_id,
				o_event,
				o_subject,
				o_purpose,
				o_status,
				o_previous_status,
				o_expires_at,
				o_at,
				o_event_id,
				o_payload,
				o_attempts;
	AttrNumber	r_subject,
				r_purpose_id,
				r_status,
				r_effective_at,
				r_expires_at,
				r_notice_key,
				r_notice_version,
				r_method,
				r_source;
} OutboxAttnums;

/* What one statement's firings share (in fn_extra). */
typedef struct OutboxState
{
	MemoryContext rowcxt;		/* reset after each row */

	Oid			outbox;
	Oid			outbox_seq;
	int			o_natts;

	/*
	 * What inserting into consent.outbox needs, built once per statement:
	 * its indexes' descriptions (a partial index's predicate compiled once),
	 * an executor state for them, and a slot.  Only memory: the relations
	 * themselves are opened and closed for each row, so that nothing here
	 * needs closing when the statement ends, or fails.
	 */
	EState	   *estate;
	TupleTableSlot *slot;
	int			nindexes;
	Oid		   *index_oids;
	IndexInfo **index_info;
	Relation   *index_rels;
	OutboxAttnums a;			/* a copy of the backend's, see below */

	Oid			purposes;
	Oid			purposes_pkey;
	AttrNumber	p_id,
				p_key;
	Oid			key_output;
	HTAB	   *purpose_keys;	/* purpose id -> key */

	bool		has_last_event_id;
	FmgrInfo	last_event_id;

	bool		restoring;		/* the statement is COPY FROM into records */

	int			nlabels;
	Oid			label_oid[8];
	char	   *label[8];

	/* the last two timestamps written as JSON, and their text */
	TimestampTz ts_value[2];
	char		ts_text[2][MAXDATELEN + 1];
	int			ts_next;
} OutboxState;

typedef struct PurposeKeyEntry
{
	int32		id;
	char	   *key;
} PurposeKeyEntry;

/*
 * Is the statement being run a COPY FROM into relation "relid"?  That is
 * how pg_dump's output (plain, or through pg_restore) loads consent.records
 * back, and a restore is not a change of anyone's consent: it must neither
 * announce every record again nor take outbox ids that the restored outbox
 * rows (loaded before the sequence position is set) already use.
 */
static bool
copy_into(Oid relid)
{
	ListCell   *lc;

	if (ActivePortal == NULL || ActivePortal->commandTag != CMDTAG_COPY)
		return false;
	foreach(lc, ActivePortal->stmts)
	{
		PlannedStmt *ps = lfirst_node(PlannedStmt, lc);
		CopyStmt   *cs;

		if (ps->commandType != CMD_UTILITY || !IsA(ps->utilityStmt, CopyStmt))
			continue;
		cs = (CopyStmt *) ps->utilityStmt;
		if (cs->is_from && cs->relation != NULL &&
			RangeVarGetRelid(cs->relation, NoLock, true) == relid)
			return true;
	}
	return false;
}

/*
 * The catalog facts the outbox trigger needs, kept per backend: looking
 * them up for every statement (a pg_depend scan for the sequence, twenty
 * attribute numbers, a function lookup) cost about as much as the rest of
 * the trigger for a one-row statement, which is what every recording call
 * is.  Dropped by any invalidation of the tables involved or of pg_proc.
 */
typedef struct OutboxCatalog
{
	bool		valid;
	Oid			dbid;
	Oid			records;
	Oid			outbox;
	Oid			outbox_seq;
	OutboxAttnums a;
	Oid			purposes;
	Oid			purposes_pkey;
	AttrNumber	p_id,
				p_key;
	Oid			key_output;
	Oid			last_event_id;	/* InvalidOid: the audit trail is absent */
} OutboxCatalog;

static OutboxCatalog outbox_catalog;

static bool outbox_callbacks_registered = false;

static void
outbox_relcache_callback(Datum arg pg_attribute_unused(), Oid relid)
{
	if (relid == InvalidOid || relid == outbox_catalog.records ||
		relid == outbox_catalog.outbox || relid == outbox_catalog.purposes ||
		relid == outbox_catalog.outbox_seq)
		outbox_catalog.valid = false;
}

static void
outbox_syscache_callback(Datum arg pg_attribute_unused(),
						 int cacheid pg_attribute_unused(),
						 uint32 hashvalue pg_attribute_unused())
{
	outbox_catalog.valid = false;
}

static void
outbox_catalog_load(Oid nsp, Oid rid)
{
	List	   *seqs;
	Oid			fn;
	bool		varlena;
	Oid			outbox;

	if (outbox_catalog.valid && outbox_catalog.dbid == MyDatabaseId &&
		outbox_catalog.records == rid)
		return;
	if (!outbox_callbacks_registered)
	{
		CacheRegisterRelcacheCallback(outbox_relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(PROCOID, outbox_syscache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, outbox_syscache_callback, (Datum) 0);
		outbox_callbacks_registered = true;
	}
	outbox_catalog.valid = false;

	outbox = consent_relid(nsp, "outbox");
	seqs = getOwnedSequences(outbox);
	if (seqs == NIL)
		elog(ERROR, "relation \"outbox\" owns no sequence");
	outbox_catalog.outbox = outbox;
	outbox_catalog.outbox_seq = linitial_oid(seqs);
	outbox_catalog.a.o_id = consent_attnum(outbox, "id");
	outbox_catalog.a.o_event = consent_attnum(outbox, "event");
	outbox_catalog.a.o_subject = consent_attnum(outbox, "subject");
	outbox_catalog.a.o_purpose = consent_attnum(outbox, "purpose");
	outbox_catalog.a.o_status = consent_attnum(outbox, "status");
	outbox_catalog.a.o_previous_status = consent_attnum(outbox, "previous_status");
	outbox_catalog.a.o_expires_at = consent_attnum(outbox, "expires_at");
	outbox_catalog.a.o_at = consent_attnum(outbox, "at");
	outbox_catalog.a.o_event_id = consent_attnum(outbox, "event_id");
	outbox_catalog.a.o_payload = consent_attnum(outbox, "payload");
	outbox_catalog.a.o_attempts = consent_attnum(outbox, "attempts");

	outbox_catalog.a.r_subject = consent_attnum(rid, "subject");
	outbox_catalog.a.r_purpose_id = consent_attnum(rid, "purpose_id");
	outbox_catalog.a.r_status = consent_attnum(rid, "status");
	outbox_catalog.a.r_effective_at = consent_attnum(rid, "effective_at");
	outbox_catalog.a.r_expires_at = consent_attnum(rid, "expires_at");
	outbox_catalog.a.r_notice_key = consent_attnum(rid, "notice_key");
	outbox_catalog.a.r_notice_version = consent_attnum(rid, "notice_version");
	outbox_catalog.a.r_method = consent_attnum(rid, "method");
	outbox_catalog.a.r_source = consent_attnum(rid, "source");

	outbox_catalog.purposes = consent_relid(nsp, "purposes");
	outbox_catalog.purposes_pkey = consent_relid(nsp, "purposes_pkey");
	outbox_catalog.p_id = consent_attnum(outbox_catalog.purposes, "id");
	outbox_catalog.p_key = consent_attnum(outbox_catalog.purposes, "key");
	getTypeOutputInfo(get_atttype(outbox_catalog.purposes, outbox_catalog.p_key),
					  &outbox_catalog.key_output, &varlena);

	/* The audit trail's consent.last_event_id(), if installed. */
	fn = LookupFuncName(list_make2(makeString(get_namespace_name(nsp)),
								   makeString("last_event_id")),
						0, NULL, true);
	outbox_catalog.last_event_id =
		(OidIsValid(fn) && get_func_rettype(fn) == INT8OID) ? fn : InvalidOid;

	outbox_catalog.dbid = MyDatabaseId;
	outbox_catalog.records = rid;
	outbox_catalog.valid = true;
}

static OutboxState *
outbox_state(FunctionCallInfo fcinfo, Relation records)
{
	OutboxState *st = (OutboxState *) fcinfo->flinfo->fn_extra;
	MemoryContext cxt = fcinfo->flinfo->fn_mcxt;
	Oid			nsp = RelationGetNamespace(records);
	Oid			rid = RelationGetRelid(records);
	HASHCTL		hctl;

	if (st != NULL)
		return st;

	st = MemoryContextAllocZero(cxt, sizeof(OutboxState));
	st->restoring = copy_into(rid);
	if (st->restoring)
	{
		fcinfo->flinfo->fn_extra = st;
		return st;
	}
	st->rowcxt = AllocSetContextCreate(cxt, "consent outbox row", ALLOCSET_SMALL_SIZES);

	/*
	 * Lock the tables before trusting the cached catalog facts: DDL that
	 * committed while we waited has invalidated them by the time the lock
	 * is granted, and none can commit while we hold it.
	 */
	for (;;)
	{
		outbox_catalog_load(nsp, rid);
		LockRelationOid(outbox_catalog.outbox, RowExclusiveLock);
		LockRelationOid(outbox_catalog.purposes, AccessShareLock);
		if (outbox_catalog.valid)
			break;
	}
	st->outbox = outbox_catalog.outbox;
	st->outbox_seq = outbox_catalog.outbox_seq;
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);
		Relation	rel = table_open(st->outbox, RowExclusiveLock);
		List	   *indexes = RelationGetIndexList(rel);
		ListCell   *lc;
		int			i = 0;

		st->o_natts = RelationGetNumberOfAttributes(rel);
		st->estate = CreateExecutorState();
		/* a copy of the descriptor is not reference-counted: no pin */
		st->slot = MakeSingleTupleTableSlot(CreateTupleDescCopy(RelationGetDescr(rel)),
											&TTSOpsVirtual);
		st->nindexes = list_length(indexes);
		st->index_oids = palloc(sizeof(Oid) * (st->nindexes + 1));
		st->index_info = palloc(sizeof(IndexInfo *) * (st->nindexes + 1));
		st->index_rels = palloc0(sizeof(Relation) * (st->nindexes + 1));
		foreach(lc, indexes)
		{
			Relation	index = index_open(lfirst_oid(lc), RowExclusiveLock);

			st->index_oids[i] = lfirst_oid(lc);
			st->index_info[i] = BuildIndexInfo(index);
			index_close(index, NoLock);
			i++;
		}
		table_close(rel, NoLock);
		MemoryContextSwitchTo(old);
	}
	st->a = outbox_catalog.a;
	st->purposes = outbox_catalog.purposes;
	st->purposes_pkey = outbox_catalog.purposes_pkey;
	st->p_id = outbox_catalog.p_id;
	st->p_key = outbox_catalog.p_key;
	st->key_output = outbox_catalog.key_output;

	memset(&hctl, 0, sizeof(hctl));
	hctl.keysize = sizeof(int32);
	hctl.entrysize = sizeof(PurposeKeyEntry);
	hctl.hcxt = cxt;
	st->purpose_keys = hash_create("consent outbox purpose keys", 16, &hctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	if (OidIsValid(outbox_catalog.last_event_id))
	{
		fmgr_info_cxt(outbox_catalog.last_event_id, &st->last_event_id, cxt);
		st->has_last_event_id = true;
	}

	fcinfo->flinfo->fn_extra = st;
	return st;
}

static const char *
status_label(OutboxState *st, Oid enumval)
{
	HeapTuple	tup;
	char	   *label;

	for (int i = 0; i < st->nlabels; i++)
		if (st->label_oid[i] == enumval)
			return st->label[i];

	tup = SearchSysCache1(ENUMOID, ObjectIdGetDatum(enumval));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for enum value %u", enumval);
	label = MemoryContextStrdup(GetMemoryChunkContext(st),
								NameStr(((Form_pg_enum) GETSTRUCT(tup))->enumlabel));
	ReleaseSysCache(tup);
	if (st->nlabels < (int) lengthof(st->label))
	{
		st->label_oid[st->nlabels] = enumval;
		st->label[st->nlabels] = label;
		st->nlabels++;
	}
	return label;
}

static const char *
purpose_key_of(OutboxState *st, int32 id)
{
	PurposeKeyEntry *e;
	bool		found;
	Relation	rel;
	ScanKeyData skey;
	SysScanDesc scan;
	Snapshot	snap;
	HeapTuple	tup;
	Datum		d;
	bool		isnull;

	e = hash_search(st->purpose_keys, &id, HASH_ENTER, &found);
	if (found)
		return e->key;

	e->key = NULL;
	rel = table_open(st->purposes, AccessShareLock);
	snap = RegisterSnapshot(GetLatestSnapshot());
	ScanKeyInit(&skey, st->p_id, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(id));
	scan = systable_beginscan(rel, st->purposes_pkey, true, snap, 1, &skey);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		d = heap_getattr(tup, st->p_key, RelationGetDescr(rel), &isnull);
		if (!isnull)
			e->key = MemoryContextStrdup(GetMemoryChunkContext(st),
										 OidOutputFunctionCall(st->key_output, d));
	}
	systable_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);

	if (e->key == NULL)
	{
		hash_search(st->purpose_keys, &id, HASH_REMOVE, NULL);
		elog(ERROR, "consent outbox: purpose %d does not exist", id);
	}
	return e->key;
}

/* The outbox event for a change of stored status. */
static const char *
outbox_event(const char *old, const char *new)
{
	if (strcmp(new, "granted") == 0)
		return (old != NULL && strcmp(old, "pending") == 0) ? "confirm" : "grant";
	if (strcmp(new, "pending") == 0)
		return "grant";
	if (strcmp(new, "denied") == 0)
		return "deny";
	if (strcmp(new, "withdrawn") == 0)
		return "withdraw";
	if (strcmp(new, "expired") == 0)
		return "expire";
	elog(ERROR, "consent outbox: unexpected status \"%s\"", new);
	return NULL;				/* keep compiler quiet */
}

/* Compact JSON ("key":value,...): NOTIFY payloads are copied and hashed. */
static void
json_key(StringInfo buf, const char *key, bool *first)
{
	if (!*first)
		appendStringInfoChar(buf, ',');
	*first = false;
	escape_json(buf, key);
	appendStringInfoChar(buf, ':');
}

static void
json_text(StringInfo buf, const char *key, const char *value, bool *first)
{
	json_key(buf, key, first);
	if (value)
		escape_json(buf, value);
	else
		appendStringInfoString(buf, "null");
}

/*
 * A timestamptz in JSON, as to_json() writes it.  The rows of a statement
 * share their transaction time, so the last two conversions are
 * remembered.
 */
static void
json_timestamptz(OutboxState *st, StringInfo buf, const char *key,
				 Datum value, bool isnull, bool *first)
{
	TimestampTz ts = DatumGetTimestampTz(value);
	int			i;

	json_key(buf, key, first);
	if (isnull)
	{
		appendStringInfoString(buf, "null");
		return;
	}
	for (i = 0; i < 2; i++)
		if (st->ts_text[i][0] != '\0' && st->ts_value[i] == ts)
			break;
	if (i == 2)
	{
		i = st->ts_next;
		st->ts_next = 1 - i;
		st->ts_value[i] = ts;
		JsonEncodeDateTime(st->ts_text[i], value, TIMESTAMPTZOID, NULL);
	}
	appendStringInfoChar(buf, '"');
	appendStringInfoString(buf, st->ts_text[i]);
	appendStringInfoChar(buf, '"');
}

/* One key and string (or null) value of a jsonb object under construction. */
static void
jsonb_pair(JsonbParseState **state, const char *key, const char *value)
{
	JsonbValue	k;
	JsonbValue	v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	(void) pushJsonbValue(state, WJB_KEY, &k);
	if (value)
	{
		v.type = jbvString;
		v.val.string.val = (char *) value;
		v.val.string.len = strlen(value);
	}
	else
		v.type = jbvNull;
	(void) pushJsonbValue(state, WJB_VALUE, &v);
}

static char *
datum_text(TupleTableSlot *slot, AttrNumber a)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, a, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/*
 * Insert one row into consent.outbox and its indexes (what
 * ExecSimpleRelationInsert does for logical replication, less the
 * triggers and constraints the outbox does not have).
 */
static void
outbox_insert(OutboxState *st, Datum *values, bool *nulls)
{
	Relation	rel = table_open(st->outbox, RowExclusiveLock);
	ResultRelInfo rri;

	if (RelationGetNumberOfAttributes(rel) != st->o_natts)
		elog(ERROR, "consent outbox: relation \"outbox\" changed during the statement");

	InitResultRelInfo(&rri, rel, 0, NULL, 0);
	rri.ri_NumIndices = st->nindexes;
	rri.ri_IndexRelationDescs = st->index_rels;
	rri.ri_IndexRelationInfo = st->index_info;
	for (int i = 0; i < st->nindexes; i++)
		st->index_rels[i] = index_open(st->index_oids[i], RowExclusiveLock);

	ExecClearTuple(st->slot);
	memcpy(st->slot->tts_values, values, sizeof(Datum) * st->o_natts);
	memcpy(st->slot->tts_isnull, nulls, sizeof(bool) * st->o_natts);
	ExecStoreVirtualTuple(st->slot);

	table_tuple_insert(rel, st->slot, GetCurrentCommandId(true), 0, NULL);
	if (st->nindexes > 0)
		(void) ExecInsertIndexTuples(&rri, st->slot, st->estate, false, false, NULL, NIL);
	ResetPerTupleExprContext(st->estate);
	ExecClearTuple(st->slot);

	for (int i = 0; i < st->nindexes; i++)
	{
		index_close(st->index_rels[i], NoLock);
		st->index_rels[i] = NULL;
	}
	table_close(rel, NoLock);
}

/*
 * consent.outbox_trigger(): AFTER INSERT OR UPDATE FOR EACH ROW on
 * consent.records.
 */
Datum
consent_outbox_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	OutboxState *st;
	MemoryContext oldcxt;
	TupleTableSlot *newslot;
	TupleTableSlot *oldslot = NULL;
	Datum	   *values;
	bool	   *nulls;
	Datum		d;
	bool		isnull;
	char	   *subject;
	const char *purpose;
	const char *status;
	const char *previous = NULL;
	const char *event;
	Datum		expires_at;
	bool		expires_null;
	Datum		event_id = (Datum) 0;
	bool		event_id_null = true;
	TimestampTz at = GetCurrentTransactionStartTimestamp();
	int64		id;
	JsonbParseState *jstate = NULL;
	Jsonb	   *payload;
	bool		first = true;
	char	   *notice;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("consent.outbox_trigger() was not called by trigger manager")));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!(TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) || TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("consent.outbox_trigger() must be fired AFTER INSERT OR UPDATE FOR EACH ROW")));

	st = outbox_state(fcinfo, trigdata->tg_relation);
	if (st->restoring)
		return PointerGetDatum(NULL);
	oldcxt = MemoryContextSwitchTo(st->rowcxt);

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		newslot = trigdata->tg_newslot;
		oldslot = trigdata->tg_trigslot;
	}
	else
		newslot = trigdata->tg_trigslot;

	subject = datum_text(newslot, st->a.r_subject);
	purpose = purpose_key_of(st, DatumGetInt32(slot_getattr(newslot, st->a.r_purpose_id, &isnull)));
	status = status_label(st, DatumGetObjectId(slot_getattr(newslot, st->a.r_status, &isnull)));
	expires_at = slot_getattr(newslot, st->a.r_expires_at, &expires_null);
	if (oldslot != NULL)
	{
		char	   *old_subject = datum_text(oldslot, st->a.r_subject);
		Oid			old_status = DatumGetObjectId(slot_getattr(oldslot, st->a.r_status, &isnull));
		Datum		old_effective = slot_getattr(oldslot, st->a.r_effective_at, &isnull);
		bool		old_expires_null;
		Datum		old_expires = slot_getattr(oldslot, st->a.r_expires_at, &old_expires_null);

		previous = status_label(st, old_status);
		if (strcmp(old_subject, subject) != 0)
			event = "erase";	/* the subject key was replaced */
		else if (old_status != DatumGetObjectId(slot_getattr(newslot, st->a.r_status, &isnull)) ||
				 old_effective != slot_getattr(newslot, st->a.r_effective_at, &isnull) ||
				 old_expires_null != expires_null ||
				 (!expires_null && old_expires != expires_at))
			event = outbox_event(previous, status);
		else
			event = "update";	/* details only, e.g. redacted free text */
	}
	else
		event = outbox_event(NULL, status);

	/*
	 * The audit event written for this row, if any: the audit trigger fires
	 * just before this one on the same row.  Erasure writes its single
	 * event after rewriting the rows, so none of them has one yet.
	 */
	if (st->has_last_event_id && !consent_audit_erasing())
	{
		LOCAL_FCINFO(callinfo, 0);

		InitFunctionCallInfoData(*callinfo, &st->last_event_id, 0, InvalidOid, NULL, NULL);
		event_id = FunctionCallInvoke(callinfo);
		event_id_null = callinfo->isnull;
	}

	/* payload: what else a relay may need about the change */
	notice = datum_text(newslot, st->a.r_notice_key);
	if (notice)
	{
		d = slot_getattr(newslot, st->a.r_notice_version, &isnull);
		if (!isnull)
			notice = psprintf("%s@%d", notice, DatumGetInt32(d));
	}
	(void) pushJsonbValue(&jstate, WJB_BEGIN_OBJECT, NULL);
	jsonb_pair(&jstate, "method", datum_text(newslot, st->a.r_method));
	jsonb_pair(&jstate, "source", datum_text(newslot, st->a.r_source));
	jsonb_pair(&jstate, "notice", notice);
	payload = JsonbValueToJsonb(pushJsonbValue(&jstate, WJB_END_OBJECT, NULL));

	id = nextval_internal(st->outbox_seq, false);

	values = palloc0(sizeof(Datum) * st->o_natts);
	nulls = palloc(sizeof(bool) * st->o_natts);
	memset(nulls, true, sizeof(bool) * st->o_natts);
#define SET(attno, value) (values[(attno) - 1] = (value), nulls[(attno) - 1] = false)
	SET(st->a.o_id, Int64GetDatum(id));
	SET(st->a.o_event, CStringGetTextDatum(event));
	SET(st->a.o_subject, CStringGetTextDatum(subject));
	SET(st->a.o_purpose, CStringGetTextDatum(purpose));
	SET(st->a.o_status, CStringGetTextDatum(status));
	if (previous)
		SET(st->a.o_previous_status, CStringGetTextDatum(previous));
	if (!expires_null)
		SET(st->a.o_expires_at, expires_at);
	SET(st->a.o_at, TimestampTzGetDatum(at));
	if (!event_id_null)
		SET(st->a.o_event_id, event_id);
	SET(st->a.o_payload, JsonbPGetDatum(payload));
	SET(st->a.o_attempts, Int32GetDatum(0));
#undef SET
	outbox_insert(st, values, nulls);

	if (consent_notify)
	{
		StringInfoData msg;

		initStringInfo(&msg);
		appendStringInfoChar(&msg, '{');
		json_key(&msg, "id", &first);
		appendStringInfo(&msg, INT64_FORMAT, id);
		json_text(&msg, "event", event, &first);
		json_text(&msg, "subject", subject, &first);
		json_text(&msg, "purpose", purpose, &first);
		json_text(&msg, "status", status, &first);
		json_timestamptz(st, &msg, "at", TimestampTzGetDatum(at), false, &first);
		json_key(&msg, "event_id", &first);
		if (event_id_null)
			appendStringInfoString(&msg, "null");
		else
			appendStringInfo(&msg, INT64_FORMAT, DatumGetInt64(event_id));
		appendStringInfoChar(&msg, '}');
		consent_notify_at_commit(msg.data);
	}

	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(st->rowcxt);
	return PointerGetDatum(NULL);
}

/* ----------------------------------------------------------------
 * Module initialisation
 * ----------------------------------------------------------------
 */
void
consent_sweeper_init(void)
{
	BackgroundWorker bgw;

	DefineCustomStringVariable("consent.databases",
							   "Databases the consent sweeper serves.",
							   "'*' for every database that allows connections and is not a template, "
							   "'' for none, or a comma-separated list of names. "
							   "Databases without the extension are skipped.",
							   &consent_databases,
							   "*",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   check_databases, NULL, NULL);
	DefineCustomIntVariable("consent.sweep_interval",
							"Time between two sweeps of a database.",
							NULL,
							&consent_sweep_interval,
							60, 1, INT_MAX / 1000,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("consent.max_sweepers",
							"Most databases swept at the same time.",
							"Each sweeper uses a background worker slot (max_worker_processes) while it sweeps.",
							&consent_max_sweepers,
							2, 1, 64,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("consent.sweep_batch_size",
							"Rows each transaction of a sweep handles.",
							"Every batch is its own transaction; no lock is held longer than one batch.",
							&consent_sweep_batch_size,
							1000, 1, 1000000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("consent.sweep_workers",
							"Processes that expire the records of one sweep at the same time.",
							"When a sweep finds more expiries than one batch, the background sweeper starts this many "
							"minus one helpers, each a background worker (max_worker_processes) that expires the "
							"records of its share of the subjects. 1 keeps every sweep in one process. "
							"consent.sweep() always uses one.",
							&consent_sweep_workers,
							2, 1, 64,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("consent.warn_before",
							"How long before a grant expires an expiry warning is sent.",
							"0 sends no warnings.",
							&consent_warn_before,
							14 * SECS_PER_DAY, 0, 366 * SECS_PER_DAY,
							PGC_SUSET,
							GUC_UNIT_S,
							check_warn_before, NULL, NULL);
	DefineCustomIntVariable("consent.outbox_retention",
							"Age after which acknowledged and unclaimed outbox rows are pruned.",
							"-1 never prunes.",
							&consent_outbox_retention,
							7 * SECS_PER_DAY, -1, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_S,
							check_outbox_retention, NULL, NULL);
	DefineCustomBoolVariable("consent.notify",
							 "Send NOTIFY consent for every change of consent records.",
							 "The outbox is written either way. Notifications go out at commit, by a relay process under shared_preload_libraries; prepared (two-phase) transactions send none.",
							 &consent_notify,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 10;
	strlcpy(bgw.bgw_library_name, "consent", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "consent_launcher_main", BGW_MAXLEN);
	strlcpy(bgw.bgw_name, "consent launcher", BGW_MAXLEN);
	strlcpy(bgw.bgw_type, "consent launcher", BGW_MAXLEN);
	bgw.bgw_main_arg = (Datum) 0;
	bgw.bgw_notify_pid = 0;
	RegisterBackgroundWorker(&bgw);
}
