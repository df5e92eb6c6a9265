/*-------------------------------------------------------------------------
 *
 * notify_relay.c
 *		NOTIFY consent: the payloads the outbox trigger queues, and who sends
 *		them: the committing transaction itself, or, under
 *		shared_preload_libraries, a relay process of its database right
 *		after the commit.
 *
 * Why a relay.  PostgreSQL serialises the commits of all transactions that
 * have called NOTIFY: PreCommit_Notify() takes a server-wide lock (on
 * "database 0") that is held until the transaction has ended, that is until
 * its commit record is flushed.  Two sessions that record choices can then never
 * share a WAL flush (group commit), and every recording transaction pays a
 * disk flush of its own while holding the lock: with two clients this was a
 * tenth of the recording throughput (docs/performance.md).
 *
 * So a committing transaction does not NOTIFY itself when a relay can do it.
 * At XACT_EVENT_PRE_COMMIT it reserves room for its payloads in the relay
 * ring of its database (shared memory, one ring per relay slot); at
 * XACT_EVENT_COMMIT, after the commit is durable and visible, it copies them
 * there and sets the relay's latch; at XACT_EVENT_ABORT it gives the room
 * back.  The relay, a background worker connected to that database
 * (bgw_type "consent notify relay"), takes everything in the ring and sends
 * it with Async_Notify() in one transaction of its own, so many commits
 * share one NOTIFY lock and one flush (it commits asynchronously: a
 * notification is not durable either way).
 *
 * What listeners see is what they saw before: one notification per outbox
 * row, only for committed transactions, after the commit (so a listener that
 * reads the outbox sees the row), except that the sender's process ID is the
 * relay's and that no order across transactions is promised (a transaction
 * that sends its own can overtake ones waiting in the ring; the outbox id
 * orders them).  The committing transaction sends its own
 * notifications, exactly as before, when there is no shared memory (the
 * library is not preloaded), consent.notify_relays is 0, no relay runs yet
 * for the database (the transaction then asks for one, and the next ones use
 * it), the ring lacks room, or one payload is too long for NOTIFY (the
 * transaction then fails at commit, as NOTIFY does).  A prepared transaction
 * sends none: a transaction that has called NOTIFY cannot be prepared, and
 * its changes are in the outbox like any other.
 *
 * A relay exits after two seconds without work, so an idle database has no
 * process of ours connected and DROP DATABASE (which waits up to 5 s for
 * other sessions to leave) is never held up; the next commit starts a new
 * relay.  On SIGTERM (server shutdown, pg_terminate_backend) it stops taking
 * reservations, sends what it holds and what is still being committed (for
 * up to 5 s), and exits.  If it cannot send (an error in its transaction,
 * such as a full NOTIFY queue), the payloads are logged as lost; the outbox
 * has them.  A relay that fails to start or dies with an error is not asked
 * for again for a while (doubling up to a minute), so a database that does
 * not let it in does not make every commit fork a process.
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

#include "access/xact.h"
#include "commands/async.h"
#include "pgstat.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "consent.h"
#include "notify_relay.h"

/* A relay with nothing to do for this long exits. */
#define RELAY_IDLE_EXIT_MS		2000
/*
 * After sending, a relay lets this much time pass before it looks again, so
 * that many commits share one of its transactions (and a notification waits
 * for at most this long).
 */
#define RELAY_GATHER_MS			10
/* How often an idle relay looks at the clock. */
#define RELAY_TICK_MS			100
/* A relay asked for but not running after this long is given up. */
#define RELAY_START_TIMEOUT_MS	10000
/* The longest payload NOTIFY takes (NOTIFY_PAYLOAD_MAX_LENGTH in async.c). */
#define RELAY_PAYLOAD_MAX		(BLCKSZ - NAMEDATALEN - 128)
/* After a failed start, no new attempt for this long, doubling up to ... */
#define RELAY_RETRY_MS			1000
#define RELAY_RETRY_MAX_MS		60000
/* On shutdown, how long a relay waits for commits that reserved room. */
#define RELAY_DRAIN_MS			5000

/* ----------------------------------------------------------------
 * Settings
 * ----------------------------------------------------------------
 */
