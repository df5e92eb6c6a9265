/*-------------------------------------------------------------------------
 *
 * cache.h
 *		Call-site state of the enforcement functions and the caches
 *		behind them (see cache.c for the exactness argument).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CONSENT_CACHE_H
#define CONSENT_CACHE_H

#include "postgres.h"

#include "access/attnum.h"
#include "fmgr.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/snapshot.h"

#include "enforce.h"

/* OIDs and attribute numbers of the extension's objects in this database. */
typedef struct ConsentMeta
{
	Oid			records;
	Oid			records_pkey;
	Oid			purposes;
	Oid			notices;
	AttrNumber	r_subject,
				r_purpose_id,
				r_status,
				r_expires_at,
				r_notice_key,
				r_notice_version;
	AttrNumber	p_id,
				p_key,
				p_legal_basis,
				p_retired_at;
	AttrNumber	n_key,
				n_version,
				n_material;
	Oid			st_pending,
				st_granted,
				st_denied,
				st_withdrawn,
				st_expired;
	Oid			lb_consent,
				lb_explicit;
} ConsentMeta;

typedef struct NoticeMaterial
{
	char	   *key;
	int32		max_material_version;
} NoticeMaterial;

/* Purposes (sorted by key) and material notice versions (sorted by key). */
typedef struct ConsentCatalog
{
	int			npurposes;
	PurposeInfo *purposes;
	int			nnotices;
	NoticeMaterial *notices;
} ConsentCatalog;

typedef struct CacheScope CacheScope;

/*
 * A subject as the caller gave it: its canonical text and, for bigint
 * subjects, the integer (whose text is made only when needed).
 */
typedef struct ConsentSubject
{
	const char *str;			/* NULL until made, for is_int */
	int			len;
	bool		is_int;
	int64		ival;
	char		buf[40];		/* bigint: 20, uuid: 36 */
} ConsentSubject;

static inline void
consent_subject_text(ConsentSubject *s)
{
	if (s->str == NULL)
	{
		s->len = pg_lltoa(s->ival, s->buf);
		s->str = s->buf;
	}
}

/* fn_extra of every enforcement function */
typedef struct CallSite
{
	MemoryContext mcxt;			/* fn_mcxt: lives as long as the call site */

	/*
	 * The snapshot the scope below was checked against, and what identifies
	 * its contents (see consent_same_snapshot).  "snap" is the active
	 * snapshot of the latest call: an equal snapshot may live at another
	 * address.
	 */
	Snapshot	snap;
	TransactionId snap_xmin;
	TransactionId snap_xmax;
	CommandId	snap_cid;
	uint32		snap_xcnt;
	int32		snap_subxcnt;
	bool		snap_suboverflowed;
	bool		snap_recovery;
	LocalTransactionId snap_lxid;	/* a scope may be freed at commit */
	TransactionId *snap_xip;
	TransactionId *snap_subxip;

	CacheScope *scope;			/* catalog and bulk maps valid for snap */
	const ConsentMeta *meta;	/* == &scope->meta */
	const ConsentCatalog *cat;	/* == &scope->cat */

	/* memo of the last resolved purpose argument */
	Datum		memo_datum;		/* the argument's Datum, when one key */
	bool		purpose_stable; /* purpose argument is a Const or external Param */
	struct varlena *memo_key;
	int			memo_n;
	ResolvedPurpose *memo_rps;

	uint64		nprobes;		/* index probes made by this call site */

	/*
	 * Fast path for bigint subjects: set once a call with one purpose has
	 * been answered from a dense map; valid while the snapshot and the
	 * purpose argument stay the same.
	 */
	bool		fast_ok;
	Datum		fast_key;
	bool		fast_default;
	int64		fast_base;
	uint64		fast_n;
	const uint8 *fast_verdict;
} CallSite;

/* values of a dense map's verdict bytes */
#define DENSE_NONE		0		/* no record on the path: the default */
#define DENSE_REFUSE	1
#define DENSE_ALLOW		2		/* a grant without expiry */
#define DENSE_UNTIL		3		/* a grant with expiry: ask the map */

extern uint64 consent_fast_hits;

