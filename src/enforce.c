/*-------------------------------------------------------------------------
 *
 * enforce.c
 *		The effective rule, in C, without SPI: consent.has, has_all,
 *		has_any, mask, and the explanatory consent.explain behind
 *		consent.status and consent.decisions.
 *
 * The rule (docs/recording.md, docs/enforcement.md):
 *
 *	 - a retired purpose is never allowed;
 *	 - otherwise the nearest record on the path from the purpose up to its
 *	   root decides: a grant counts while it is unexpired at the
 *	   transaction's time (now()) and its notice has not been superseded
 *	   by a material version; every other status refuses;
 *	 - with no record on the path, the purpose's legal basis decides:
 *	   consent and explicit_consent refuse (opt-in), every other basis
 *	   allows (legitimate interests until the person objects, which is a
 *	   record).
 *
 * Everything is read under the active snapshot, so each call answers as
 * plain SQL over the consent tables would in the calling statement.
 *
 * Per call site (fn_extra) we keep the purpose catalog and the notices'
 * latest material versions, loaded once per snapshot, and the purpose
 * paths resolved from it.  Records are found through the primary key
 * (subject, purpose_id) with one index scan per subject, or, once a call
 * site has probed many subjects, through the bulk cache (cache.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_enum.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/uuid.h"
#include "utils/varlena.h"
#include "lib/stringinfo.h"

#include "consent.h"
#include "enforce.h"
#include "cache.h"

PG_FUNCTION_INFO_V1(consent_has_text);
PG_FUNCTION_INFO_V1(consent_has_int8);
PG_FUNCTION_INFO_V1(consent_has_uuid);
PG_FUNCTION_INFO_V1(consent_has_all_text);
PG_FUNCTION_INFO_V1(consent_has_all_int8);
PG_FUNCTION_INFO_V1(consent_has_all_uuid);
PG_FUNCTION_INFO_V1(consent_has_any_text);
PG_FUNCTION_INFO_V1(consent_has_any_int8);
PG_FUNCTION_INFO_V1(consent_has_any_uuid);
PG_FUNCTION_INFO_V1(consent_mask_text);
PG_FUNCTION_INFO_V1(consent_mask_int8);
PG_FUNCTION_INFO_V1(consent_mask_uuid);
PG_FUNCTION_INFO_V1(consent_explain);

/* ----------------------------------------------------------------
 * Catalog: object OIDs, attribute numbers and enum labels
 * ----------------------------------------------------------------
 */

void
consent_meta_load(ConsentMeta *m)
{
	Oid			nsp = consent_namespace();

	m->records = consent_relid(nsp, "records");
	m->records_pkey = consent_relid(nsp, "records_pkey");
	m->purposes = consent_relid(nsp, "purposes");
	m->notices = consent_relid(nsp, "notices");

	m->r_subject = consent_attnum(m->records, "subject");
	m->r_purpose_id = consent_attnum(m->records, "purpose_id");
	m->r_status = consent_attnum(m->records, "status");
	m->r_expires_at = consent_attnum(m->records, "expires_at");
	m->r_notice_key = consent_attnum(m->records, "notice_key");
	m->r_notice_version = consent_attnum(m->records, "notice_version");

	m->p_id = consent_attnum(m->purposes, "id");
	m->p_key = consent_attnum(m->purposes, "key");
	m->p_legal_basis = consent_attnum(m->purposes, "legal_basis");
	m->p_retired_at = consent_attnum(m->purposes, "retired_at");

	m->n_key = consent_attnum(m->notices, "key");
	m->n_version = consent_attnum(m->notices, "version");
	m->n_material = consent_attnum(m->notices, "material");

	m->st_pending = consent_enum_label(nsp, "status", "pending");
	m->st_granted = consent_enum_label(nsp, "status", "granted");
	m->st_denied = consent_enum_label(nsp, "status", "denied");
	m->st_withdrawn = consent_enum_label(nsp, "status", "withdrawn");
	m->st_expired = consent_enum_label(nsp, "status", "expired");
	m->lb_consent = consent_enum_label(nsp, "legal_basis", "consent");
	m->lb_explicit = consent_enum_label(nsp, "legal_basis", "explicit_consent");
}

/* ----------------------------------------------------------------
 * Purpose catalog and notices, loaded under one snapshot
 * ----------------------------------------------------------------
 */

