/*-------------------------------------------------------------------------
 *
 * cache.c
 *		Call-site state and caches of the enforcement functions.
 *
 * A "scope" holds what the rule needs besides a subject's records: the
 * purpose catalog, the notices' latest material versions, and any bulk
 * maps (subject -> verdict for one purpose path, loaded in one pass over
 * consent.records).  A scope is exact for every snapshot that sees the
 * same writes to consent.records, consent.purposes and consent.notices as
 * the snapshot it was built under.
 *
 * Two kinds of scope:
 *
 *	 - private: built for one call site and one snapshot; reloaded whenever
 *	   the call site sees another active snapshot (or command id).
 *
 *	 - shared across statements and transactions (one per backend, needs
 *	   shared_preload_libraries): kept as long as no transaction that wrote
 *	   the consent tables has become visible, or invisible, relative to the
 *	   snapshot it was built under.
 *
 * How the shared scope stays exact.  BEFORE triggers on the three tables,
 * per statement and per row (ENABLE ALWAYS, so that
 * session_replication_role = replica fires them too; logical replication's
 * apply worker fires only the row ones), register the writing
 * transaction's top-level xid in a ring in shared memory before its first
 * write.  A scope built while any of them is disabled is used for its own
 * snapshot only.  A scope remembers
 * the ring position when it was built and which registered writers its
 * snapshot did not see.  It is valid for a later snapshot S when:
 *
 *	 1. no writer registered since the build is visible in S (committed and
 *		not in progress in S);
 *	 2. no writer invisible at build time is visible in S;
 *	 3. the ring has not wrapped since the build, and no writer that the
 *		build snapshot might not have seen has been pushed out of the ring;
 *	 4. the current transaction has not written the consent tables (its own
 *		uncommitted writes are seen by S and by no shared scope);
 *	 5. the server is not in recovery (a standby fires no triggers), and
 *		no relcache invalidation hit the three tables (DROP, TRUNCATE,
 *		ALTER);
 *	 6. S is less than CACHE_MAX_XID_AGE transactions newer than the build,
 *		so that commit status lookups never reach truncated clog;
 *	 7. no transaction older than the ring's horizon (the next xid when the
 *		first scope was built after the server started) was in progress for
 *		the build snapshot: a prepared transaction carried over a restart or
 *		a promotion registered in a ring that no longer exists;
 *	 8. S sees everything the build snapshot saw: S is not older (a cursor
 *		keeps an older snapshot than later statements), checked as S.xmax
 *		not before the build's xmax and no xid running for S that had
 *		finished for the build.
 *	 9. the build snapshot sees the current definitions of the three tables
 *		and of their registering triggers (scope_fingerprint): writes made
 *		while the triggers were disabled all committed before they were
 *		enabled again (ENABLE TRIGGER waits for writers), so a snapshot
 *		that sees the enabling sees them.
 *
 * Shared maps.  A dense map built under a backend's shared scope is
 * published in a DSM segment with that scope's validity data (ring
 * position, invisible writers, build xmax and running xids) and its
 * fingerprint.  Another backend uses it under its own shared scope (valid
 * for S by rules 1-9) when the published validity data passes rules 1-3, 6
 * and 8 for S and the fingerprints are equal: then both were built from
 * the same definitions, and S, the map's snapshot and the scope's snapshot
 * all see the same writes to the three tables.
 *
 * Under SERIALIZABLE, answers from a scope built in an earlier transaction
 * took no predicate locks in this one: attaching to it takes relation
 * predicate locks on the three tables, once per transaction.
 *
 * Visible and invisible writers are compared, not counted, so that a
 * REPEATABLE READ snapshot keeps its answers while newer transactions see
 * newer ones.  A scope that stops being valid is retired and freed at the
 * end of the transaction, never while a call site may still point into it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_class.h"
#include "catalog/pg_trigger.h"
#include "catalog/namespace.h"
#include "tcop/utility.h"
#include "access/parallel.h"
#include "storage/bufmgr.h"
#include "storage/dsm.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/predicate.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "port/atomics.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "consent.h"
#include "cache.h"

PG_FUNCTION_INFO_V1(consent_note_write);
PG_FUNCTION_INFO_V1(consent_cache_info);

#define WRITER_RING_SIZE	4096
#define MAX_INVISIBLE		256
#define CACHE_MAX_XID_AGE	100000

/*
 * What one index probe made by a point lookup costs, in records read by a
 * map load.  Measured on the 3,000,000-record data set of test/bench/rls:
 * a load takes about 0.1 us per record (0.2-0.35 s in all); a lookup by
 * primary key through a consent.has() policy costs 14-18 us of CPU more
 * when it probes than when it reads a map (the probe's index descent and
 * heap visit, with the CPU caches cold from the statement around it; in a
 * tight loop over one table's rows a probe costs 3.5-5 us, but scans load
 * maps through consent.bulk_threshold anyway).
 */
#define PROBE_COST_IN_RECORDS	128

/* GUCs */
int			consent_bulk_threshold = 1000;
int			consent_cache_memory_kb = 262144;
bool		consent_cross_statement_cache = true;

/* ----------------------------------------------------------------
 * Shared memory: the ring of writer transactions
 * ----------------------------------------------------------------
 */
typedef struct WriterSlot
{
	TransactionId xid;
	Oid			dbid;
} WriterSlot;

typedef struct WriterRing
{
	LWLock	   *lock;
	uint64		next_seq;		/* sequence number of the next writer */
	TransactionId max_evicted;	/* newest xid pushed out of the ring */

	/*
	 * First xid that may have registered since this server started, set by
	 * the first scope built.  Transactions older than it (prepared ones
	 * surviving a restart or a promotion) may have written without being
	 * registered here.
	 */
	TransactionId horizon;
	WriterSlot	slots[WRITER_RING_SIZE];
} WriterRing;

static WriterRing *ring = NULL;

/*
 * Shared maps: dense maps built by one backend and published in dynamic
 * shared memory, for every backend of the database to use while they are
 * valid for its snapshot (the same rules as a scope's, checked against the
 * validity data published with the map).  The directory holds one map per
 * (database, purpose), the newest.
 */
#define SHARED_MAP_SLOTS	16

typedef struct SharedMapSlot
{
	Oid			dbid;			/* InvalidOid: free */
	int32		purpose_id;
	dsm_handle	handle;
	uint64		published;		/* directory generation when published */
} SharedMapSlot;

typedef struct SharedMapDir
{
	LWLock	   *lock;
	pg_atomic_uint64 generation;	/* bumped by every publication */
	pg_atomic_uint64 probes;	/* index probes under shared scopes, all
								 * backends and databases, since the last
								 * load: a rough price, never a wrong answer */
	SharedMapSlot slots[SHARED_MAP_SLOTS];
} SharedMapDir;

static SharedMapDir *mapdir = NULL;

/*
 * What identifies the definition of the three tables and their
 * registering triggers: the xmin of the pg_class rows of consent.records,
 * consent.purposes and consent.notices (a rewrite, or any DDL on them,
 * writes a new row version; ANALYZE and VACUUM update in place) and of the
 * pg_trigger rows of note_write and note_write_row on each (DISABLE and
 * ENABLE TRIGGER write new versions).
 */
#define FINGERPRINT_LEN		9

/* The header of a published map's segment; arrays follow at the offsets. */
typedef struct SharedMapHeader
{
	Oid			dbid;
	Oid			records_relid;
	int32		purpose_id;
	TransactionId fingerprint[FINGERPRINT_LEN];
	uint64		ring_seq;
	TransactionId build_xmax;
	uint32		build_xcnt;
	int32		ninvisible;
	int64		dense_base;
	uint64		dense_n;
	int32		dense_nuntil;
	Size		off_xip;
	Size		off_invisible;
	Size		off_until;
	Size		off_verdict;
} SharedMapHeader;

/* top-level xid of this backend's transaction that wrote the tables */
static TransactionId my_writer_xid = InvalidTransactionId;