int			consent_notify_relays = 2;
int			consent_notify_relay_buffer = 1024; /* kB */

/* ----------------------------------------------------------------
 * Shared memory: one slot, with its ring, per relay
 * ----------------------------------------------------------------
 */
typedef enum RelayState
{
	RELAY_FREE = 0,				/* no relay, room for one */
	RELAY_STARTING,				/* a worker was registered for datid */
	RELAY_RUNNING,				/* takes reservations */
	RELAY_STOPPING				/* takes none; sends what is left, exits */
} RelayState;

typedef struct RelaySlot
{
	RelayState	state;
	Oid			datid;
	uint32		generation;		/* changes whenever the slot is taken anew */
	pid_t		pid;
	Latch	   *latch;
	TimestampTz since;			/* when state last changed */
	uint64		head;			/* bytes ever written to the ring */
	uint64		tail;			/* bytes ever taken from it */
	uint64		reserved;		/* bytes reserved by committing transactions */
	Size		ring;			/* offset of the ring from the shared area */
} RelaySlot;

typedef struct RelayShared
{
	LWLock	   *lock;			/* protects everything here */
	int			nslots;
	Size		ring_size;
	TimestampTz retry_after;	/* no worker starts before this */
	int			retry_ms;		/* the next failure's wait */
	RelaySlot	slots[FLEXIBLE_ARRAY_MEMBER];
} RelayShared;

static RelayShared *relay_shared = NULL;

static Size
relay_header_size(void)
{
	return MAXALIGN(add_size(offsetof(RelayShared, slots),
							 mul_size(sizeof(RelaySlot), consent_notify_relays)));
}

static Size
relay_shmem_size(void)
{
	return add_size(relay_header_size(),
					mul_size(MAXALIGN((Size) consent_notify_relay_buffer * 1024),
							 consent_notify_relays));
}

/* Under shared_preload_libraries (consent.c): the shared memory we need. */
void
consent_relay_shmem_request(void)
{
	if (consent_notify_relays == 0)
		return;
	RequestAddinShmemSpace(relay_shmem_size());
	RequestNamedLWLockTranche("consent_notify_relay", 1);
}

/* ... and its set-up, from the shmem_startup_hook (consent.c). */
void
consent_relay_shmem_startup(void)
{
	bool		found;

	if (consent_notify_relays == 0)
		return;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	relay_shared = ShmemInitStruct("consent notify relay", relay_shmem_size(), &found);
	if (!found)
	{
		memset(relay_shared, 0, relay_header_size());
		relay_shared->lock = &(GetNamedLWLockTranche("consent_notify_relay"))->lock;
		relay_shared->nslots = consent_notify_relays;
		relay_shared->ring_size = MAXALIGN((Size) consent_notify_relay_buffer * 1024);
		for (int i = 0; i < consent_notify_relays; i++)
			relay_shared->slots[i].ring = relay_header_size() + i * relay_shared->ring_size;
	}
	LWLockRelease(AddinShmemInitLock);
}

static inline char *
ring_of(RelaySlot *s)
{
	return (char *) relay_shared + s->ring;
}

/* Copy "len" bytes into the ring at byte position "pos", wrapping. */
static void
ring_put(RelaySlot *s, uint64 pos, const void *data, Size len)
{
	Size		size = relay_shared->ring_size;
	Size		off = pos % size;
	Size		first = Min(len, size - off);

	memcpy(ring_of(s) + off, data, first);
	if (first < len)
		memcpy(ring_of(s), (const char *) data + first, len - first);
}

/* Copy "len" bytes out of the ring from byte position "pos", wrapping. */
static void
ring_get(RelaySlot *s, uint64 pos, void *data, Size len)
{
	Size		size = relay_shared->ring_size;
	Size		off = pos % size;
	Size		first = Min(len, size - off);

	memcpy(data, ring_of(s) + off, first);
	if (first < len)
		memcpy((char *) data + first, ring_of(s), len - first);
}

/* Bytes one payload takes in the ring. */
static inline Size
entry_size(Size len)
{
	return sizeof(uint32) + len;
}