static int
purpose_info_cmp(const void *a, const void *b)
{
	const PurposeInfo *pa = (const PurposeInfo *) a;
	const PurposeInfo *pb = (const PurposeInfo *) b;
	int			c = memcmp(pa->key, pb->key, Min(pa->keylen, pb->keylen));

	if (c != 0)
		return c;
	return pa->keylen - pb->keylen;
}

static int
notice_material_cmp(const void *a, const void *b)
{
	return strcmp(((const NoticeMaterial *) a)->key,
				  ((const NoticeMaterial *) b)->key);
}

/*
 * Read consent.purposes and the material versions of consent.notices under
 * "snapshot" into memory allocated in "mcxt".  Both tables are small.
 */
void
consent_catalog_load(ConsentCatalog *cat, const ConsentMeta *m,
					 Snapshot snapshot, MemoryContext mcxt)
{
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	int			alloc;

	cat->npurposes = 0;
	cat->nnotices = 0;

	/* purposes */
	rel = table_open(m->purposes, AccessShareLock);
	alloc = 16;
	cat->purposes = MemoryContextAlloc(mcxt, alloc * sizeof(PurposeInfo));
	scan = table_beginscan(rel, snapshot, 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		PurposeInfo *p;
		bool		isnull;
		struct varlena *key;
		int			keylen;

		if (cat->npurposes == alloc)
		{
			alloc *= 2;
			cat->purposes = repalloc(cat->purposes, alloc * sizeof(PurposeInfo));
		}
		p = &cat->purposes[cat->npurposes];
		p->id = DatumGetInt32(slot_getattr(slot, m->p_id, &isnull));
		key = PG_DETOAST_DATUM_PACKED(slot_getattr(slot, m->p_key, &isnull));
		keylen = VARSIZE_ANY_EXHDR(key);
		if (keylen > PURPOSE_KEY_MAX_BYTES)
			continue;			/* cannot happen: the type forbids it */
		memcpy(p->key, VARDATA_ANY(key), keylen);
		p->key[keylen] = '\0';
		p->keylen = keylen;
		p->basis = DatumGetObjectId(slot_getattr(slot, m->p_legal_basis, &isnull));
		(void) slot_getattr(slot, m->p_retired_at, &isnull);
		p->retired = !isnull;
		p->default_allowed = (p->basis != m->lb_consent && p->basis != m->lb_explicit);
		cat->npurposes++;
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	table_close(rel, NoLock);
	qsort(cat->purposes, cat->npurposes, sizeof(PurposeInfo), purpose_info_cmp);

	/* latest material version of each notice key */
	rel = table_open(m->notices, AccessShareLock);
	alloc = 8;
	cat->notices = MemoryContextAlloc(mcxt, alloc * sizeof(NoticeMaterial));
	scan = table_beginscan(rel, snapshot, 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		char	   *key;
		int32		version;
		int			i;

		if (!DatumGetBool(slot_getattr(slot, m->n_material, &isnull)))
			continue;
		key = TextDatumGetCString(slot_getattr(slot, m->n_key, &isnull));
		version = DatumGetInt32(slot_getattr(slot, m->n_version, &isnull));
		for (i = 0; i < cat->nnotices; i++)
		{
			if (strcmp(cat->notices[i].key, key) == 0)
				break;
		}
		if (i < cat->nnotices)
		{
			cat->notices[i].max_material_version =
				Max(cat->notices[i].max_material_version, version);
			pfree(key);
			continue;
		}
		if (cat->nnotices == alloc)
		{
			alloc *= 2;
			cat->notices = repalloc(cat->notices, alloc * sizeof(NoticeMaterial));
		}
		cat->notices[cat->nnotices].key = MemoryContextStrdup(mcxt, key);
		cat->notices[cat->nnotices].max_material_version = version;
		cat->nnotices++;
		pfree(key);
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	table_close(rel, NoLock);
	qsort(cat->notices, cat->nnotices, sizeof(NoticeMaterial), notice_material_cmp);
}

static const PurposeInfo *
catalog_find(const ConsentCatalog *cat, const char *key, int keylen)
{
	PurposeInfo probe;

	if (keylen > PURPOSE_KEY_MAX_BYTES)
		return NULL;
	memcpy(probe.key, key, keylen);
	probe.keylen = keylen;
	return bsearch(&probe, cat->purposes, cat->npurposes, sizeof(PurposeInfo),
				   purpose_info_cmp);
}

/* Latest material version of a notice key, 0 if none. */
static int32
catalog_material_version(const ConsentCatalog *cat, const char *notice_key)
{
	NoticeMaterial probe;
	NoticeMaterial *hit;

	if (cat->nnotices == 0)
		return 0;
	probe.key = (char *) notice_key;
	hit = bsearch(&probe, cat->notices, cat->nnotices, sizeof(NoticeMaterial),
				  notice_material_cmp);
	return hit ? hit->max_material_version : 0;
}

/* "Closest existing purposes: ..." for an unknown key (same text as SQL's). */
static char *
closest_purposes_hint(const ConsentCatalog *cat, const char *key, int keylen)
{
	int			best[3] = {-1, -1, -1};
	int			dist[3] = {INT_MAX, INT_MAX, INT_MAX};
	StringInfoData buf;

	if (cat->npurposes == 0)
		return "No purposes are defined yet.";
	for (int i = 0; i < cat->npurposes; i++)
	{
		const PurposeInfo *p = &cat->purposes[i];
		int			d = varstr_levenshtein(key, keylen, p->key, p->keylen,
										   1, 1, 1, true);

		/* catalog is sorted by key: ties keep key order, as in SQL */
		for (int j = 0; j < 3; j++)
		{
			if (d < dist[j])
			{
				for (int k = 2; k > j; k--)
				{
					dist[k] = dist[k - 1];
					best[k] = best[k - 1];
				}
				dist[j] = d;
				best[j] = i;
				break;
			}
		}
	}
	initStringInfo(&buf);
	appendStringInfoString(&buf, "Closest existing purposes: ");
	for (int j = 0; j < 3 && best[j] >= 0; j++)
	{
		if (j > 0)
			appendStringInfoString(&buf, ", ");
		appendBinaryStringInfo(&buf, cat->purposes[best[j]].key,
							   cat->purposes[best[j]].keylen);
	}
	appendStringInfoChar(&buf, '.');
	return buf.data;
}

/*
 * Resolve a purpose key into itself and its ancestors.  An unknown purpose
 * is an error: a misspelt purpose in a policy must be loud, not silently
 * refuse (or allow) every row.
 */
void
consent_resolve(const ConsentCatalog *cat, const char *key, int keylen,
				ResolvedPurpose *out)
{
	const PurposeInfo *self = catalog_find(cat, key, keylen);
	int			len = keylen;

	if (self == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("purpose \"%.*s\" does not exist", keylen, key),
				 errhint("%s", closest_purposes_hint(cat, key, keylen))));
	out->self = self;
	out->pathlen = 0;
	out->path[out->pathlen++] = self->id;
	while (len > 0 && out->pathlen < PURPOSE_KEY_MAX_SEGMENTS)
	{
		const PurposeInfo *anc;

		while (len > 0 && key[len - 1] != '.')
			len--;
		if (len == 0)
			break;
		len--;					/* drop the dot */
		anc = catalog_find(cat, key, len);
		if (anc != NULL)
			out->path[out->pathlen++] = anc->id;
	}
}

/* ----------------------------------------------------------------
 * The rule
 * ----------------------------------------------------------------
 */

static inline int
path_position(const ResolvedPurpose *rp, int32 purpose_id)
{
	for (int i = 0; i < rp->pathlen; i++)
	{
		if (rp->path[i] == purpose_id)
			return i;
	}
	return -1;
}

/*
 * Does a record with this status and notice count as a grant, leaving
 * expiry aside?  Only a grant whose notice has no newer material version.
 */
bool
consent_verdict_granted(const ConsentMeta *m, const ConsentCatalog *cat,
						Oid status, const char *notice_key, int32 notice_version)
{
	if (status != m->st_granted)
		return false;
	if (notice_key != NULL &&
		catalog_material_version(cat, notice_key) > notice_version)
		return false;
	return true;
}

/*
 * Decide for one resolved purpose, given the record nearest on its path
 * (NULL when there is none).
 */
void
consent_decide(const ConsentMeta *m, const ConsentCatalog *cat,
			   const ResolvedPurpose *rp, const DecisiveRecord *rec,
			   TimestampTz now, Decision *d)
{
	d->has_record = (rec != NULL);
	if (rec != NULL)
		d->rec = *rec;

	if (rp->self->retired)
	{
		d->allowed = false;
		d->reason = REASON_RETIRED;
		return;
	}
	if (rec == NULL)
	{
		d->allowed = rp->self->default_allowed;
		d->reason = d->allowed ? REASON_NO_RECORD_BASIS : REASON_NO_RECORD_OPT_IN;
		return;
	}
	d->allowed = false;
	if (rec->status == m->st_granted)
	{
		if (rec->has_expiry && rec->expires_at <= now)
			d->reason = REASON_EXPIRED;
		else if (!consent_verdict_granted(m, cat, rec->status, rec->notice_key,
										  rec->notice_version))
			d->reason = REASON_SUPERSEDED;
		else
		{
			d->allowed = true;
			d->reason = REASON_GRANTED;
		}
	}
	else if (rec->status == m->st_pending)
		d->reason = REASON_PENDING;
	else if (rec->status == m->st_denied)
		d->reason = REASON_DENIED;
	else if (rec->status == m->st_withdrawn)
		d->reason = REASON_WITHDRAWN;
	else
		d->reason = REASON_EXPIRED;
}

/*
 * One index scan over the primary key (subject, purpose_id) collects the
 * subject's records; for each of the "n" resolved purposes, the record
 * nearest on its path is kept in nearest[i] (has[i] false when none).
 * Notice keys are copied into the current memory context.
 */
void
consent_probe(const ConsentMeta *m, Snapshot snapshot,
			  const char *subject, int subjlen,
			  const ResolvedPurpose *rps, int n,
			  DecisiveRecord *nearest, bool *has)
{
	Relation	heap;
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	ScanKeyData skey;
	text	   *subj;
	int		   *best;

	best = palloc(n * sizeof(int));
	for (int i = 0; i < n; i++)
	{
		has[i] = false;
		best[i] = PURPOSE_KEY_MAX_SEGMENTS;
	}

	Assert(IsMVCCSnapshot(snapshot));
	subj = cstring_to_text_with_len(subject, subjlen);
	heap = table_open(m->records, AccessShareLock);
	index = index_open(m->records_pkey, AccessShareLock);
	ScanKeyInit(&skey, 1, BTEqualStrategyNumber, F_TEXTEQ, PointerGetDatum(subj));
	skey.sk_collation = C_COLLATION_OID;
	scan = index_beginscan(heap, index, snapshot, 1, 0);

	/*
	 * The key's second column is the purpose: read it from the index tuple
	 * and visit the heap only for records on a path (a person has records
	 * for many purposes; one or two decide).
	 */
	scan->xs_want_itup = true;
	index_rescan(scan, &skey, 1, NULL, 0);
	slot = table_slot_create(heap, NULL);

	while (index_getnext_tid(scan, ForwardScanDirection) != NULL)
	{
		bool		isnull;
		int32		pid;
		bool		wanted = false;
		bool		fetched = false;
		DecisiveRecord rec;

		pid = DatumGetInt32(index_getattr(scan->xs_itup, 2, scan->xs_itupdesc, &isnull));
		for (int i = 0; i < n && !wanted; i++)
		{
			int			pos = path_position(&rps[i], pid);

			wanted = (pos >= 0 && pos < best[i]);
		}
		if (!wanted)
			continue;

		/*
		 * Under an MVCC snapshot at most one version of a HOT chain is
		 * visible, so one fetch per index entry (index_getnext_slot's loop
		 * over xs_heap_continue is for other snapshots).
		 */
		if (!index_fetch_heap(scan, slot))
			continue;
		Assert(pid == DatumGetInt32(slot_getattr(slot, m->r_purpose_id, &isnull)));

		for (int i = 0; i < n; i++)
		{
			int			pos = path_position(&rps[i], pid);

			if (pos < 0 || pos >= best[i])
				continue;
			if (!fetched)
			{
				Datum		d;

				rec.purpose_id = pid;
				rec.status = DatumGetObjectId(slot_getattr(slot, m->r_status, &isnull));
				d = slot_getattr(slot, m->r_expires_at, &isnull);
				rec.has_expiry = !isnull;
				rec.expires_at = isnull ? 0 : DatumGetTimestampTz(d);
				d = slot_getattr(slot, m->r_notice_key, &isnull);
				rec.notice_key = isnull ? NULL : TextDatumGetCString(d);
				d = slot_getattr(slot, m->r_notice_version, &isnull);
				rec.notice_version = isnull ? 0 : DatumGetInt32(d);
				fetched = true;
			}
			best[i] = pos;
			nearest[i] = rec;
			has[i] = true;
		}
	}

	ExecDropSingleTupleTableSlot(slot);
	index_endscan(scan);
	index_close(index, NoLock);
	table_close(heap, NoLock);
	pfree(subj);
	pfree(best);
}

/* ----------------------------------------------------------------
 * SQL-callable enforcement functions
 * ----------------------------------------------------------------
 */

/* Answer for one subject and "n" purposes; all or any. */
static bool
has_common(FunctionCallInfo fcinfo, ConsentSubject *subj,
		   Datum *keys, int n, bool want_all)
{
	CallSite   *cs = consent_callsite(fcinfo);
	ResolvedPurpose *rps;

	rps = consent_callsite_resolve(cs, keys, n);
	for (int i = 0; i < n; i++)
	{
		bool		allowed = consent_callsite_check(cs, subj, &rps[i]);

		if (want_all && !allowed)
			return false;
		if (!want_all && allowed)
			return true;
	}
	return want_all;
}

static bool
has_array(FunctionCallInfo fcinfo, ConsentSubject *subj, ArrayType *arr,
		  bool want_all)
{
	Datum	   *keys;
	bool	   *nulls;
	int			n;

	deconstruct_array(arr, ARR_ELEMTYPE(arr), -1, false, TYPALIGN_INT,
					  &keys, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("purpose array must not contain NULL")));
	}
	if (n == 0)
		return want_all;		/* all of nothing: true; any of nothing: false */
	return has_common(fcinfo, subj, keys, n, want_all);
}