/* Under shared_preload_libraries (consent.c): the shared memory we need. */
void
consent_cache_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(WriterRing)) + MAXALIGN(sizeof(SharedMapDir)));
	RequestNamedLWLockTranche("consent_cache", 2);
}

/* ... and its set-up, from the shmem_startup_hook (consent.c). */
void
consent_cache_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ring = ShmemInitStruct("consent writer ring", sizeof(WriterRing), &found);
	if (!found)
	{
		memset(ring, 0, sizeof(WriterRing));
		ring->lock = &(GetNamedLWLockTranche("consent_cache"))->lock;
		ring->max_evicted = InvalidTransactionId;
		ring->horizon = InvalidTransactionId;
	}
	mapdir = ShmemInitStruct("consent shared maps", sizeof(SharedMapDir), &found);
	if (!found)
	{
		memset(mapdir, 0, sizeof(SharedMapDir));
		mapdir->lock = &(GetNamedLWLockTranche("consent_cache"))[1].lock;
		pg_atomic_init_u64(&mapdir->generation, 1);
		pg_atomic_init_u64(&mapdir->probes, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

static inline bool
current_xact_wrote(void)
{
	TransactionId top = GetTopTransactionIdIfAny();

	return TransactionIdIsValid(top) && TransactionIdEquals(top, my_writer_xid);
}

/* Register this transaction in the ring, once. */
static void
register_writer(void)
{
	TransactionId xid = GetTopTransactionId();

	if (TransactionIdEquals(xid, my_writer_xid))
		return;
	if (ring != NULL)
	{
		WriterSlot *slot;

		LWLockAcquire(ring->lock, LW_EXCLUSIVE);
		slot = &ring->slots[ring->next_seq % WRITER_RING_SIZE];
		if (ring->next_seq >= WRITER_RING_SIZE &&
			(!TransactionIdIsValid(ring->max_evicted) ||
			 TransactionIdFollows(slot->xid, ring->max_evicted)))
			ring->max_evicted = slot->xid;
		slot->xid = xid;
		slot->dbid = MyDatabaseId;
		ring->next_seq++;
		LWLockRelease(ring->lock);
	}
	my_writer_xid = xid;
}

/*
 * DDL can change what the consent tables hold without firing their
 * triggers: ALTER TABLE ... DISABLE TRIGGER followed by writes, a rewrite
 * with ALTER COLUMN ... TYPE ... USING, rules, a changed enum.  A
 * transaction that runs such a statement in a database with the extension
 * registers as a writer (conservatively: whatever table it names), so that
 * caches built before it are not used by snapshots that see it.
 */
static ProcessUtility_hook_type prev_process_utility = NULL;

static void
cache_process_utility(PlannedStmt *pstmt, const char *queryString,
					  bool readOnlyTree, ProcessUtilityContext context,
					  ParamListInfo params, QueryEnvironment *queryEnv,
					  DestReceiver *dest, QueryCompletion *qc)
{
	NodeTag		tag = nodeTag(pstmt->utilityStmt);

	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);

	switch (tag)
	{
		case T_AlterTableStmt:
		case T_AlterTableMoveAllStmt:
		case T_RenameStmt:
		case T_DropStmt:
		case T_TruncateStmt:
		case T_CreateTrigStmt:
		case T_RuleStmt:
		case T_AlterObjectSchemaStmt:
		case T_AlterEnumStmt:
		case T_AlterExtensionStmt:
		case T_AlterExtensionContentsStmt:
		case T_DropOwnedStmt:
			if (ring != NULL && IsTransactionState() && !RecoveryInProgress() &&
				OidIsValid(get_namespace_oid("consent", true)))
				register_writer();
			break;
		default:
			break;
	}
}

/*
 * consent.note_write(): BEFORE ... FOR EACH STATEMENT trigger on the
 * tables the rule reads.  Registers this transaction as a writer, once.
 */
Datum
consent_note_write(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Datum		result = PointerGetDatum(NULL);

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("consent.note_write() must be called as a trigger")));
	if (!TRIGGER_FIRED_BEFORE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("consent.note_write() must be fired BEFORE")));

	/*
	 * Fired per statement (and for TRUNCATE) and per row: logical
	 * replication's apply worker fires row triggers only.  A row trigger
	 * must hand the row on unchanged.
	 */
	if (TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		result = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
			PointerGetDatum(trigdata->tg_newtuple) :
			PointerGetDatum(trigdata->tg_trigtuple);

	register_writer();
	return result;
}

static int
xid_cmp(const void *a, const void *b)
{
	TransactionId x = *(const TransactionId *) a;
	TransactionId y = *(const TransactionId *) b;

	return (x > y) - (x < y);
}

/* Is a (top-level) transaction's work visible in this MVCC snapshot? */
static inline bool
xid_visible(TransactionId xid, Snapshot snap)
{
	if (TransactionIdIsCurrentTransactionId(xid))
		return true;
	if (XidInMVCCSnapshot(xid, snap))
		return false;
	return TransactionIdDidCommit(xid);
}

/* ----------------------------------------------------------------
 * Scopes and bulk maps
 * ----------------------------------------------------------------
 */

/* Verdict of the record nearest on a path, for one subject. */
typedef struct SubjectEntry
{
	const char *key;			/* subject bytes, in the map's context */
	uint32		hash;
	uint16		keylen;
	uint8		pos;			/* path position of the deciding record */
	char		status;			/* simplehash's */
	bool		allow;			/* a grant that counts ... */
	TimestampTz until;			/* ... until then (DT_NOEND: no expiry) */
} SubjectEntry;

typedef struct SubjectKey
{
	const char *data;
	int			len;
} SubjectKey;

static inline uint32
subject_hash(const char *data, int len)
{
	return hash_bytes((const unsigned char *) data, len);
}

#define SH_PREFIX		subjmap
#define SH_ELEMENT_TYPE SubjectEntry
#define SH_KEY_TYPE		const char *
#define SH_KEY			key
#define SH_HASH_KEY(tb, k)	subject_hash(k, subjmap_keylen)
#define SH_EQUAL(tb, a, b)	(subjmap_cmp_len(tb, a) && memcmp(a, b, subjmap_keylen) == 0)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a)	((a)->hash)
#define SH_SCOPE		static inline
#define SH_DECLARE
#define SH_DEFINE

/*
 * simplehash compares keys with SH_EQUAL(tb, a, b) only; the probe's
 * length travels in a file-level variable set right before each call.
 */
static int	subjmap_keylen;
struct subjmap_hash;
static inline bool subjmap_cmp_len(struct subjmap_hash *tb pg_attribute_unused(),
								   const char *a);

#include "lib/simplehash.h"

static inline bool
subjmap_cmp_len(struct subjmap_hash *tb pg_attribute_unused(), const char *a)
{
	uint16		len;

	/* keys are stored with their length in the two bytes before them */
	memcpy(&len, a - sizeof(uint16), sizeof(uint16));
	return len == subjmap_keylen;
}

/*
 * Verdicts of a dense map, one byte per integer subject in [base, base+n).
 * Subjects are bigint ids far more often than not, and a table scanned in
 * id order then reads the map sequentially instead of hashing per row.
 */

typedef struct DenseUntil
{
	int64		subject;
	TimestampTz until;
} DenseUntil;

typedef struct BulkMap
{
	int32		purpose_id;
	MemoryContext cxt;
	subjmap_hash *map;			/* general form; NULL when dense */
	bool		failed;			/* over the memory bound: probe instead */
	bool		dense;
	int64		dense_base;
	uint64		dense_n;
	uint8	   *dense_verdict;
	int			dense_nuntil;
	DenseUntil *dense_until;	/* sorted by subject */
	dsm_segment *seg;			/* a shared map's segment (the arrays are in
								 * it), detached with the scope */
	struct BulkMap *next;
} BulkMap;

