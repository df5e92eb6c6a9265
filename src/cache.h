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
#include "utils/builtins.h"
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

	/* the snapshot the scope below was checked against */
	Snapshot	snap;
	TransactionId snap_xmin;
	TransactionId snap_xmax;
	CommandId	snap_cid;

	CacheScope *scope;			/* catalog and bulk maps valid for snap */
	const ConsentMeta *meta;	/* == &scope->meta */
	const ConsentCatalog *cat;	/* == &scope->cat */

	/* memo of the last resolved purpose argument */
	Datum		memo_datum;		/* the argument's Datum, when one key */
	struct varlena *memo_key;
	int			memo_n;
	ResolvedPurpose *memo_rps;

	uint64		nprobes;		/* index probes made by this call site */
} CallSite;

/* GUCs */
extern int	consent_bulk_threshold;
extern int	consent_cache_memory_kb;
extern bool consent_cross_statement_cache;

extern void consent_cache_init(void);
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