static inline void
subject_from_text(ConsentSubject *s, text *t)
{
	s->str = VARDATA_ANY(t);
	s->len = VARSIZE_ANY_EXHDR(t);
	s->is_int = false;
}

static inline void
subject_from_int8(ConsentSubject *s, int64 v)
{
	s->str = NULL;				/* made on demand */
	s->is_int = true;
	s->ival = v;
}

static inline void
subject_from_uuid(ConsentSubject *s, const pg_uuid_t *u)
{
	static const char hex[] = "0123456789abcdef";
	int			len = 0;

	for (int i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			s->buf[len++] = '-';
		s->buf[len++] = hex[u->data[i] >> 4];
		s->buf[len++] = hex[u->data[i] & 0x0F];
	}
	s->str = s->buf;
	s->len = len;
	s->is_int = false;
}

/*
 * One subject argument of each type; the functions below differ only in
 * how they read it.
 */
#define SUBJECT_ARG(kind, argno, s) \
	ConsentSubject s; \
	subject_from_arg_##kind(&s, fcinfo, argno)

static inline void
subject_from_arg_text(ConsentSubject *s, FunctionCallInfo fcinfo, int argno)
{
	subject_from_text(s, PG_GETARG_TEXT_PP(argno));
}

static inline void
subject_from_arg_int8(ConsentSubject *s, FunctionCallInfo fcinfo, int argno)
{
	subject_from_int8(s, PG_GETARG_INT64(argno));
}