/*
 * Does "snap" see exactly what the call site's snapshot saw?  Same xmin,
 * xmax and command id, and the same running transactions.  (The active
 * snapshot is always a copy, whose snapXactCompletionCount is zero, so the
 * arrays are compared; they are short, and this runs for every row, so it
 * is written out inline.)  A copy leaves out the subxip array when it
 * overflowed, except during recovery, when it holds everything.
 */
static inline bool
consent_same_snapshot(const CallSite *cs, Snapshot snap)
{
	if (snap->xmin != cs->snap_xmin || snap->xmax != cs->snap_xmax ||
		MyProc->lxid != cs->snap_lxid ||
		snap->curcid != cs->snap_cid || snap->xcnt != cs->snap_xcnt ||
		snap->subxcnt != cs->snap_subxcnt ||
		snap->suboverflowed != cs->snap_suboverflowed ||
		snap->takenDuringRecovery != cs->snap_recovery)
		return false;
	for (uint32 i = 0; i < snap->xcnt; i++)
	{
		if (snap->xip[i] != cs->snap_xip[i])
			return false;
	}
	if (!snap->suboverflowed || snap->takenDuringRecovery)
	{
		for (int32 i = 0; i < snap->subxcnt; i++)
		{
			if (snap->subxip[i] != cs->snap_subxip[i])
				return false;
		}
	}
	return true;
}

/*
 * Answer has(bigint, purpose) without leaving the caller, when the call
 * site's fast path applies.  Returns false when it does not (then take the
 * general path).
 */
static inline bool
consent_fast_int8(FunctionCallInfo fcinfo, Datum key, int64 v, bool *allowed)
{
	CallSite   *cs = (CallSite *) fcinfo->flinfo->fn_extra;
	Snapshot	snap;
	uint64		idx;

	if (cs == NULL || !cs->fast_ok || cs->fast_key != key)
		return false;
	snap = GetActiveSnapshot();
	if (snap != cs->snap || !consent_same_snapshot(cs, snap))
		return false;
	idx = (uint64) v - (uint64) cs->fast_base;
	if (idx >= cs->fast_n)
	{
		*allowed = cs->fast_default;
		consent_fast_hits++;
		return true;
	}
	switch (cs->fast_verdict[idx])
	{
		case DENSE_NONE:
			*allowed = cs->fast_default;
			break;
		case DENSE_REFUSE:
			*allowed = false;
			break;
		case DENSE_ALLOW:
			*allowed = true;
			break;
		default:
			return false;		/* expiry to compare: the general path */
	}
	consent_fast_hits++;
	return true;
}

/* GUCs */
extern int	consent_bulk_threshold;
extern int	consent_cache_memory_kb;
extern bool consent_cross_statement_cache;

extern void consent_cache_init(void);

/* Under preload: shared memory, requested and set up (consent.c). */
extern void consent_cache_shmem_request(void);
extern void consent_cache_shmem_startup(void);
extern CallSite *consent_callsite(FunctionCallInfo fcinfo);
extern ResolvedPurpose *consent_callsite_resolve(CallSite *cs, Datum *keys, int n);
extern bool consent_callsite_check(CallSite *cs, ConsentSubject *subj,
								   const ResolvedPurpose *rp);

/* enforce.c */
extern void consent_meta_load(ConsentMeta *m);
extern void consent_catalog_load(ConsentCatalog *cat, const ConsentMeta *m,
								 Snapshot snapshot, MemoryContext mcxt);
extern void consent_resolve(const ConsentCatalog *cat, const char *key, int keylen,
							ResolvedPurpose *out);
extern void consent_decide(const ConsentMeta *m, const ConsentCatalog *cat,
						   const ResolvedPurpose *rp, const DecisiveRecord *rec,
						   TimestampTz now, Decision *d);
extern void consent_probe(const ConsentMeta *m, Snapshot snapshot,
						  const char *subject, int subjlen,
						  const ResolvedPurpose *rps, int n,
						  DecisiveRecord *nearest, bool *has);
extern bool consent_verdict_granted(const ConsentMeta *m, const ConsentCatalog *cat,
									Oid status, const char *notice_key,
									int32 notice_version);

#endif							/* CONSENT_CACHE_H */