struct CacheScope
{
	MemoryContext cxt;
	bool		shared;
	ConsentMeta meta;
	ConsentCatalog cat;
	BulkMap    *maps;

	/* validity (shared scopes) */
	Oid			dbid;
	uint64		ring_seq;
	int			ninvisible;
	TransactionId invisible[MAX_INVISIBLE];
	TransactionId build_xmax;
	uint32		build_xcnt;		/* the build snapshot's running xids, sorted */
	TransactionId *build_xip;
	bool		stale;			/* relcache invalidation seen */
	bool		owned_by_callsite;	/* private: freed by its call site */
	TransactionId fingerprint[FINGERPRINT_LEN];

	/* shared-map directory generation last looked up, per purpose */
	int			nlooked;
	int32		looked_purpose[8];
	uint64		looked_gen[8];

	/* index probes made under this scope, by all call sites */
	uint64		nprobes;
	double		records_estimate;	/* rows of consent.records at build */
	CacheScope *next_retired;
};

static CacheScope *shared_scope = NULL;
static CacheScope *retired_scopes = NULL;

/* counters, for consent.cache_info() and tests */
static uint64 n_scope_builds = 0;
static uint64 n_map_builds = 0;
static uint64 n_dense_builds = 0;
static uint64 n_maps_published = 0;
static uint64 n_maps_attached = 0;
static uint64 n_map_hits = 0;
static uint64 n_probes = 0;
uint64		consent_fast_hits = 0;

static void
scope_free(CacheScope *scope)
{
	for (BulkMap *bm = scope->maps; bm; bm = bm->next)
	{
		if (bm->seg)
			dsm_detach(bm->seg);
	}
	MemoryContextDelete(scope->cxt);
}

static void
scope_retire(CacheScope *scope)
{
	scope->next_retired = retired_scopes;
	retired_scopes = scope;
}

static void
cache_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			while (retired_scopes)
			{
				CacheScope *s = retired_scopes;

				retired_scopes = s->next_retired;
				scope_free(s);
			}
			my_writer_xid = InvalidTransactionId;
			break;
		default:
			break;
	}
}

static void
cache_relcache_callback(Datum arg pg_attribute_unused(), Oid relid)
{
	CacheScope *s = shared_scope;

	if (s == NULL)
		return;
	if (relid == InvalidOid || relid == s->meta.records ||
		relid == s->meta.purposes || relid == s->meta.notices ||
		relid == s->meta.records_pkey)
		s->stale = true;
}

/*
 * Is a transaction that wrote a catalog row settled and visible for snap?
 * (Frozen and bootstrap xids are.)
 */
static bool
catalog_xid_visible(TransactionId xid, Snapshot snap)
{
	if (!TransactionIdIsNormal(xid))
		return true;
	return xid_visible(xid, snap);
}

/*
 * The fingerprint of the three tables' definitions and of their
 * registering triggers (see FINGERPRINT_LEN), read from the catalogs as
 * they are now.  False when a registering trigger is missing or not
 * ENABLE ALWAYS (ALTER TABLE ... DISABLE TRIGGER, pg_restore
 * --disable-triggers: writes may go unregistered), or when "snap" does not
 * see a definition: a snapshot older than the last DISABLE/ENABLE cycle
 * may miss writes made while the triggers were off, which no ring holds.
 */
static bool
scope_fingerprint(const ConsentMeta *m, Snapshot snap, TransactionId *fp)
{
	Oid			rels[3] = {m->records, m->purposes, m->notices};
	bool		ok = true;
	int			n = 0;

	/*
	 * Read under "snap" itself, not through the caches: a snapshot may see
	 * a committed ALTER whose invalidation messages this backend has not
	 * received yet.
	 */
	for (int i = 0; i < 3; i++)
	{
		Relation	cls;
		Relation	trig;
		SysScanDesc scan;
		ScanKeyData key;
		HeapTuple	ttup;
		int			found = 0;

		cls = table_open(RelationRelationId, AccessShareLock);
		ScanKeyInit(&key, Anum_pg_class_oid, BTEqualStrategyNumber,
					F_OIDEQ, ObjectIdGetDatum(rels[i]));
		scan = systable_beginscan(cls, ClassOidIndexId, true, snap, 1, &key);
		ttup = systable_getnext(scan);
		if (HeapTupleIsValid(ttup))
			fp[n] = HeapTupleHeaderGetXmin(ttup->t_data);
		else
			ok = false;
		systable_endscan(scan);
		table_close(cls, AccessShareLock);
		n++;

		trig = table_open(TriggerRelationId, AccessShareLock);
		ScanKeyInit(&key, Anum_pg_trigger_tgrelid, BTEqualStrategyNumber,
					F_OIDEQ, ObjectIdGetDatum(rels[i]));
		scan = systable_beginscan(trig, TriggerRelidNameIndexId, true, snap, 1, &key);
		while (HeapTupleIsValid(ttup = systable_getnext(scan)))
		{
			Form_pg_trigger t = (Form_pg_trigger) GETSTRUCT(ttup);
			int			slot;

			if (strcmp(NameStr(t->tgname), "note_write") == 0)
				slot = 0;
			else if (strcmp(NameStr(t->tgname), "note_write_row") == 0)
				slot = 1;
			else
				continue;
			if (t->tgenabled != TRIGGER_FIRES_ALWAYS)
				ok = false;
			fp[n + slot] = HeapTupleHeaderGetXmin(ttup->t_data);
			found++;
		}
		systable_endscan(scan);
		table_close(trig, AccessShareLock);
		if (found < 2)
			ok = false;
		n += 2;
	}
	for (int i = 0; i < FINGERPRINT_LEN && ok; i++)
	{
		if (!catalog_xid_visible(fp[i], snap))
			ok = false;
	}
	return ok;
}

static CacheScope *
scope_build(Snapshot snap, bool shared)
{
	MemoryContext cxt;
	CacheScope *scope;

	/* moved under TopMemoryContext once built, so an error leaks nothing */
	cxt = AllocSetContextCreate(CurrentMemoryContext,
								"consent cache scope", ALLOCSET_DEFAULT_SIZES);
	scope = MemoryContextAllocZero(cxt, sizeof(CacheScope));
	scope->cxt = cxt;
	scope->shared = shared;
	scope->dbid = MyDatabaseId;

	if (shared)
	{
		/*
		 * Read the ring before anything else: writers registered after this
		 * point did not write before it (they register before writing), so
		 * rule 1 covers them.  Writers registered before it are classified
		 * against the build snapshot here.
		 */
		WriterSlot *copy = palloc(sizeof(WriterSlot) * WRITER_RING_SIZE);
		int			ncopy = 0;
		TransactionId horizon;

		LWLockAcquire(ring->lock, LW_EXCLUSIVE);
		if (!TransactionIdIsValid(ring->horizon))
			ring->horizon = ReadNextTransactionId();
		horizon = ring->horizon;
		LWLockRelease(ring->lock);

		/*
		 * A transaction in progress for the build snapshot that is older than
		 * the horizon (a prepared transaction from before a restart) may have
		 * written without registering: this scope is good for this snapshot
		 * only.
		 */
		for (uint32 i = 0; i < snap->xcnt; i++)
		{
			if (TransactionIdPrecedes(snap->xip[i], horizon))
				scope->stale = true;
		}

		LWLockAcquire(ring->lock, LW_SHARED);
		scope->ring_seq = ring->next_seq;
		if (TransactionIdIsValid(ring->max_evicted) &&
			!TransactionIdPrecedes(ring->max_evicted, snap->xmin))
			scope->stale = true;	/* an unclassifiable writer was evicted */
		for (uint64 seq = (ring->next_seq > WRITER_RING_SIZE ?
						   ring->next_seq - WRITER_RING_SIZE : 0);
			 seq < ring->next_seq; seq++)
			copy[ncopy++] = ring->slots[seq % WRITER_RING_SIZE];
		LWLockRelease(ring->lock);

		/* commit status lookups may read clog: not under the lock */
		for (int i = 0; i < ncopy && !scope->stale; i++)
		{
			WriterSlot *w = &copy[i];

			if (w->dbid != MyDatabaseId)
				continue;
			if (TransactionIdIsCurrentTransactionId(w->xid))
			{
				scope->stale = true;	/* own writes: this snapshot only */
				break;
			}
			if (TransactionIdPrecedes(w->xid, snap->xmin))
				continue;		/* settled before the snapshot: same for all */
			if (!xid_visible(w->xid, snap))
			{
				if (scope->ninvisible == MAX_INVISIBLE)
					scope->stale = true;
				else
					scope->invisible[scope->ninvisible++] = w->xid;
			}
		}
		pfree(copy);
		scope->build_xmax = snap->xmax;
		scope->build_xcnt = snap->xcnt;
		scope->build_xip = MemoryContextAlloc(cxt, sizeof(TransactionId) * Max(snap->xcnt, 1));
		memcpy(scope->build_xip, snap->xip, sizeof(TransactionId) * snap->xcnt);
		qsort(scope->build_xip, snap->xcnt, sizeof(TransactionId), xid_cmp);
	}

	consent_meta_load(&scope->meta);
	consent_catalog_load(&scope->cat, &scope->meta, snap, cxt);
	if (shared && !scope_fingerprint(&scope->meta, snap, scope->fingerprint))
		scope->stale = true;	/* writes may go unregistered */
	{
		Relation	rel = table_open(scope->meta.records, AccessShareLock);

		scope->records_estimate = rel->rd_rel->reltuples >= 0 ?
			rel->rd_rel->reltuples :
			(double) RelationGetNumberOfBlocks(rel) * 60.0;
		table_close(rel, NoLock);
	}
	if (shared)
		MemoryContextSetParent(cxt, TopMemoryContext);
	n_scope_builds++;
	return scope;
}