static inline void
subject_from_arg_uuid(ConsentSubject *s, FunctionCallInfo fcinfo, int argno)
{
	subject_from_uuid(s, PG_GETARG_UUID_P(argno));
}

#define DEFINE_HAS(kind) \
Datum \
consent_has_##kind(PG_FUNCTION_ARGS) \
{ \
	Datum		key = PG_GETARG_DATUM(1); \
	SUBJECT_ARG(kind, 0, subj); \
	PG_RETURN_BOOL(has_common(fcinfo, &subj, &key, 1, true)); \
} \
Datum \
consent_has_all_##kind(PG_FUNCTION_ARGS) \
{ \
	SUBJECT_ARG(kind, 0, subj); \
	PG_RETURN_BOOL(has_array(fcinfo, &subj, PG_GETARG_ARRAYTYPE_P(1), true)); \
} \
Datum \
consent_has_any_##kind(PG_FUNCTION_ARGS) \
{ \
	SUBJECT_ARG(kind, 0, subj); \
	PG_RETURN_BOOL(has_array(fcinfo, &subj, PG_GETARG_ARRAYTYPE_P(1), false)); \
} \
/* mask(value, subject, purpose): STRICT, so a NULL value stays NULL */ \
Datum \
consent_mask_##kind(PG_FUNCTION_ARGS) \
{ \
	Datum		key = PG_GETARG_DATUM(2); \
	SUBJECT_ARG(kind, 1, subj); \
	if (!has_common(fcinfo, &subj, &key, 1, true)) \
		PG_RETURN_NULL(); \
	PG_RETURN_DATUM(PG_GETARG_DATUM(0)); \
}