/* ----------------------------------------------------------------
 * The committing side
 * ----------------------------------------------------------------
 */
typedef struct PendingNotify
{
	int			level;			/* transaction nesting level that queued it */
	char	   *payload;
} PendingNotify;

static List *pending_notifies = NIL;	/* in TopTransactionContext */

/* This transaction's reservation, made at pre-commit. */
static int	reserved_slot = -1;
static uint32 reserved_generation;
static uint64 reserved_bytes;

void
consent_notify_at_commit(const char *payload)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	PendingNotify *p = palloc(sizeof(PendingNotify));

	p->level = GetCurrentTransactionNestLevel();
	p->payload = pstrdup(payload);
	pending_notifies = lappend(pending_notifies, p);
	MemoryContextSwitchTo(old);
}

/*
 * A relay could not be started or died with an error: start none for a
 * while, longer after each failure in a row.  Caller holds the lock.
 */
static void
relay_backoff(TimestampTz now)
{
	if (relay_shared->retry_ms < RELAY_RETRY_MS)
		relay_shared->retry_ms = RELAY_RETRY_MS;
	relay_shared->retry_after = TimestampTzPlusMilliseconds(now, relay_shared->retry_ms);
	relay_shared->retry_ms = Min(relay_shared->retry_ms * 2, RELAY_RETRY_MAX_MS);
}

/* Register a relay worker for the current database in slot i. */
static bool
relay_launch(int i, uint32 generation)
{
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;

	consent_worker_init(&bgw, "consent_notify_relay_main", "consent notify relay");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "consent notify relay for database %u", MyDatabaseId);
	bgw.bgw_main_arg = Int32GetDatum(i);
	memcpy(bgw.bgw_extra, &generation, sizeof(generation));
	bgw.bgw_notify_pid = 0;
	return RegisterDynamicBackgroundWorker(&bgw, &handle);
}

/*
 * Reserve room in the relay ring of this database for "need" bytes.  Returns
 * false when this transaction must notify by itself; then asks for a relay
 * if there is none.
 */
static bool
relay_reserve(uint64 need)
{
	RelaySlot  *s = NULL;
	int			i;
	int			free_slot = -1;
	uint32		generation = 0;
	bool		launch = false;
	bool		ok = false;
	TimestampTz now;

	if (relay_shared == NULL)
		return false;
	if (need > relay_shared->ring_size / 2)
		return false;			/* leave the ring to smaller transactions */

	now = GetCurrentTimestamp();
	LWLockAcquire(relay_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < relay_shared->nslots; i++)
	{
		RelaySlot  *c = &relay_shared->slots[i];

		/* a worker asked for long ago never came (could not fork, say) */
		if (c->state == RELAY_STARTING &&
			TimestampDifferenceExceeds(c->since, now, RELAY_START_TIMEOUT_MS))
		{
			c->state = RELAY_FREE;
			c->generation++;
			relay_backoff(now);
		}
		if (c->state == RELAY_FREE)
		{
			if (free_slot < 0)
				free_slot = i;
		}
		else if (c->datid == MyDatabaseId)
		{
			s = c;
			break;
		}
	}
	if (s != NULL)
	{
		if (s->state == RELAY_RUNNING &&
			relay_shared->ring_size - (s->head - s->tail) - s->reserved >= need)
		{
			s->reserved += need;
			reserved_slot = i;
			reserved_generation = s->generation;
			reserved_bytes = need;
			ok = true;
		}
	}
	else if (free_slot >= 0 && now >= relay_shared->retry_after)
	{
		s = &relay_shared->slots[free_slot];
		s->state = RELAY_STARTING;
		s->datid = MyDatabaseId;
		s->generation++;
		s->pid = 0;
		s->latch = NULL;
		s->since = now;
		s->head = s->tail = s->reserved = 0;
		generation = s->generation;
		launch = true;
	}
	LWLockRelease(relay_shared->lock);

	if (launch && !relay_launch(free_slot, generation))
	{
		LWLockAcquire(relay_shared->lock, LW_EXCLUSIVE);
		s = &relay_shared->slots[free_slot];
		if (s->state == RELAY_STARTING && s->generation == generation)
		{
			s->state = RELAY_FREE;
			s->generation++;
		}
		relay_backoff(now);
		LWLockRelease(relay_shared->lock);
		ereport(DEBUG1,
				(errmsg("consent: could not start a notify relay, no background worker slot is free"),
				 errhint("Notifications are sent by the committing transactions; raise max_worker_processes by consent.notify_relays to give relays slots.")));
	}
	return ok;
}