/*
 * Rules 1-3, 6 and 8 of the file header, for the validity data of a scope
 * or of a published map.
 */
static bool
validity_holds(uint64 ring_seq, TransactionId build_xmax,
			   const TransactionId *build_xip, uint32 build_xcnt,
			   const TransactionId *invisible, int ninvisible, Snapshot snap)
{
	/*
	 * Rule 8: snap must see everything the build snapshot saw.  An older
	 * snapshot (a cursor's) may not: anything running for snap that had
	 * already finished for the build snapshot tells.
	 */
	if (TransactionIdPrecedes(snap->xmax, build_xmax))
		return false;
	for (uint32 i = 0; i < snap->xcnt; i++)
	{
		TransactionId x = snap->xip[i];

		if (TransactionIdPrecedes(x, build_xmax) &&
			bsearch(&x, build_xip, build_xcnt,
					sizeof(TransactionId), xid_cmp) == NULL)
			return false;
	}
	if ((int32) (snap->xmax - build_xmax) > CACHE_MAX_XID_AGE ||
		(int32) (snap->xmax - build_xmax) < 0)
		return false;

	for (int i = 0; i < ninvisible; i++)
	{
		if (xid_visible(invisible[i], snap))
			return false;
	}

	LWLockAcquire(ring->lock, LW_SHARED);
	if (ring->next_seq - ring_seq > WRITER_RING_SIZE)
	{
		LWLockRelease(ring->lock);
		return false;
	}
	{
		int			ncopy = (int) (ring->next_seq - ring_seq);
		WriterSlot *copy = NULL;
		bool		valid = true;

		if (ncopy > 0)
		{
			copy = palloc(sizeof(WriterSlot) * ncopy);
			for (int i = 0; i < ncopy; i++)
				copy[i] = ring->slots[(ring_seq + i) % WRITER_RING_SIZE];
		}
		LWLockRelease(ring->lock);
		for (int i = 0; i < ncopy && valid; i++)
		{
			if (copy[i].dbid == MyDatabaseId && xid_visible(copy[i].xid, snap))
				valid = false;
		}
		if (copy)
			pfree(copy);
		return valid;
	}
}

/* Rules 1-8 of the file header. */
static bool
scope_valid_for(CacheScope *scope, Snapshot snap)
{
	if (scope->stale || scope->dbid != MyDatabaseId)
		return false;
	if (RecoveryInProgress() || current_xact_wrote())
		return false;
	return validity_holds(scope->ring_seq, scope->build_xmax,
						  scope->build_xip, scope->build_xcnt,
						  scope->invisible, scope->ninvisible, snap);
}

static bool
shared_scope_allowed(void)
{
	/*
	 * Not in a parallel worker: its leader's writes are its own
	 * (TransactionIdIsCurrentTransactionId) but were registered by the
	 * leader, so current_xact_wrote() cannot tell.
	 */
	return ring != NULL && consent_cross_statement_cache &&
		!IsParallelWorker() && !RecoveryInProgress() && !current_xact_wrote();
}

static void
callsite_remember_snapshot(CallSite *cs, Snapshot snap)
{
	bool		with_subxip = !snap->suboverflowed || snap->takenDuringRecovery;

	cs->snap = snap;
	cs->snap_xmin = snap->xmin;
	cs->snap_xmax = snap->xmax;
	cs->snap_cid = snap->curcid;
	cs->snap_xcnt = snap->xcnt;
	cs->snap_subxcnt = snap->subxcnt;
	cs->snap_suboverflowed = snap->suboverflowed;
	cs->snap_recovery = snap->takenDuringRecovery;
	cs->snap_lxid = MyProc->lxid;
	if (cs->snap_xip)
		pfree(cs->snap_xip);
	if (cs->snap_subxip)
		pfree(cs->snap_subxip);
	cs->snap_xip = MemoryContextAlloc(cs->mcxt, sizeof(TransactionId) * Max(snap->xcnt, 1));
	memcpy(cs->snap_xip, snap->xip, sizeof(TransactionId) * snap->xcnt);
	cs->snap_subxip = MemoryContextAlloc(cs->mcxt,
										 sizeof(TransactionId) * Max(snap->subxcnt, 1));
	if (with_subxip && snap->subxcnt > 0)
		memcpy(cs->snap_subxip, snap->subxip, sizeof(TransactionId) * snap->subxcnt);
}

/* SERIALIZABLE: answers from a shared scope must leave predicate locks. */
static LocalTransactionId serializable_locked_lxid = InvalidLocalTransactionId;

static void
serializable_lock_tables(const CacheScope *scope, Snapshot snap)
{
	Oid			rels[3] = {scope->meta.records, scope->meta.purposes, scope->meta.notices};

	if (!IsolationIsSerializable() || serializable_locked_lxid == MyProc->lxid)
		return;
	for (int i = 0; i < 3; i++)
	{
		Relation	rel = table_open(rels[i], AccessShareLock);

		PredicateLockRelation(rel, snap);
		table_close(rel, NoLock);
	}
	serializable_locked_lxid = MyProc->lxid;
}

/*
 * Make cs->scope valid for the active snapshot.  Cheap when nothing
 * changed: a few comparisons.
 */
static void
callsite_attach(CallSite *cs)
{
	Snapshot	snap = GetActiveSnapshot();

	if (cs->scope != NULL && consent_same_snapshot(cs, snap))
	{
		cs->snap = snap;		/* an equal snapshot may have moved */
		return;
	}

	/* another snapshot: find or build a scope for it */
	if (cs->scope != NULL && cs->scope->owned_by_callsite)
		scope_free(cs->scope);
	cs->scope = NULL;

	if (shared_scope_allowed())
	{
		if (shared_scope != NULL && !scope_valid_for(shared_scope, snap))
		{
			scope_retire(shared_scope);
			shared_scope = NULL;
		}
		if (shared_scope == NULL)
		{
			CacheScope *s = scope_build(snap, true);

			if (!s->stale)
				shared_scope = s;
			else
				scope_retire(s);	/* usable for this snapshot only */
			cs->scope = s;
		}
		else
			cs->scope = shared_scope;
	}
	else
	{
		MemoryContext old = MemoryContextSwitchTo(cs->mcxt);

		cs->scope = scope_build(snap, false);
		cs->scope->owned_by_callsite = true;
		MemoryContextSwitchTo(old);
	}

	callsite_remember_snapshot(cs, snap);
	if (cs->scope->shared)
		serializable_lock_tables(cs->scope, snap);
	cs->meta = &cs->scope->meta;
	cs->cat = &cs->scope->cat;
	cs->fast_ok = false;
	cs->memo_n = 0;				/* resolved purposes point into the old catalog */
	cs->memo_datum = (Datum) 0;
	if (cs->memo_key)
	{
		pfree(cs->memo_key);
		cs->memo_key = NULL;
	}
}