DEFINE_HAS(text)
DEFINE_HAS(uuid)

/*
 * bigint subjects, the common case of a policy on an id column: try the
 * call site's fast path (a dense map, read in scan order) first.
 */
Datum
consent_has_int8(PG_FUNCTION_ARGS)
{
	Datum		key = PG_GETARG_DATUM(1);
	bool		allowed;
	SUBJECT_ARG(int8, 0, subj);

	if (consent_fast_int8(fcinfo, key, subj.ival, &allowed))
		PG_RETURN_BOOL(allowed);
	PG_RETURN_BOOL(has_common(fcinfo, &subj, &key, 1, true));
}

Datum
consent_has_all_int8(PG_FUNCTION_ARGS)
{
	SUBJECT_ARG(int8, 0, subj);
	PG_RETURN_BOOL(has_array(fcinfo, &subj, PG_GETARG_ARRAYTYPE_P(1), true));
}

Datum
consent_has_any_int8(PG_FUNCTION_ARGS)
{
	SUBJECT_ARG(int8, 0, subj);
	PG_RETURN_BOOL(has_array(fcinfo, &subj, PG_GETARG_ARRAYTYPE_P(1), false));
}

Datum
consent_mask_int8(PG_FUNCTION_ARGS)
{
	Datum		key = PG_GETARG_DATUM(2);
	bool		allowed;
	SUBJECT_ARG(int8, 1, subj);

	if (!consent_fast_int8(fcinfo, key, subj.ival, &allowed))
		allowed = has_common(fcinfo, &subj, &key, 1, true);
	if (!allowed)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(PG_GETARG_DATUM(0));
}