/*
 * After commit: put this transaction's payloads into the ring it reserved
 * room in and wake the relay.  Must not fail: the transaction has committed.
 */
static void
relay_deliver(void)
{
	RelaySlot  *s = &relay_shared->slots[reserved_slot];
	Latch	   *latch = NULL;
	ListCell   *lc;
	uint64		used = 0;
	int			lost = 0;

	LWLockAcquire(relay_shared->lock, LW_EXCLUSIVE);
	if (s->generation == reserved_generation &&
		(s->state == RELAY_RUNNING || s->state == RELAY_STOPPING))
	{
		foreach(lc, pending_notifies)
		{
			const char *payload = ((PendingNotify *) lfirst(lc))->payload;
			uint32		len = strlen(payload);

			/*
			 * Only what was reserved: a payload queued after pre-commit (by
			 * another module's pre-commit callback writing to the records)
			 * has no room.
			 */
			if (used + entry_size(len) > reserved_bytes || len >= RELAY_PAYLOAD_MAX)
			{
				lost++;
				continue;
			}
			ring_put(s, s->head, &len, sizeof(len));
			ring_put(s, s->head + sizeof(len), payload, len);
			s->head += entry_size(len);
			used += entry_size(len);
		}
		s->reserved -= reserved_bytes;
		latch = s->latch;
	}
	else
		lost = list_length(pending_notifies);
	LWLockRelease(relay_shared->lock);
	reserved_slot = -1;

	if (latch != NULL)
		SetLatch(latch);
	if (lost > 0)
		ereport(LOG,
				(errmsg("consent: %d notifications of a committed transaction were not sent", lost),
				 errdetail("They were queued after the transaction had reserved room with its notify relay, or the relay had exited. The changes are in consent.outbox.")));
}

/* The transaction did not commit after all: give the room back. */
static void
relay_unreserve(void)
{
	RelaySlot  *s = &relay_shared->slots[reserved_slot];
	Latch	   *latch = NULL;

	LWLockAcquire(relay_shared->lock, LW_EXCLUSIVE);
	if (s->generation == reserved_generation)
	{
		s->reserved -= reserved_bytes;
		latch = s->latch;
	}
	LWLockRelease(relay_shared->lock);
	reserved_slot = -1;
	if (latch != NULL)
		SetLatch(latch);
}

static void
notify_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	ListCell   *lc;

	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (pending_notifies != NIL)
			{
				uint64		need = 0;
				bool		relayable = true;

				foreach(lc, pending_notifies)
				{
					Size		len = strlen(((PendingNotify *) lfirst(lc))->payload);

					if (len >= RELAY_PAYLOAD_MAX)
						relayable = false;
					need += entry_size(len);
				}
				if (relayable && relay_reserve(need))
					return;		/* sent by the relay after commit */

				/* XACT_EVENT_PRE_COMMIT runs before PreCommit_Notify() */
				foreach(lc, pending_notifies)
					Async_Notify("consent", ((PendingNotify *) lfirst(lc))->payload);
			}
			break;
		case XACT_EVENT_COMMIT:
			if (reserved_slot >= 0)
				relay_deliver();
			break;
		case XACT_EVENT_ABORT:
			if (reserved_slot >= 0)
				relay_unreserve();
			break;
		default:
			break;
	}
	/* the memory goes with TopTransactionContext */
	pending_notifies = NIL;
}