CallSite *
consent_callsite(FunctionCallInfo fcinfo)
{
	CallSite   *cs = (CallSite *) fcinfo->flinfo->fn_extra;

	if (cs == NULL)
	{
		cs = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(CallSite));
		cs->mcxt = fcinfo->flinfo->fn_mcxt;
		/* the purpose is the last argument of every enforcement function */
		cs->purpose_stable = get_fn_expr_arg_stable(fcinfo->flinfo, PG_NARGS() - 1);
		fcinfo->flinfo->fn_extra = cs;
	}
	callsite_attach(cs);
	return cs;
}

/*
 * Resolve the purpose argument(s); memoised on the argument's bytes, so
 * that a constant purpose costs one memcmp per row.
 */
ResolvedPurpose *
consent_callsite_resolve(CallSite *cs, Datum *keys, int n)
{
	Size		total = 0;
	char	   *buf;
	char	   *p;

	/*
	 * The same Datum as last time: nothing to do.  Only for a constant
	 * argument: a per-row value may come at the same address with other
	 * bytes (per-tuple memory is reused).
	 */
	if (n == 1 && cs->purpose_stable && cs->memo_n == 1 && cs->memo_datum == keys[0])
		return cs->memo_rps;

	/* keys may arrive compressed or out of line, like any varlena */
	for (int i = 0; i < n; i++)
	{
		if (VARATT_IS_EXTENDED(DatumGetPointer(keys[i])))
			keys[i] = PointerGetDatum(PG_DETOAST_DATUM_PACKED(keys[i]));
		total += VARSIZE_ANY_EXHDR(DatumGetPointer(keys[i])) + 1;
	}

	if (cs->memo_key != NULL && cs->memo_n == n &&
		VARSIZE(cs->memo_key) - VARHDRSZ == total)
	{
		bool		same = true;

		p = VARDATA(cs->memo_key);
		for (int i = 0; i < n && same; i++)
		{
			struct varlena *k = (struct varlena *) DatumGetPointer(keys[i]);
			int			len = VARSIZE_ANY_EXHDR(k);

			same = (memcmp(p, VARDATA_ANY(k), len) == 0 && p[len] == '\0');
			p += len + 1;
		}
		if (same)
		{
			cs->memo_datum = (n == 1 && cs->purpose_stable) ? keys[0] : (Datum) 0;
			return cs->memo_rps;
		}
	}

	/* resolve afresh */
	if (cs->memo_key)
		pfree(cs->memo_key);
	if (cs->memo_rps)
		pfree(cs->memo_rps);
	cs->memo_key = NULL;
	cs->memo_rps = MemoryContextAlloc(cs->mcxt, n * sizeof(ResolvedPurpose));
	for (int i = 0; i < n; i++)
	{
		struct varlena *k = (struct varlena *) DatumGetPointer(keys[i]);

		consent_resolve(cs->cat, VARDATA_ANY(k), VARSIZE_ANY_EXHDR(k), &cs->memo_rps[i]);
	}
	buf = MemoryContextAlloc(cs->mcxt, VARHDRSZ + total);
	SET_VARSIZE(buf, VARHDRSZ + total);
	p = VARDATA(buf);
	for (int i = 0; i < n; i++)
	{
		struct varlena *k = (struct varlena *) DatumGetPointer(keys[i]);
		int			len = VARSIZE_ANY_EXHDR(k);

		memcpy(p, VARDATA_ANY(k), len);
		p[len] = '\0';
		p += len + 1;
	}
	cs->memo_key = (struct varlena *) buf;
	cs->memo_n = n;
	cs->memo_datum = (n == 1 && cs->purpose_stable) ? keys[0] : (Datum) 0;
	return cs->memo_rps;
}

/*
 * Parse the canonical text of a bigint (what int8out prints: no sign but
 * '-', no leading zeros, no spaces).  False for anything else, which then
 * cannot equal any subject of a dense map.  Runs once per record when a map
 * is loaded: no division on the common path (18 digits cannot overflow).
 */
static inline bool
parse_canonical_int8(const char *s, int len, int64 *out)
{
	bool		neg = false;
	uint64		v = 0;
	int			i = 0;

	if (len <= 0 || len > 20)
		return false;
	if (s[0] == '-')
	{
		neg = true;
		i = 1;
		if (len == 1)
			return false;
	}
	if (s[i] == '0' && len - i > 1)
		return false;
	if (neg && s[i] == '0')
		return false;			/* "-0" */
	if (len - i <= 18)
	{
		for (; i < len; i++)
		{
			if (s[i] < '0' || s[i] > '9')
				return false;
			v = v * 10 + (s[i] - '0');
		}
	}
	else
	{
		for (; i < len; i++)
		{
			if (s[i] < '0' || s[i] > '9')
				return false;
			if (v > (PG_UINT64_MAX - (s[i] - '0')) / 10)
				return false;
			v = v * 10 + (s[i] - '0');
		}
	}
	if (neg)
	{
		if (v > (uint64) PG_INT64_MAX + 1)
			return false;
		*out = (int64) (0 - v);
	}
	else
	{
		if (v > (uint64) PG_INT64_MAX)
			return false;
		*out = (int64) v;
	}
	return true;
}

static int
dense_until_cmp(const void *a, const void *b)
{
	int64		x = ((const DenseUntil *) a)->subject;
	int64		y = ((const DenseUntil *) b)->subject;

	return (x > y) - (x < y);
}

/*
 * Memory that counts against consent.cache_memory while a map loads: the
 * scope's, the load's, and that of scopes retired in this transaction
 * (freed at its end; a long transaction that sees many writes retires a
 * scope per statement).
 */
static Size
map_memory(CacheScope *scope, MemoryContext building)
{
	Size		total = MemoryContextMemAllocated(scope->cxt, true) +
		MemoryContextMemAllocated(building, true);

	for (CacheScope *r = retired_scopes; r; r = r->next_retired)
	{
		if (r != scope)
			total += MemoryContextMemAllocated(r->cxt, true);
	}
	return total;
}

/*
 * A record on the path, while a map loads and every subject so far is a
 * bigint: appended to a flat array (no hashing, no allocation per record),
 * turned into a dense map at the end.
 */
typedef struct FlatEntry
{
	int64		subject;
	TimestampTz until;			/* DT_NOEND: no expiry */
	uint8		pos;			/* path position of the record */
	bool		allow;
} FlatEntry;

/* Store one record's verdict in the general map, the nearest record winning. */
static void
map_put(BulkMap *bm, const char *data, int len, int pos, bool allow, TimestampTz until)
{
	SubjectEntry *e;
	bool		found;

	subjmap_keylen = len;
	e = subjmap_insert(bm->map, data, &found);
	if (!found)
	{
		uint16		len16 = (uint16) len;
		char	   *copy = MemoryContextAlloc(bm->cxt, sizeof(uint16) + len);

		memcpy(copy, &len16, sizeof(uint16));
		memcpy(copy + sizeof(uint16), data, len);
		e->key = copy + sizeof(uint16);
		e->keylen = len;
	}
	else if (e->pos <= pos)
		return;					/* a nearer record already decides */
	e->pos = pos;
	e->allow = allow;
	e->until = until;
}