/* ----------------------------------------------------------------
 * consent.explain(subject text, purpose purpose_key)
 *	 RETURNS (allowed boolean, status text, decided_by text, reason text,
 *			  expires_at timestamptz)
 *
 * The same rule as has(), with the why.  Behind consent.status() and
 * consent.decisions().
 * ----------------------------------------------------------------
 */

static const char *
reason_text(DecisionReason r)
{
	switch (r)
	{
		case REASON_GRANTED:
			return "granted";
		case REASON_PENDING:
			return "pending confirmation";
		case REASON_DENIED:
			return "denied";
		case REASON_WITHDRAWN:
			return "withdrawn";
		case REASON_EXPIRED:
			return "expired";
		case REASON_SUPERSEDED:
			return "notice superseded by a material version";
		case REASON_NO_RECORD_OPT_IN:
			return "no record: consent required";
		case REASON_NO_RECORD_BASIS:
			return "no record: allowed by legal basis";
		case REASON_RETIRED:
			return "purpose retired";
	}
	return "unknown";
}

static const char *
status_label(const ConsentMeta *m, Oid status)
{
	if (status == m->st_pending)
		return "pending";
	if (status == m->st_granted)
		return "granted";
	if (status == m->st_denied)
		return "denied";
	if (status == m->st_withdrawn)
		return "withdrawn";
	return "expired";
}

Datum
consent_explain(PG_FUNCTION_ARGS)
{
	text	   *subj = PG_GETARG_TEXT_PP(0);
	Datum		key = PG_GETARG_DATUM(1);
	CallSite   *cs = consent_callsite(fcinfo);
	ResolvedPurpose *rp;
	DecisiveRecord rec;
	bool		found;
	Decision	d;
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	rp = consent_callsite_resolve(cs, &key, 1);
	consent_probe(cs->meta, GetActiveSnapshot(),
				  VARDATA_ANY(subj), VARSIZE_ANY_EXHDR(subj), rp, 1, &rec, &found);
	consent_decide(cs->meta, cs->cat, rp, found ? &rec : NULL,
				   GetCurrentTransactionStartTimestamp(), &d);

	values[0] = BoolGetDatum(d.allowed);
	if (found)
	{
		const PurposeInfo *by = NULL;

		values[1] = CStringGetTextDatum(status_label(cs->meta, rec.status));
		for (int i = 0; i < cs->cat->npurposes; i++)
		{
			if (cs->cat->purposes[i].id == rec.purpose_id)
				by = &cs->cat->purposes[i];
		}
		if (by)
			values[2] = PointerGetDatum(cstring_to_text_with_len(by->key, by->keylen));
		else
			nulls[2] = true;
		if (rec.has_expiry)
			values[4] = TimestampTzGetDatum(rec.expires_at);
		else
			nulls[4] = true;
	}
	else
	{
		nulls[1] = nulls[2] = nulls[4] = true;
	}
	values[3] = CStringGetTextDatum(reason_text(d.reason));

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