static void
notify_subxact_callback(SubXactEvent event,
						SubTransactionId mySubid pg_attribute_unused(),
						SubTransactionId parentSubid pg_attribute_unused(),
						void *arg pg_attribute_unused())
{
	int			level = GetCurrentTransactionNestLevel();
	ListCell   *lc;

	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		foreach(lc, pending_notifies)
		{
			if (((PendingNotify *) lfirst(lc))->level >= level)
				pending_notifies = foreach_delete_current(pending_notifies, lc);
		}
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		foreach(lc, pending_notifies)
		{
			PendingNotify *p = (PendingNotify *) lfirst(lc);

			if (p->level >= level)
				p->level = level - 1;
		}
	}
}

/* ----------------------------------------------------------------
 * The relay
 * ----------------------------------------------------------------
 */
static int	my_slot = -1;
static uint32 my_generation;

/* On any exit, free the slot if it is still ours. */
static void
relay_exit(int code, Datum arg pg_attribute_unused())
{
	RelaySlot  *s;
	uint64		lost = 0;

	if (my_slot < 0 || relay_shared == NULL)
		return;
	s = &relay_shared->slots[my_slot];
	LWLockAcquire(relay_shared->lock, LW_EXCLUSIVE);
	if (code != 0 || (s->generation == my_generation && s->state == RELAY_STARTING))
		relay_backoff(GetCurrentTimestamp());	/* failed; don't retry at once */
	else
		relay_shared->retry_ms = 0;
	if (s->generation == my_generation && s->state != RELAY_FREE)
	{
		lost = s->head - s->tail;
		s->state = RELAY_FREE;
		s->generation++;
		s->pid = 0;
		s->latch = NULL;
	}
	LWLockRelease(relay_shared->lock);
	if (lost > 0)
		ereport(LOG,
				(errmsg("consent notify relay: exiting with %llu bytes of notifications unsent",
						(unsigned long long) lost),
				 errdetail("The changes are in consent.outbox.")));
}

/*
 * Send the payloads in buf (entries of a uint32 length and the bytes) in
 * one transaction.
 */