/* Move the flat entries into the general map. */
static void
flat_to_map(BulkMap *bm, FlatEntry *flat, uint64 nflat)
{
	char		buf[24];

	if (bm->map == NULL)
		bm->map = subjmap_create(bm->cxt, Max(nflat, 1024), NULL);
	for (uint64 i = 0; i < nflat; i++)
	{
		int			len = pg_lltoa(flat[i].subject, buf);

		map_put(bm, buf, len, flat[i].pos, flat[i].allow, flat[i].until);
	}
}

/*
 * Turn the flat entries into a dense map when their subjects span a range
 * not much wider than their number; false (nothing done) otherwise.
 */
static bool
flat_to_dense(CacheScope *scope, BulkMap *bm, FlatEntry *flat, uint64 nflat, Size limit)
{
	int64		lo = PG_INT64_MAX;
	int64		hi = PG_INT64_MIN;
	uint64		span;
	MemoryContext cxt;
	uint8	   *nearest;
	int			nuntil = 0;

	if (nflat == 0)
		return false;
	for (uint64 i = 0; i < nflat; i++)
	{
		lo = Min(lo, flat[i].subject);
		hi = Max(hi, flat[i].subject);
	}
	/* hi - lo, not hi - lo + 1: the full int64 range would wrap to 0 */
	if ((uint64) hi - (uint64) lo >= 4 * nflat + 4096)
		return false;
	span = (uint64) hi - (uint64) lo + 1;
	if (span > (uint64) MaxAllocHugeSize ||
		map_memory(scope, bm->cxt) + 2 * span > limit)
		return false;

	cxt = AllocSetContextCreate(MemoryContextGetParent(bm->cxt), "consent dense map",
								ALLOCSET_DEFAULT_SIZES);
	bm->dense_verdict = MemoryContextAllocExtended(cxt, span, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	nearest = MemoryContextAllocExtended(bm->cxt, span, MCXT_ALLOC_HUGE);
	memset(nearest, 0xFF, span);
	for (uint64 i = 0; i < nflat; i++)
	{
		uint64		idx = (uint64) flat[i].subject - (uint64) lo;
		uint8		verdict;

		if (flat[i].pos >= nearest[idx])
			continue;			/* a nearer record decides */
		if (!flat[i].allow)
			verdict = DENSE_REFUSE;
		else if (flat[i].until == DT_NOEND)
			verdict = DENSE_ALLOW;
		else
			verdict = DENSE_UNTIL;
		if (bm->dense_verdict[idx] == DENSE_UNTIL)
			nuntil--;
		if (verdict == DENSE_UNTIL)
			nuntil++;
		nearest[idx] = flat[i].pos;
		bm->dense_verdict[idx] = verdict;
	}
	bm->dense_until = MemoryContextAlloc(cxt, Max(nuntil, 1) * sizeof(DenseUntil));
	bm->dense_nuntil = 0;
	for (uint64 i = 0; i < nflat && bm->dense_nuntil < nuntil; i++)
	{
		uint64		idx = (uint64) flat[i].subject - (uint64) lo;

		if (bm->dense_verdict[idx] == DENSE_UNTIL && nearest[idx] == flat[i].pos)
		{
			bm->dense_until[bm->dense_nuntil].subject = flat[i].subject;
			bm->dense_until[bm->dense_nuntil].until = flat[i].until;
			bm->dense_nuntil++;
		}
	}
	Assert(bm->dense_nuntil == nuntil);
	qsort(bm->dense_until, bm->dense_nuntil, sizeof(DenseUntil), dense_until_cmp);
	bm->dense_base = lo;
	bm->dense_n = span;
	bm->dense = true;
	MemoryContextDelete(bm->cxt);	/* the flat entries */
	bm->cxt = cxt;
	bm->map = NULL;
	return true;
}

/*
 * Load the verdict of every subject with a record on rp's path, in one
 * pass over consent.records under the scope's snapshot.  Subjects that are
 * all bigints in a compact range (the common case: customer ids) give a
 * dense map, one byte per id; anything else a hash map.  Gives up (and
 * marks the map failed) when the scope would outgrow consent.cache_memory.
 */
static BulkMap *
bulk_build(CallSite *cs, const ResolvedPurpose *rp)
{
	CacheScope *scope = cs->scope;
	const ConsentMeta *m = &scope->meta;
	BulkMap    *bm;
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	Size		limit = (Size) consent_cache_memory_kb * 1024;
	uint64		n = 0;
	MemoryContext old;
	FlatEntry  *flat;
	uint64		nflat = 0;
	uint64		flatcap = 1024;
	bool		all_int8 = true;

	/*
	 * The map is built in a context of the statement's and joins the scope
	 * only once complete: an error or a cancel part-way (the scope may
	 * outlive the transaction) leaves nothing half-built behind.
	 */
	bm = palloc0(sizeof(BulkMap));
	bm->purpose_id = rp->self->id;
	bm->cxt = AllocSetContextCreate(CurrentMemoryContext, "consent bulk map",
									ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(bm->cxt);
	flat = MemoryContextAllocExtended(bm->cxt, flatcap * sizeof(FlatEntry), MCXT_ALLOC_HUGE);

	rel = table_open(m->records, AccessShareLock);
	scan = table_beginscan(rel, cs->snap, 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		int32		pid = DatumGetInt32(slot_getattr(slot, m->r_purpose_id, &isnull));
		int			pos = -1;
		struct varlena *subj;
		const char *data;
		int			len;
		Oid			status;
		Datum		d;
		char	   *notice_key = NULL;
		int32		notice_version = 0;
		bool		allow;
		TimestampTz until;
		int64		v;

		for (int i = 0; i < rp->pathlen; i++)
		{
			if (rp->path[i] == pid)
			{
				pos = i;
				break;
			}
		}
		if (pos < 0)
			continue;

		status = DatumGetObjectId(slot_getattr(slot, m->r_status, &isnull));
		d = slot_getattr(slot, m->r_notice_key, &isnull);
		if (!isnull)
		{
			notice_key = TextDatumGetCString(d);
			notice_version = DatumGetInt32(slot_getattr(slot, m->r_notice_version, &isnull));
		}
		allow = consent_verdict_granted(m, &scope->cat, status, notice_key, notice_version);
		if (notice_key)
			pfree(notice_key);
		d = slot_getattr(slot, m->r_expires_at, &isnull);
		until = isnull ? DT_NOEND : DatumGetTimestampTz(d);

		subj = (struct varlena *) DatumGetPointer(slot_getattr(slot, m->r_subject, &isnull));
		if (VARATT_IS_EXTENDED(subj))
			subj = PG_DETOAST_DATUM_PACKED(subj);
		data = VARDATA_ANY(subj);
		len = VARSIZE_ANY_EXHDR(subj);

		if (all_int8 && parse_canonical_int8(data, len, &v))
		{
			if (nflat == flatcap)
			{
				flatcap *= 2;
				flat = repalloc_huge(flat, flatcap * sizeof(FlatEntry));
			}
			flat[nflat].subject = v;
			flat[nflat].until = until;
			flat[nflat].pos = pos;
			flat[nflat].allow = allow;
			nflat++;
		}
		else
		{
			if (all_int8)
			{
				/* a subject that is not a bigint: a hash map from here on */
				all_int8 = false;
				flat_to_map(bm, flat, nflat);
				pfree(flat);
				flat = NULL;
				nflat = 0;
			}
			map_put(bm, data, len, pos, allow, until);
		}

		if ((++n & 0xFFFF) == 0)
		{
			CHECK_FOR_INTERRUPTS();
			if (map_memory(scope, bm->cxt) > limit)
			{
				bm->failed = true;
				break;
			}
		}
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	table_close(rel, NoLock);

	if (!bm->failed && all_int8 && !flat_to_dense(scope, bm, flat, nflat, limit))
	{
		flat_to_map(bm, flat, nflat);	/* ids too sparse for a dense map */
		pfree(flat);
	}
	MemoryContextSwitchTo(old);

	if (!bm->failed && map_memory(scope, bm->cxt) > limit)
		bm->failed = true;
	if (bm->failed)
	{
		MemoryContextDelete(bm->cxt);
		bm->cxt = NULL;
		bm->map = NULL;
		bm->dense = false;
		ereport(DEBUG1,
				(errmsg("consent: bulk map for purpose %d exceeds consent.cache_memory; probing instead",
						rp->self->id)));
	}
	else
	{
		MemoryContextSetParent(bm->cxt, scope->cxt);
		n_map_builds++;
		if (bm->dense)
			n_dense_builds++;
	}
	{
		BulkMap    *kept = MemoryContextAlloc(scope->cxt, sizeof(BulkMap));

		*kept = *bm;
		pfree(bm);
		kept->next = scope->maps;
		scope->maps = kept;
		return kept;
	}
}

/* Verdict of one subject from a map: allowed? */
static inline bool
bulk_lookup(BulkMap *bm, ConsentSubject *subj, bool default_allowed)
{
	if (bm->dense)
	{
		int64		v;
		uint64		idx;
		DenseUntil	probe;
		DenseUntil *hit;

		if (subj->is_int)
			v = subj->ival;
		else if (!parse_canonical_int8(subj->str, subj->len, &v))
			return default_allowed;
		idx = (uint64) v - (uint64) bm->dense_base;
		if (idx >= bm->dense_n)
			return default_allowed;
		switch (bm->dense_verdict[idx])
		{
			case DENSE_NONE:
				return default_allowed;
			case DENSE_REFUSE:
				return false;
			case DENSE_ALLOW:
				return true;
			default:
				probe.subject = v;
				hit = bsearch(&probe, bm->dense_until, bm->dense_nuntil,
							  sizeof(DenseUntil), dense_until_cmp);
				return hit != NULL && hit->until > GetCurrentTransactionStartTimestamp();
		}
	}
	else
	{
		SubjectEntry *e;

		consent_subject_text(subj);
		subjmap_keylen = subj->len;
		e = subjmap_lookup(bm->map, subj->str);
		if (e == NULL)
			return default_allowed;
		return e->allow && e->until > GetCurrentTransactionStartTimestamp();
	}
}

/* May this scope use and publish shared maps? */
static inline bool
shared_maps_usable(const CacheScope *scope)
{
	return mapdir != NULL && scope->shared && !scope->stale && scope == shared_scope;
}

/*
 * Publish a dense map just built under the backend's shared scope, for the
 * other backends of the database: copy it with the scope's validity data
 * into a new segment and put it in the directory in place of the previous
 * map of the purpose (which lives on until its last user detaches).
 */
static void
shared_map_publish(CacheScope *scope, BulkMap *bm)
{
	Size		size;
	Size		off_xip,
				off_invisible,
				off_until,
				off_verdict;
	dsm_segment *seg;
	SharedMapHeader *h;
	char	   *base;
	dsm_handle	old = DSM_HANDLE_INVALID;
	SharedMapSlot *slot = NULL;

	size = MAXALIGN(sizeof(SharedMapHeader));
	off_xip = size;
	size += MAXALIGN(sizeof(TransactionId) * Max(scope->build_xcnt, 1));
	off_invisible = size;
	size += MAXALIGN(sizeof(TransactionId) * Max(scope->ninvisible, 1));
	off_until = size;
	size += MAXALIGN(sizeof(DenseUntil) * Max(bm->dense_nuntil, 1));
	off_verdict = size;
	size += bm->dense_n;

	seg = dsm_create(size, DSM_CREATE_NULL_IF_MAXSEGMENTS);
	if (seg == NULL)
		return;					/* no segment to spare: keep it private */
	base = dsm_segment_address(seg);
	h = (SharedMapHeader *) base;
	memset(h, 0, sizeof(SharedMapHeader));
	h->dbid = MyDatabaseId;
	h->records_relid = scope->meta.records;
	h->purpose_id = bm->purpose_id;
	memcpy(h->fingerprint, scope->fingerprint, sizeof(h->fingerprint));
	h->ring_seq = scope->ring_seq;
	h->build_xmax = scope->build_xmax;
	h->build_xcnt = scope->build_xcnt;
	h->ninvisible = scope->ninvisible;
	h->dense_base = bm->dense_base;
	h->dense_n = bm->dense_n;
	h->dense_nuntil = bm->dense_nuntil;
	h->off_xip = off_xip;
	h->off_invisible = off_invisible;
	h->off_until = off_until;
	h->off_verdict = off_verdict;
	memcpy(base + off_xip, scope->build_xip, sizeof(TransactionId) * scope->build_xcnt);
	memcpy(base + off_invisible, scope->invisible, sizeof(TransactionId) * scope->ninvisible);
	memcpy(base + off_until, bm->dense_until, sizeof(DenseUntil) * bm->dense_nuntil);
	memcpy(base + off_verdict, bm->dense_verdict, bm->dense_n);
	dsm_pin_segment(seg);

	LWLockAcquire(mapdir->lock, LW_EXCLUSIVE);
	for (int i = 0; i < SHARED_MAP_SLOTS; i++)
	{
		SharedMapSlot *sl = &mapdir->slots[i];

		if (sl->dbid == MyDatabaseId && sl->purpose_id == bm->purpose_id)
		{
			slot = sl;
			break;
		}
		if (sl->dbid == InvalidOid)
		{
			if (slot == NULL || slot->dbid != InvalidOid)
				slot = sl;
		}
		else if (slot == NULL || (slot->dbid != InvalidOid && sl->published < slot->published))
			slot = sl;			/* the oldest, unless a free one turns up */
	}
	if (slot->dbid != InvalidOid)
		old = slot->handle;
	slot->dbid = MyDatabaseId;
	slot->purpose_id = bm->purpose_id;
	slot->handle = dsm_segment_handle(seg);
	slot->published = pg_atomic_add_fetch_u64(&mapdir->generation, 1);
	LWLockRelease(mapdir->lock);

	if (old != DSM_HANDLE_INVALID)
		dsm_unpin_segment(old);
	dsm_detach(seg);			/* this backend keeps its own copy */
	n_maps_published++;
}

/*
 * Use the published map of rp's purpose, when there is one valid for the
 * call site's snapshot and built under the same definitions.  NULL when
 * not.
 */
static BulkMap *
shared_map_attach(CallSite *cs, const ResolvedPurpose *rp, bool *retry)
{
	CacheScope *scope = cs->scope;
	dsm_handle	handle = DSM_HANDLE_INVALID;
	dsm_segment *seg;
	SharedMapHeader *h;
	char	   *base;
	BulkMap    *bm;

	*retry = false;
	LWLockAcquire(mapdir->lock, LW_SHARED);
	for (int i = 0; i < SHARED_MAP_SLOTS; i++)
	{
		if (mapdir->slots[i].dbid == MyDatabaseId &&
			mapdir->slots[i].purpose_id == rp->self->id)
		{
			handle = mapdir->slots[i].handle;
			break;
		}
	}
	LWLockRelease(mapdir->lock);
	if (handle == DSM_HANDLE_INVALID)
		return NULL;
	if (dsm_find_mapping(handle) != NULL)
	{
		/* still mapped for a retired scope, until this transaction ends */
		*retry = true;
		return NULL;
	}
	seg = dsm_attach(handle);
	if (seg == NULL)
		return NULL;			/* replaced and gone meanwhile */
	base = dsm_segment_address(seg);
	h = (SharedMapHeader *) base;
	if (h->dbid != MyDatabaseId || h->records_relid != scope->meta.records ||
		h->purpose_id != rp->self->id ||
		memcmp(h->fingerprint, scope->fingerprint, sizeof(h->fingerprint)) != 0 ||
		!validity_holds(h->ring_seq, h->build_xmax,
						(TransactionId *) (base + h->off_xip), h->build_xcnt,
						(TransactionId *) (base + h->off_invisible), h->ninvisible,
						cs->snap))
	{
		dsm_detach(seg);
		return NULL;
	}
	dsm_pin_mapping(seg);		/* kept as long as the scope */

	bm = MemoryContextAllocZero(scope->cxt, sizeof(BulkMap));
	bm->purpose_id = rp->self->id;
	bm->dense = true;
	bm->dense_base = h->dense_base;
	bm->dense_n = h->dense_n;
	bm->dense_verdict = (uint8 *) (base + h->off_verdict);
	bm->dense_nuntil = h->dense_nuntil;
	bm->dense_until = (DenseUntil *) (base + h->off_until);
	bm->seg = seg;
	bm->next = scope->maps;
	scope->maps = bm;
	n_maps_attached++;
	return bm;
}

/*
 * Look for a published map of rp's purpose, once per scope and purpose
 * and directory generation (a lookup takes the directory's lock).
 */
static BulkMap *
shared_map_lookup(CallSite *cs, const ResolvedPurpose *rp)
{
	CacheScope *scope = cs->scope;
	uint64		gen = pg_atomic_read_u64(&mapdir->generation);
	int			i;
	bool		retry;
	BulkMap    *bm;

	for (i = 0; i < scope->nlooked; i++)
	{
		if (scope->looked_purpose[i] == rp->self->id)
			break;
	}
	if (i < scope->nlooked && scope->looked_gen[i] == gen)
		return NULL;			/* looked already; nothing published since */
	bm = shared_map_attach(cs, rp, &retry);

	/*
	 * Not again until something is published (also when the map is still
	 * mapped for a retired scope: this scope then does without it, rather
	 * than look it up per row).
	 */
	if (bm == NULL)
	{
		if (i == scope->nlooked)
		{
			if (scope->nlooked < (int) lengthof(scope->looked_purpose))
				scope->nlooked++;
			else
				i = rp->self->id % lengthof(scope->looked_purpose);
		}
		scope->looked_purpose[i] = rp->self->id;
		scope->looked_gen[i] = gen;
	}
	return bm;
}

static BulkMap *
bulk_find(CacheScope *scope, int32 purpose_id)
{
	for (BulkMap *bm = scope->maps; bm; bm = bm->next)
	{
		if (bm->purpose_id == purpose_id)
			return bm;
	}
	return NULL;
}

bool
consent_callsite_check(CallSite *cs, ConsentSubject *subj,
					   const ResolvedPurpose *rp)
{
	BulkMap    *bm;
	DecisiveRecord rec;
	bool		found;
	Decision	d;

	if (rp->self->retired)
		return false;

	/*
	 * A map is loaded when one call site has probed more than
	 * consent.bulk_threshold times (a scan), or when probes made under a
	 * scope kept across statements have cost about what loading would (many
	 * point lookups): loading reads each record once, a probe costs about as
	 * much as reading PROBE_COST_IN_RECORDS.  Like renting skis until their
	 * price is paid, this is never much worse than the better of the two.
	 */
	bm = consent_bulk_threshold >= 0 ? bulk_find(cs->scope, rp->self->id) : NULL;
	if (bm == NULL && consent_bulk_threshold >= 0 && consent_cache_memory_kb > 0)
	{
		uint64		rent = Max((uint64) consent_bulk_threshold,
							   (uint64) (cs->scope->records_estimate / PROBE_COST_IN_RECORDS));

		/*
		 * Under the backend's shared scope, a map another backend published
		 * may serve; and since a map built here is published for all, the
		 * probes of all backends count towards its price.
		 */
		if (shared_maps_usable(cs->scope))
			bm = shared_map_lookup(cs, rp);
		if (bm == NULL &&
			(cs->nprobes >= (uint64) consent_bulk_threshold ||
			 (!cs->scope->owned_by_callsite && cs->scope->nprobes >= rent) ||
			 (shared_maps_usable(cs->scope) &&
			  pg_atomic_read_u64(&mapdir->probes) >= rent)))
		{
			bm = bulk_build(cs, rp);
			if (shared_maps_usable(cs->scope))
			{
				pg_atomic_write_u64(&mapdir->probes, 0);
				/*
				 * Not a map built under a snapshot that misses committed
				 * writes (a REPEATABLE READ transaction's): newer snapshots
				 * could not use it.
				 */
				if (bm->dense && !bm->failed && bm->seg == NULL &&
					cs->scope->ninvisible == 0)
					shared_map_publish(cs->scope, bm);
			}
		}
	}

	if (bm != NULL && !bm->failed)
	{
		n_map_hits++;
		if (bm->dense && cs->memo_n == 1 && cs->memo_datum != (Datum) 0 &&
			cs->memo_rps[0].self == rp->self)
		{
			cs->fast_ok = true;
			cs->fast_key = cs->memo_datum;
			cs->fast_default = rp->self->default_allowed;
			cs->fast_base = bm->dense_base;
			cs->fast_n = bm->dense_n;
			cs->fast_verdict = bm->dense_verdict;
		}
		return bulk_lookup(bm, subj, rp->self->default_allowed);
	}

	cs->nprobes++;
	cs->scope->nprobes++;
	if (shared_maps_usable(cs->scope))
		pg_atomic_fetch_add_u64(&mapdir->probes, 1);
	n_probes++;
	consent_subject_text(subj);
	consent_probe(cs->meta, cs->snap, subj->str, subj->len, rp, 1, &rec, &found);
	consent_decide(cs->meta, cs->cat, rp, found ? &rec : NULL,
				   GetCurrentTransactionStartTimestamp(), &d);
	if (found && rec.notice_key)
		pfree(rec.notice_key);
	return d.allowed;
}

/*
 * consent.cache_info(): what this backend's caches did, for tests and
 * troubleshooting.  Counters are per backend and never reset.
 */
Datum
consent_cache_info(PG_FUNCTION_ARGS)
{
	char		buf[400];

	snprintf(buf, sizeof(buf),
			 "{\"scope_builds\": " UINT64_FORMAT ", \"map_builds\": " UINT64_FORMAT
			 ", \"dense_map_builds\": " UINT64_FORMAT
			 ", \"maps_published\": " UINT64_FORMAT ", \"maps_attached\": " UINT64_FORMAT
			 ", \"map_hits\": " UINT64_FORMAT ", \"probes\": " UINT64_FORMAT
			 ", \"shared_memory\": %s, \"shared_scope\": %s}",
			 n_scope_builds, n_map_builds, n_dense_builds,
			 n_maps_published, n_maps_attached,
			 n_map_hits + consent_fast_hits, n_probes,
			 ring != NULL ? "true" : "false",
			 shared_scope != NULL ? "true" : "false");
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf)));
}

void
consent_cache_init(void)
{
	DefineCustomIntVariable("consent.bulk_threshold",
							"Probes at one call site after which consent checks load a bulk map.",
							"-1 never loads one (always index probes); 0 loads one at the first call.",
							&consent_bulk_threshold,
							1000, -1, INT_MAX,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("consent.cache_memory",
							"Memory a backend may use for consent bulk maps.",
							"Past it, checks fall back to index probes. 0 disables bulk maps.",
							&consent_cache_memory_kb,
							262144, 0, MAX_KILOBYTES,
							PGC_USERSET, GUC_UNIT_KB,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("consent.cross_statement_cache",
							 "Keep consent caches across statements and transactions.",
							 "Needs shared_preload_libraries = 'consent'; exact under MVCC either way.",
							 &consent_cross_statement_cache,
							 true,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	RegisterXactCallback(cache_xact_callback, NULL);
	CacheRegisterRelcacheCallback(cache_relcache_callback, (Datum) 0);

	if (process_shared_preload_libraries_in_progress)
	{
		prev_process_utility = ProcessUtility_hook;
		ProcessUtility_hook = cache_process_utility;
	}
}