static void
relay_send(char *buf, Size len, MemoryContext cxt)
{
	volatile int n = 0;

	for (Size off = 0; off < len; n++)
	{
		uint32		plen;

		memcpy(&plen, buf + off, sizeof(plen));
		off += sizeof(plen) + plen;
	}

	PG_TRY();
	{
		Size		off = 0;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		pgstat_report_activity(STATE_RUNNING, "NOTIFY consent");
		while (off < len)
		{
			uint32		plen;
			char	   *payload;

			memcpy(&plen, buf + off, sizeof(plen));
			off += sizeof(plen);
			payload = MemoryContextAlloc(cxt, plen + 1);
			memcpy(payload, buf + off, plen);
			payload[plen] = '\0';
			off += plen;
			Async_Notify("consent", payload);
		}
		CommitTransactionCommand();
#if PG_VERSION_NUM < 150000
		/* before PostgreSQL 15, listeners are signalled from here */
		ProcessCompletedNotifies();
#endif
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	PG_CATCH();
	{
		HOLD_INTERRUPTS();
		EmitErrorReport();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		RESUME_INTERRUPTS();
		ereport(LOG,
				(errmsg("consent notify relay: %d notifications were not sent", n),
				 errdetail("The changes are in consent.outbox.")));
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	PG_END_TRY();
	MemoryContextReset(cxt);
}

void
consent_notify_relay_main(Datum main_arg)
{
	int			i = DatumGetInt32(main_arg);
	RelaySlot  *s;
	Oid			datid = InvalidOid;
	bool		ours = false;
	char	   *buf;
	MemoryContext cxt;
	TimestampTz idle_since;
	TimestampTz stopping_since = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	pqsignal(SIGINT, SIG_IGN);	/* a cancel would lose what it holds */
	BackgroundWorkerUnblockSignals();

	if (relay_shared == NULL || i < 0 || i >= relay_shared->nslots)
		proc_exit(0);
	memcpy(&my_generation, MyBgworkerEntry->bgw_extra, sizeof(my_generation));
	s = &relay_shared->slots[i];

	LWLockAcquire(relay_shared->lock, LW_EXCLUSIVE);
	if (s->generation == my_generation && s->state == RELAY_STARTING)
	{
		datid = s->datid;
		my_slot = i;
		ours = true;
	}
	LWLockRelease(relay_shared->lock);
	if (!ours)
		proc_exit(0);			/* given up on while the worker started */
	before_shmem_exit(relay_exit, (Datum) 0);

	/* listeners may still be connected where new connections are refused */
	BackgroundWorkerInitializeConnectionByOid(datid, InvalidOid, BGWORKER_BYPASS_ALLOWCONN);
	pgstat_report_appname("consent notify relay");
	/* a notification is not durable; nothing to wait for */
	SetConfigOption("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION);
	/* per-database timeouts must not make it drop a batch */
	SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("idle_in_transaction_session_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);

	/* everything that can fail for want of memory, before taking work */
	buf = MemoryContextAllocHuge(TopMemoryContext, relay_shared->ring_size);
	cxt = AllocSetContextCreate(TopMemoryContext, "consent notify relay",
								ALLOCSET_DEFAULT_SIZES);

	LWLockAcquire(relay_shared->lock, LW_EXCLUSIVE);
	if (s->generation == my_generation && s->state == RELAY_STARTING)
	{
		s->state = RELAY_RUNNING;
		s->pid = MyProcPid;
		s->latch = MyLatch;
		s->since = GetCurrentTimestamp();
	}
	else
		ours = false;
	LWLockRelease(relay_shared->lock);
	if (!ours)
		proc_exit(0);
	elog(DEBUG1, "consent notify relay: started for database %u", datid);

	idle_since = GetCurrentTimestamp();

	for (;;)
	{
		uint64		len;
		bool		done = false;
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		now = GetCurrentTimestamp();
		LWLockAcquire(relay_shared->lock, LW_EXCLUSIVE);
		if (ShutdownRequestPending && s->state == RELAY_RUNNING)
		{
			s->state = RELAY_STOPPING;
			s->since = now;
			stopping_since = now;
		}
		len = s->head - s->tail;
		if (len > 0)
		{
			ring_get(s, s->tail, buf, len);
			s->tail = s->head;
		}
		else if (s->reserved == 0 &&
				 (s->state == RELAY_STOPPING ||
				  TimestampDifferenceExceeds(idle_since, now, RELAY_IDLE_EXIT_MS)))
		{
			/* nothing in the ring and nobody committing into it */
			s->state = RELAY_FREE;
			s->generation++;
			s->pid = 0;
			s->latch = NULL;
			done = true;
		}
		else if (s->state == RELAY_STOPPING &&
				 TimestampDifferenceExceeds(stopping_since, now, RELAY_DRAIN_MS))
			done = true;		/* relay_exit() reports what is lost */
		LWLockRelease(relay_shared->lock);

		if (done)
			break;
		if (len > 0)
		{
			relay_send(buf, len, cxt);
			idle_since = GetCurrentTimestamp();
			/* let commits gather; the latch they set is seen afterwards */
			(void) WaitLatch(NULL, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 RELAY_GATHER_MS, PG_WAIT_EXTENSION);
			continue;
		}
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 RELAY_TICK_MS,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	elog(DEBUG1, "consent notify relay: exiting for database %u", datid);
	proc_exit(0);
}

/* ----------------------------------------------------------------
 * Module initialisation
 * ----------------------------------------------------------------
 */
void
consent_notify_relay_init(void)
{
	RegisterXactCallback(notify_xact_callback, NULL);
	RegisterSubXactCallback(notify_subxact_callback, NULL);

	/* PGC_POSTMASTER settings can only be defined while preloading */
	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomIntVariable("consent.notify_relays",
							"Databases whose notifications relay processes send after commit at the same time.",
							"Each relay uses a background worker slot (max_worker_processes) while its database is busy. "
							"0 makes every transaction send its own notifications at commit. Needs shared_preload_libraries.",
							&consent_notify_relays,
							2, 0, 64,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("consent.notify_relay_buffer",
							"Shared memory each notify relay has for notifications waiting to be sent.",
							"A transaction whose notifications take more than half of it, or that finds it full, sends them itself.",
							&consent_notify_relay_buffer,
							1024, 64, 512 * 1024,
							PGC_POSTMASTER,
							GUC_UNIT_KB,
							NULL, NULL, NULL);
}
