/*-------------------------------------------------------------------------
 *
 * record.c
 *		The single writer of consent.records: consent.grant, deny, confirm
 *		and withdraw (C entry points, for text, bigint and uuid subjects),
 *		and consent.apply_choice() behind withdraw_all.
 *
 * One call validates one choice and stores it:
 *
 *	 - the arguments are checked in C, in the order and with the errors
 *	   (SQLSTATE, message, detail, hint) that docs/errors.md lists;
 *	 - the purpose is read by one probe of consent.purposes' unique index
 *	   on key, the notice ("key" or "key@version") by one backward scan of
 *	   consent.notices' unique index on (key, version, locale), which also
 *	   answers whether the notice covers the purpose and whether a material
 *	   version supersedes it;
 *	 - the record is written as INSERT ... ON CONFLICT (subject,
 *	   purpose_id) DO UPDATE writes it: store_direct() takes the executor's
 *	   steps itself (statement and row triggers, CHECK constraints prepared
 *	   once per backend, speculative insertion, lock and update of an
 *	   existing row, the foreign key and the audit and outbox triggers
 *	   fired as AFTER triggers), without planning the statement or starting
 *	   an executor for it; where the table or the caller needs more (see
 *	   writer_prepare: another column or type, another unique index,
 *	   rules, row security that applies to the caller, ...) the statement
 *	   itself runs, as a saved plan through SPI.
 *	   A confirmation is one saved UPDATE.  Either way every trigger of
 *	   consent.records fires as for any other writer, and concurrent
 *	   upserts of one (subject, purpose) resolve as the executor resolves
 *	   them.
 *
 * Retire vs. record.  consent.retire_purpose() locks consent.purposes in
 * EXCLUSIVE mode; the writer opens it in ROW SHARE mode, which conflicts
 * with that and with nothing else that runs routinely (readers take ACCESS
 * SHARE, define_purpose ROW EXCLUSIVE).  Only then does the writer take its
 * snapshot and read the purpose: under READ COMMITTED a retirement is
 * either committed and seen, or waits for the writer's commit.  Under
 * REPEATABLE READ and SERIALIZABLE the transaction's snapshot may predate a
 * retirement the writer waited for; the purpose row is then read a second
 * time with SnapshotSelf, and a newer version means the row changed under
 * the snapshot: 40001, as the FOR SHARE row lock this replaces raised.
 * Unlike that row lock, the table lock writes nothing: no tuple lock in
 * the purpose's heap page, no MultiXact when writers run concurrently.
 *
 * consent.withdraw also withdraws what was given for the purpose's
 * descendants; purpose_has_children() (one probe of the index on
 * parent_key) lets it skip that query for a purpose without children.
 *
 * The saved plans take only built-in types as parameters (the status as
 * text, cast in the query), so that the plan cache alone keeps them valid
 * when the extension is dropped and created again; the OIDs this file
 * caches are reset by a relcache callback, the direct writer's CHECK
 * expressions also by syscache callbacks.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/sysattr.h"
#include "access/skey.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_func.h"
#include "storage/lmgr.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "consent.h"

PG_FUNCTION_INFO_V1(consent_apply_choice);
PG_FUNCTION_INFO_V1(consent_grant);
PG_FUNCTION_INFO_V1(consent_deny);
PG_FUNCTION_INFO_V1(consent_confirm);
PG_FUNCTION_INFO_V1(consent_withdraw);

typedef enum ChoiceAction
{
	CA_GRANT,
	CA_DENY,
	CA_WITHDRAW,
	CA_CONFIRM,
	CA_EXPIRE,
	CA_UNKNOWN
} ChoiceAction;

/* One choice as the caller gave it; NULL pointers for NULL arguments. */
typedef struct Choice
{
	ChoiceAction action;
	const char *action_name;	/* "<NULL>" for a NULL action */
	Datum		subject;		/* text */
	bool		subject_null;
	struct varlena *purpose;	/* consent.purpose_key, detoasted */
	text	   *notice;
	text	   *method;
	Datum		source;			/* text */
	bool		source_null;
	TimestampTz expires_at;
	bool		expires_null;
	Jsonb	   *evidence;
	Datum		reason;			/* text */
	bool		reason_null;
} Choice;

/* What the writer needs of a purpose row. */
typedef struct PurposeRow
{
	ItemPointerData tid;
	int32		id;
	Oid			basis;
	bool		has_valid_for;
	Interval	valid_for;
	bool		requires_confirmation;
	bool		retired;
	TimestampTz retired_at;
} PurposeRow;

/* OIDs and attribute numbers, per database, reset by relcache callbacks. */
typedef struct RecordMeta
{
	bool		valid;
	Oid			records;
	Oid			purposes;
	Oid			purposes_key_idx;
	Oid			purposes_parent_idx;
	Oid			notices;
	Oid			notices_key_idx;
	AttrNumber	p_id,
				p_legal_basis,
				p_valid_for,
				p_requires_confirmation,
				p_retired_at;
	AttrNumber	n_version,
				n_purposes,
				n_material;
	Oid			st_pending,
				st_granted,
				st_denied,
				st_withdrawn,
				st_expired;
	Oid			lb_consent,
				lb_explicit,
				lb_legitimate;
	FmgrInfo	key_eq;			/* consent.purpose_key equality */
	Oid			notice_key_collation;
} RecordMeta;

static RecordMeta meta;
static bool callback_registered = false;

/* The columns of consent.records the writer sets, in table order. */
typedef enum RecordColumn
{
	RC_SUBJECT,
	RC_PURPOSE_ID,
	RC_STATUS,
	RC_EFFECTIVE_AT,
	RC_EXPIRES_AT,
	RC_NOTICE_KEY,
	RC_NOTICE_VERSION,
	RC_METHOD,
	RC_SOURCE,
	RC_ACTOR,
	RC_REASON,
	RC_EVIDENCE,
	RC_RECORDED_AT,
	RC_NCOLUMNS
} RecordColumn;

static const char *const record_column_names[RC_NCOLUMNS] = {
	"subject", "purpose_id", "status", "effective_at", "expires_at",
	"notice_key", "notice_version", "method", "source", "actor", "reason",
	"evidence", "recorded_at"
};

/*
 * What the direct writer (below) keeps per backend: the column map, the
 * primary key, and the table's CHECK constraints ready to evaluate (with
 * the state they keep between evaluations).  Starting an executor and
 * planning those constraints for every call took about a tenth of a
 * recording call's CPU.  Reset by the relcache callback when
 * consent.records changes (columns, constraints, indexes, triggers,
 * rules), by syscache callbacks when functions, types, operators or
 * schemas change (what the constraints call may have), and after an error
 * while evaluating the constraints.  A context replaced while a call is in
 * progress lives on until the end of the transaction.
 */
typedef struct RecordWriterCache
{
	bool		valid;
	Oid			relid;
	MemoryContext cxt;
	AttrNumber	att[RC_NCOLUMNS];
	Oid			pkey;
	const char *why_not;		/* NULL: the direct path applies */
	Bitmapset  *inserted_cols;	/* the statement's column sets */
	Bitmapset  *selected_cols;
	Bitmapset  *updated_cols;
	int			ncheck;
	ExprState **checks;
} RecordWriterCache;

static RecordWriterCache writer;		/* zeroed: not valid */
static int	writer_depth = 0;		/* calls of store_direct in progress */
static uint64 writer_invals = 0;	/* invalidations seen, see writer_prepare */

/* Saved plans, kept for the life of the backend (see the file header). */
static SPIPlanPtr upsert_plan = NULL;
static SPIPlanPtr confirm_lock_plan = NULL;
static SPIPlanPtr confirm_superseded_plan = NULL;
static SPIPlanPtr confirm_update_plan = NULL;
static SPIPlanPtr descendants_plan = NULL;	/* withdraw's cascade */

static Oid	record_choice(const Choice *c);

/* ----------------------------------------------------------------
 * Catalog
 * ----------------------------------------------------------------
 */

static void
record_relcache_callback(Datum arg pg_attribute_unused(), Oid relid)
{
	if (relid == InvalidOid || relid == writer.relid)
	{
		writer.valid = false;
		writer_invals++;
	}
	if (!meta.valid)
		return;
	if (relid == InvalidOid || relid == meta.records ||
		relid == meta.purposes || relid == meta.notices ||
		relid == meta.purposes_key_idx || relid == meta.purposes_parent_idx ||
		relid == meta.notices_key_idx)
		meta.valid = false;
}

/*
 * Functions, types and operators a CHECK constraint uses may change
 * without a relcache invalidation of consent.records; the plan cache
 * resets its plans on the same events.
 */
static void
record_syscache_callback(Datum arg pg_attribute_unused(), int cacheid pg_attribute_unused(),
						 uint32 hashvalue pg_attribute_unused())
{
	writer.valid = false;
	writer_invals++;
}

static void
record_meta_load(void)
{
	Oid			nsp;
	Relation	idx;
	Oid			eqop;

	if (meta.valid)
		return;
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(record_relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(PROCOID, record_syscache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(TYPEOID, record_syscache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, record_syscache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(OPEROID, record_syscache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(AMOPOPID, record_syscache_callback, (Datum) 0);
		callback_registered = true;
	}

	nsp = consent_namespace();
	meta.records = consent_relid(nsp, "records");
	meta.purposes = consent_relid(nsp, "purposes");
	meta.purposes_key_idx = consent_relid(nsp, "purposes_key_key");
	meta.purposes_parent_idx = consent_relid(nsp, "purposes_parent_key_idx");
	meta.notices = consent_relid(nsp, "notices");
	meta.notices_key_idx = consent_relid(nsp, "notices_key_version_locale_key");

	meta.p_id = consent_attnum(meta.purposes, "id");
	meta.p_legal_basis = consent_attnum(meta.purposes, "legal_basis");
	meta.p_valid_for = consent_attnum(meta.purposes, "valid_for");
	meta.p_requires_confirmation = consent_attnum(meta.purposes, "requires_confirmation");
	meta.p_retired_at = consent_attnum(meta.purposes, "retired_at");
	meta.n_version = consent_attnum(meta.notices, "version");
	meta.n_purposes = consent_attnum(meta.notices, "purposes");
	meta.n_material = consent_attnum(meta.notices, "material");

	meta.st_pending = consent_enum_label(nsp, "status", "pending");
	meta.st_granted = consent_enum_label(nsp, "status", "granted");
	meta.st_denied = consent_enum_label(nsp, "status", "denied");
	meta.st_withdrawn = consent_enum_label(nsp, "status", "withdrawn");
	meta.st_expired = consent_enum_label(nsp, "status", "expired");
	meta.lb_consent = consent_enum_label(nsp, "legal_basis", "consent");
	meta.lb_explicit = consent_enum_label(nsp, "legal_basis", "explicit_consent");
	meta.lb_legitimate = consent_enum_label(nsp, "legal_basis", "legitimate_interests");

	/* The equality operator of the key index's operator family. */
	idx = index_open(meta.purposes_key_idx, AccessShareLock);
	eqop = get_opfamily_member(idx->rd_opfamily[0], idx->rd_opcintype[0],
							   idx->rd_opcintype[0], BTEqualStrategyNumber);
	index_close(idx, AccessShareLock);
	if (!OidIsValid(eqop))
		elog(ERROR, "no equality operator for consent.purpose_key");
	fmgr_info_cxt(get_opcode(eqop), &meta.key_eq, TopMemoryContext);

	idx = index_open(meta.notices_key_idx, AccessShareLock);
	meta.notice_key_collation = idx->rd_indcollation[0];
	index_close(idx, AccessShareLock);

	meta.valid = true;
}

/*
 * Lock the three tables (in the modes the write takes anyway, purposes
 * first, as retire_purpose does) and only then trust the cached catalog
 * facts: DDL that committed while we waited for a lock has invalidated
 * them by the time the lock is granted, and none can commit while we hold
 * the locks.
 */
static void
record_lock_tables(void)
{
	for (;;)
	{
		record_meta_load();
		LockRelationOid(meta.purposes, RowShareLock);
		LockRelationOid(meta.notices, AccessShareLock);
		LockRelationOid(meta.records, RowExclusiveLock);
		if (meta.valid)
			return;
	}
}

/* ----------------------------------------------------------------
 * Small helpers
 * ----------------------------------------------------------------
 */

static char *
key_cstring(const struct varlena *key)
{
	return pnstrdup(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key));
}

/* a @> b: a is b or an ancestor of b (see purpose_key.c) */
static bool
key_contains(const char *a, int alen, const char *b, int blen)
{
	if (alen > blen)
		return false;
	if (alen < blen && b[alen] != '.')
		return false;
	return memcmp(a, b, alen) == 0;
}

static char *
timestamptz_cstring(TimestampTz t)
{
	return DatumGetCString(DirectFunctionCall1(timestamptz_out, TimestampTzGetDatum(t)));
}

static char *
enum_cstring(Oid label)
{
	return DatumGetCString(DirectFunctionCall1(enum_out, ObjectIdGetDatum(label)));
}

/* consent.closest_purposes(key, active_only): hint text (error paths only) */
static char *
closest_purposes_hint(const struct varlena *key, bool active_only)
{
	Oid			argtypes[2] = {TEXTOID, BOOLOID};
	List	   *name;
	Oid			fn;
	Datum		d;

	name = list_make2(makeString("consent"), makeString("closest_purposes"));
	fn = LookupFuncName(name, 2, argtypes, false);
	d = OidFunctionCall2(fn, PointerGetDatum(cstring_to_text(key_cstring(key))),
						 BoolGetDatum(active_only));
	return TextDatumGetCString(d);
}

/*
 * Run a query through SPI and return the first column of its first row as
 * a C string, NULL when none.  For the text of error hints only.
 */
static char *
spi_text(const char *sql, int nargs, Oid *argtypes, Datum *values)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *result = NULL;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(sql, nargs, argtypes, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "SPI query failed: %s", sql);
	if (SPI_processed > 0)
	{
		char	   *s = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (s != NULL)
			result = MemoryContextStrdup(caller, s);
	}
	SPI_finish();
	return result;
}

static SPIPlanPtr
saved_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		*slot = plan;
	}
	return *slot;
}

/* ----------------------------------------------------------------
 * Validation of the arguments that need no table
 * ----------------------------------------------------------------
 */

static void
check_arguments(const Choice *c)
{
	if (c->subject_null)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("subject must not be null")));
	else
	{
		text	   *s = DatumGetTextPP(c->subject);
		int			len = VARSIZE_ANY_EXHDR(s);

		if (len == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("subject must not be empty")));
		if (len > CONSENT_SUBJECT_MAX_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
					 errmsg("subject is %d bytes long, the limit is %d",
							len, CONSENT_SUBJECT_MAX_BYTES),
					 errhint("Use a stable identifier such as a customer id or uuid, not free text.")));
	}

	if (c->purpose == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("purpose must not be null")));

	if (c->method == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("method must be a non-empty label of at most 64 bytes, not NULL")));
	else
	{
		const char *m = VARDATA_ANY(c->method);
		int			len = VARSIZE_ANY_EXHDR(c->method);
		bool		blank = true;

		/* btrim() without characters trims spaces only */
		for (int i = 0; i < len && blank; i++)
			blank = (m[i] == ' ');
		if (blank || len > 64)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("method must be a non-empty label of at most 64 bytes, not %s",
							quote_literal_cstr(text_to_cstring(c->method)))));
	}

	if (c->evidence != NULL && !JB_ROOT_IS_OBJECT(c->evidence))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("evidence must be a JSON object, not a JSON %s",
						text_to_cstring(DatumGetTextPP(DirectFunctionCall1(jsonb_typeof,
																		   JsonbPGetDatum(c->evidence)))))));
}

/* ----------------------------------------------------------------
 * Purposes
 * ----------------------------------------------------------------
 */

/*
 * Probe one index of consent.purposes for a key (equality on its first
 * column); "use", when not NULL, reads the first visible row before the
 * slot is dropped.  False when no row is visible to "snapshot".
 */
static bool
purposes_probe(Relation heap, Oid indexoid, Snapshot snapshot,
			   const struct varlena *key, void (*use) (TupleTableSlot *, void *),
			   void *arg)
{
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	ScanKeyData skey;
	bool		found;

	index = index_open(indexoid, AccessShareLock);
	ScanKeyEntryInitializeWithInfo(&skey, 0, 1, BTEqualStrategyNumber,
								   InvalidOid, InvalidOid, &meta.key_eq,
								   PointerGetDatum(key));
	scan = index_beginscan(heap, index, snapshot, 1, 0);
	index_rescan(scan, &skey, 1, NULL, 0);
	slot = table_slot_create(heap, NULL);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	if (found && use)
		use(slot, arg);
	ExecDropSingleTupleTableSlot(slot);
	index_endscan(scan);
	index_close(index, NoLock);
	return found;
}

static void
purpose_row_from_slot(TupleTableSlot *slot, void *arg)
{
	PurposeRow *row = (PurposeRow *) arg;
	bool		isnull;
	Datum		d;

	row->tid = slot->tts_tid;
	row->id = DatumGetInt32(slot_getattr(slot, meta.p_id, &isnull));
	row->basis = DatumGetObjectId(slot_getattr(slot, meta.p_legal_basis, &isnull));
	d = slot_getattr(slot, meta.p_valid_for, &isnull);
	row->has_valid_for = !isnull;
	if (!isnull)
		row->valid_for = *DatumGetIntervalP(d);
	row->requires_confirmation =
		DatumGetBool(slot_getattr(slot, meta.p_requires_confirmation, &isnull));
	d = slot_getattr(slot, meta.p_retired_at, &isnull);
	row->retired = !isnull;
	row->retired_at = isnull ? 0 : DatumGetTimestampTz(d);
}

/*
 * Look up a purpose by key through the unique index on key; false when no
 * version of it is visible to "snapshot".
 */
static bool
purpose_lookup(Relation heap, Snapshot snapshot, const struct varlena *key,
			   PurposeRow *row)
{
	return purposes_probe(heap, meta.purposes_key_idx, snapshot, key,
						  purpose_row_from_slot, row);
}

/*
 * Has the purpose any child?  One probe of the index on parent_key: only
 * then can a withdrawal have descendants to withdraw too.
 */
static bool
purpose_has_children(Relation heap, Snapshot snapshot, const struct varlena *key)
{
	return purposes_probe(heap, meta.purposes_parent_idx, snapshot, key, NULL, NULL);
}

/* ----------------------------------------------------------------
 * Notices
 * ----------------------------------------------------------------
 */

/*
 * Parse "key" or "key@version" as the pattern
 * ^([A-Za-z0-9][A-Za-z0-9_.:-]*)(?:@([1-9][0-9]{0,8}))?$ does.
 */
static inline bool
ascii_alnum(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
}

static bool
notice_parse(const char *s, int len, int *keylen, int32 *version)
{
	int			i = 0;

	*version = 0;
	if (len == 0 || !ascii_alnum(s[0]))
		return false;
	for (i = 1; i < len; i++)
	{
		char		ch = s[i];

		if (!(ascii_alnum(ch) || ch == '_' || ch == '.' || ch == ':' || ch == '-'))
			break;
	}
	*keylen = i;
	if (i == len)
		return true;
	if (s[i] != '@')
		return false;
	i++;
	if (i >= len || s[i] < '1' || s[i] > '9' || len - i > 9)
		return false;
	for (int j = i; j < len; j++)
	{
		if (s[j] < '0' || s[j] > '9')
			return false;
		*version = *version * 10 + (s[j] - '0');
	}
	return true;
}

typedef struct NoticeInfo
{
	char	   *key;
	int32		version;
	bool		key_exists;
	bool		version_exists;
	bool		superseded;		/* a material version above "version" */
	bool		covers;			/* "version" covers the purpose */
} NoticeInfo;

/*
 * Resolve the notice against consent.notices: one backward scan over the
 * versions of the key, newest first, that stops below the version asked
 * for.  With no version given, the newest visible one is taken.
 */
static void
notice_resolve(Snapshot snapshot, const char *key, int keylen,
			   int32 version, const struct varlena *purpose, NoticeInfo *ni)
{
	Relation	heap;
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	ScanKeyData skey;
	text	   *keytext = cstring_to_text_with_len(key, keylen);
	const char *pkey = VARDATA_ANY(purpose);
	int			pkeylen = VARSIZE_ANY_EXHDR(purpose);

	memset(ni, 0, sizeof(*ni));
	ni->key = pnstrdup(key, keylen);
	ni->version = version;

	heap = table_open(meta.notices, AccessShareLock);
	index = index_open(meta.notices_key_idx, AccessShareLock);
	ScanKeyInit(&skey, 1, BTEqualStrategyNumber, F_TEXTEQ, PointerGetDatum(keytext));
	skey.sk_collation = meta.notice_key_collation;
	scan = index_beginscan(heap, index, snapshot, 1, 0);
	index_rescan(scan, &skey, 1, NULL, 0);
	slot = table_slot_create(heap, NULL);

	while (index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		bool		isnull;
		int32		v = DatumGetInt32(slot_getattr(slot, meta.n_version, &isnull));

		ni->key_exists = true;
		if (ni->version == 0)
			ni->version = v;	/* the latest version */
		if (v < ni->version)
			break;
		if (v > ni->version)
		{
			if (DatumGetBool(slot_getattr(slot, meta.n_material, &isnull)))
				ni->superseded = true;
			continue;
		}
		ni->version_exists = true;
		if (!ni->covers)
		{
			ArrayType  *arr = DatumGetArrayTypeP(slot_getattr(slot, meta.n_purposes, &isnull));
			Datum	   *elems;
			bool	   *nulls;
			int			n;
			int16		typlen;
			bool		typbyval;
			char		typalign;

			get_typlenbyvalalign(ARR_ELEMTYPE(arr), &typlen, &typbyval, &typalign);
			deconstruct_array(arr, ARR_ELEMTYPE(arr), typlen, typbyval, typalign,
							  &elems, &nulls, &n);
			for (int i = 0; i < n && !ni->covers; i++)
			{
				struct varlena *c;

				if (nulls[i])
					continue;
				c = (struct varlena *) PG_DETOAST_DATUM_PACKED(elems[i]);
				ni->covers = key_contains(VARDATA_ANY(c), VARSIZE_ANY_EXHDR(c),
										  pkey, pkeylen);
			}
		}
	}

	ExecDropSingleTupleTableSlot(slot);
	index_endscan(scan);
	index_close(index, NoLock);
	table_close(heap, NoLock);
}

/* ----------------------------------------------------------------
 * The writer
 * ----------------------------------------------------------------
 */

static const char *
action_participle(ChoiceAction a)
{
	switch (a)
	{
		case CA_DENY:
			return "denied";
		case CA_WITHDRAW:
			return "withdrawn";
		case CA_GRANT:
			return "granted";
		default:
			return "confirmed";
	}
}

/* Confirm a pending grant: lock the record, check it, update it. */
static void
confirm_record(const Choice *c, const PurposeRow *p, const char *purpose_str,
			   const char *actor)
{
	Oid			lock_types[2] = {TEXTOID, INT4OID};
	Oid			update_types[6] = {TEXTOID, INT4OID, TEXTOID, TEXTOID, TEXTOID, JSONBOID};
	Datum		values[6];
	char		nulls[6];
	SPIPlanPtr	plan;
	char	   *current = NULL;

	values[0] = c->subject;
	values[1] = Int32GetDatum(p->id);
	memset(nulls, ' ', sizeof(nulls));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = saved_plan(&confirm_lock_plan,
					  "SELECT r.status::pg_catalog.text FROM consent.records r"
					  " WHERE r.subject OPERATOR(pg_catalog.=) $1"
					  "   AND r.purpose_id OPERATOR(pg_catalog.=) $2"
					  "   FOR UPDATE",
					  2, lock_types);
	if (SPI_execute_plan(plan, values, nulls, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not lock the record to confirm");
	if (SPI_processed > 0)
		current = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (current == NULL || strcmp(current, "pending") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("subject has no pending consent to purpose \"%s\" to confirm", purpose_str),
				 errdetail("The current status is %s.", current ? current : "none"),
				 errhint("Call consent.grant() first; it records a pending consent for purposes that require confirmation.")));

	/* A grant whose notice was superseded while it waited would not count. */
	plan = saved_plan(&confirm_superseded_plan,
					  "SELECT 1 FROM consent.records r"
					  "  JOIN consent.notices n ON n.key OPERATOR(pg_catalog.=) r.notice_key"
					  " WHERE r.subject OPERATOR(pg_catalog.=) $1"
					  "   AND r.purpose_id OPERATOR(pg_catalog.=) $2"
					  "   AND n.material"
					  "   AND n.version OPERATOR(pg_catalog.>) r.notice_version",
					  2, lock_types);
	if (SPI_execute_plan(plan, values, nulls, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not check the notice of the record to confirm");
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the notice of the pending consent to purpose \"%s\" has been superseded by a material version",
						purpose_str),
				 errhint("Ask for consent again under the latest version: call consent.grant() with it, then confirm.")));

	values[2] = PointerGetDatum(c->method);
	values[3] = c->source;
	nulls[3] = c->source_null ? 'n' : ' ';
	values[4] = CStringGetTextDatum(actor);
	values[5] = c->evidence ? JsonbPGetDatum(c->evidence) : (Datum) 0;
	nulls[5] = c->evidence ? ' ' : 'n';
	plan = saved_plan(&confirm_update_plan,
					  "UPDATE consent.records r"
					  "   SET status = 'granted', effective_at = pg_catalog.now(), method = $3,"
					  "       source = coalesce($4, r.source), actor = $5,"
					  "       evidence = CASE WHEN $6 IS NULL THEN r.evidence"
					  "                  ELSE coalesce(r.evidence, '{}'::pg_catalog.jsonb) OPERATOR(pg_catalog.||) $6 END,"
					  "       recorded_at = pg_catalog.clock_timestamp()"
					  " WHERE r.subject OPERATOR(pg_catalog.=) $1"
					  "   AND r.purpose_id OPERATOR(pg_catalog.=) $2",
					  6, update_types);
	if (SPI_execute_plan(plan, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not confirm the record");
	SPI_finish();
}

/* ----------------------------------------------------------------
 * Storing the record
 * ----------------------------------------------------------------
 */

/* One new record: every column the writer sets. */
typedef struct NewRecord
{
	Datum		values[RC_NCOLUMNS];
	bool		isnull[RC_NCOLUMNS];
} NewRecord;

#if PG_VERSION_NUM >= 150000 && PG_VERSION_NUM < 160000
/* The type each column must have for the direct writer. */
static Oid
record_column_type(int col, Oid status_type)
{
	switch (col)
	{
		case RC_PURPOSE_ID:
		case RC_NOTICE_VERSION:
			return INT4OID;
		case RC_STATUS:
			return status_type;
		case RC_EFFECTIVE_AT:
		case RC_EXPIRES_AT:
		case RC_RECORDED_AT:
			return TIMESTAMPTZOID;
		case RC_EVIDENCE:
			return JSONBOID;
		default:
			return TEXTOID;
	}
}

/*
 * Prepare the direct writer for "rel" (building the cache if needed):
 * NULL when it stores exactly as the INSERT ... ON CONFLICT statement
 * would, else why the statement is needed.
 */
static const char *
writer_prepare(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	TriggerDesc *trig = rel->trigdesc;
	MemoryContext cxt;
	int			live = 0;
	bool		all_known = true;
	Oid			status_type;
	uint64		invals;
	List	   *indexes;
	ListCell   *lc;

	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relispartition)
		return "the table is not a plain table";
	if (rel->rd_rules != NULL)
		return "the table has rules";
	if (check_enable_rls(RelationGetRelid(rel), InvalidOid, true) == RLS_ENABLED)
		return "row security applies to the caller";
	if (trig != NULL &&
		(trig->trig_insert_new_table || trig->trig_update_old_table ||
		 trig->trig_update_new_table))
		return "a trigger uses transition tables";
	if (desc->constr != NULL && desc->constr->has_generated_stored)
		return "the table has generated columns";

	if (writer.valid && writer.relid == RelationGetRelid(rel) &&
		writer.ncheck == (desc->constr ? desc->constr->num_check : 0))
		return writer.why_not;

	/*
	 * (Re)build.  A replaced context goes now, or, when a call in progress
	 * may still use it, when the transaction ends.  An invalidation that
	 * arrives while building (catalog reads take locks) leaves the new
	 * cache invalid, to be built again by the next call.
	 */
	invals = writer_invals;
	cxt = AllocSetContextCreate(TopMemoryContext, "consent record writer",
								ALLOCSET_SMALL_SIZES);
	if (writer.cxt != NULL && writer_depth > 0)
		MemoryContextSetParent(writer.cxt, TopTransactionContext);
	else if (writer.cxt != NULL)
		MemoryContextDelete(writer.cxt);
	writer.cxt = cxt;
	writer.valid = false;
	writer.relid = RelationGetRelid(rel);
	writer.pkey = InvalidOid;
	writer.why_not = "the table's columns, indexes or defaults changed";
	writer.inserted_cols = writer.selected_cols = writer.updated_cols = NULL;
	writer.ncheck = desc->constr ? desc->constr->num_check : 0;
	writer.checks = NULL;

	/*
	 * Exactly the columns this writer sets, with their types (no typmod, no
	 * domain, the C collation for subject): any other column would miss its
	 * default, any other type its input checks.
	 */
	status_type = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
								  CStringGetDatum("status"),
								  ObjectIdGetDatum(RelationGetNamespace(rel)));
	for (int i = 0; i < RC_NCOLUMNS; i++)
		writer.att[i] = InvalidAttrNumber;
	for (int a = 0; a < desc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, a);
		bool		known = false;

		if (att->attisdropped)
			continue;
		live++;
		for (int i = 0; i < RC_NCOLUMNS && !known; i++)
			if (strcmp(NameStr(att->attname), record_column_names[i]) == 0)
			{
				known = (att->atttypid == record_column_type(i, status_type) &&
						 att->atttypmod == -1 &&
						 (i != RC_SUBJECT || att->attcollation == C_COLLATION_OID));
				writer.att[i] = att->attnum;
			}
		all_known &= known;
	}

	/*
	 * recorded_at, which the statement leaves to its default, must default
	 * to clock_timestamp(), the time this writer stores.
	 */
	if (all_known && live == RC_NCOLUMNS)
	{
		Node	   *def = NULL;

		for (int i = 0; desc->constr && i < desc->constr->num_defval; i++)
			if (desc->constr->defval[i].adnum == writer.att[RC_RECORDED_AT])
				def = stringToNode(desc->constr->defval[i].adbin);
		if (def == NULL || !IsA(def, FuncExpr) ||
			((FuncExpr *) def)->funcid != F_CLOCK_TIMESTAMP)
			all_known = false;
	}

	/*
	 * The arbiter: the primary key on (subject, purpose_id), the only
	 * unique index (the statement would take every unique index on those
	 * columns as an arbiter, and fail on a conflict in any other).
	 */
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Relation	idx = index_open(lfirst_oid(lc), AccessShareLock);

		if (idx->rd_index->indisunique && lfirst_oid(lc) != RelationGetPrimaryKeyIndex(rel))
			all_known = false;
		index_close(idx, NoLock);
	}
	list_free(indexes);
	if (all_known && live == RC_NCOLUMNS && OidIsValid(RelationGetPrimaryKeyIndex(rel)))
	{
		Relation	pk = index_open(RelationGetPrimaryKeyIndex(rel), AccessShareLock);

		if (pk->rd_index->indnkeyatts == 2 &&
			pk->rd_index->indkey.values[0] == writer.att[RC_SUBJECT] &&
			pk->rd_index->indkey.values[1] == writer.att[RC_PURPOSE_ID] &&
			pk->rd_index->indisunique && pk->rd_index->indimmediate &&
			pk->rd_index->indisvalid && RelationGetIndexPredicate(pk) == NIL)
			writer.pkey = RelationGetRelid(pk);
		index_close(pk, NoLock);
	}
	if (OidIsValid(writer.pkey))
	{
		MemoryContext old = MemoryContextSwitchTo(writer.cxt);
		ConstrCheck *check = desc->constr ? desc->constr->check : NULL;

		writer.checks = palloc0(sizeof(ExprState *) * Max(writer.ncheck, 1));
		/* as ExecRelCheck prepares them for each statement */
		for (int i = 0; i < writer.ncheck; i++)
			writer.checks[i] = ExecInitExpr(expression_planner((Expr *) stringToNode(check[i].ccbin)),
											NULL);

		/*
		 * What the statement's range table entry would say: every column
		 * but recorded_at (left to its default) inserted, the arbiter's
		 * columns selected, the others updated.
		 */
		for (int i = 0; i < RC_NCOLUMNS; i++)
		{
			int			col = writer.att[i] - FirstLowInvalidHeapAttributeNumber;

			if (i != RC_RECORDED_AT)
				writer.inserted_cols = bms_add_member(writer.inserted_cols, col);
			if (i == RC_SUBJECT || i == RC_PURPOSE_ID)
				writer.selected_cols = bms_add_member(writer.selected_cols, col);
			else
				writer.updated_cols = bms_add_member(writer.updated_cols, col);
		}
		MemoryContextSwitchTo(old);
		writer.why_not = NULL;
	}
	writer.valid = (writer_invals == invals);
	return writer.why_not;
}

/*
 * ExecConstraints, with the CHECK expressions prepared once per backend
 * when they are this call's: what they keep between evaluations in
 * "per-query" memory (a whole-row reference's descriptor, the hash table
 * of a long IN list) must live as long as they do, not as long as this
 * call's executor state.
 */
static void
check_constraints(ResultRelInfo *rri, TupleTableSlot *slot, EState *estate)
{
	ExprContext *econtext = GetPerTupleExprContext(estate);
	MemoryContext query_memory = econtext->ecxt_per_query_memory;

	if (rri->ri_ConstraintExprs != writer.checks || writer.checks == NULL)
	{
		ExecConstraints(rri, slot, estate);
		return;
	}
	econtext->ecxt_per_query_memory = writer.cxt;
	PG_TRY();
	{
		ExecConstraints(rri, slot, estate);
	}
	PG_CATCH();
	{
		/* not to be evaluated again: the error may have left them half-done */
		econtext->ecxt_per_query_memory = query_memory;
		writer.valid = false;
		writer_invals++;
		PG_RE_THROW();
	}
	PG_END_TRY();
	econtext->ecxt_per_query_memory = query_memory;
}

/*
 * The update of a locked row by the proposed one: ExecUpdate's steps, with
 * the statement's command id.
 */
static void
update_locked(EState *estate, ResultRelInfo *rri, EPQState *epq,
			  TupleTableSlot *existing, TupleTableSlot *slot)
{
	Relation	rel = rri->ri_RelationDesc;
	ItemPointerData tid = existing->tts_tid;
	TM_FailureData tmfd;
	LockTupleMode lockmode;
	bool		update_indexes;
	TM_Result	res;
	List	   *recheck = NIL;

	if (rri->ri_TrigDesc && rri->ri_TrigDesc->trig_update_before_row &&
		!ExecBRUpdateTriggers(estate, epq, rri, &tid, NULL, slot, NULL))
		return;					/* a trigger said "do nothing" */
	check_constraints(rri, slot, estate);
	res = table_tuple_update(rel, &tid, slot, estate->es_output_cid,
							 estate->es_snapshot, estate->es_crosscheck_snapshot,
							 true, &tmfd, &lockmode, &update_indexes);
	switch (res)
	{
		case TM_Ok:
			break;
		case TM_SelfModified:
			if (tmfd.cmax != estate->es_output_cid)
				ereport(ERROR,
						(errcode(ERRCODE_TRIGGERED_DATA_CHANGE_VIOLATION),
						 errmsg("tuple to be updated was already modified by an operation triggered by the current command"),
						 errhint("Consider using an AFTER trigger instead of a BEFORE trigger to propagate changes to other rows.")));
			return;				/* already updated by this command */
		default:
			/* the row is locked: no other transaction can have changed it */
			elog(ERROR, "unexpected table_tuple_update status: %u", res);
	}
	if (rri->ri_NumIndices > 0 && update_indexes)
		recheck = ExecInsertIndexTuples(rri, slot, estate, true, false, NULL, NIL);
	ExecARUpdateTriggers(estate, rri, NULL, NULL, &tid, NULL, slot, recheck, NULL, false);
	list_free(recheck);
}

/*
 * The ON CONFLICT loop of ExecInsert: insert the proposed row, or update
 * the row with its key, whichever the race with concurrent writers allows.
 */
static void
insert_or_update(EState *estate, ResultRelInfo *rri, EPQState *epq, List *arbiter,
				 TupleTableSlot *slot, TupleTableSlot *existing)
{
	Relation	rel = rri->ri_RelationDesc;

	for (;;)
	{
		ItemPointerData conflict;
		List	   *recheck = NIL;

		CHECK_FOR_INTERRUPTS();
		if (!ExecCheckIndexConstraints(rri, slot, estate, &conflict, arbiter))
		{
			/* ExecOnConflictUpdate: lock the existing row, then update it */
			TM_FailureData tmfd;
			TM_Result	res;
			bool		isnull;
			Datum		xmin;

			res = table_tuple_lock(rel, &conflict, estate->es_snapshot, existing,
								   estate->es_output_cid, ExecUpdateLockMode(estate, rri),
								   LockWaitBlock, 0, &tmfd);
			switch (res)
			{
				case TM_Ok:
					break;
				case TM_Invisible:
					xmin = slot_getsysattr(existing, MinTransactionIdAttributeNumber, &isnull);
					if (TransactionIdIsCurrentTransactionId(DatumGetTransactionId(xmin)))
						ereport(ERROR,
								(errcode(ERRCODE_CARDINALITY_VIOLATION),
								 errmsg("ON CONFLICT DO UPDATE command cannot affect row a second time"),
								 errhint("Ensure that no rows proposed for insertion within the same command have duplicate constrained values.")));
					elog(ERROR, "attempted to lock invisible tuple");
					break;
				case TM_SelfModified:
					elog(ERROR, "unexpected self-updated tuple");
					break;
				case TM_Updated:
				case TM_Deleted:
					if (IsolationUsesXactSnapshot() && res == TM_Updated)
						ereport(ERROR,
								(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
								 errmsg("could not serialize access due to concurrent update")));
					if (IsolationUsesXactSnapshot())
						ereport(ERROR,
								(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
								 errmsg("could not serialize access due to concurrent delete")));
					ExecClearTuple(existing);
					continue;	/* from the start, as the executor does */
				default:
					elog(ERROR, "unrecognized table_tuple_lock status: %u", res);
			}

			/* ExecCheckTupleVisible */
			if (IsolationUsesXactSnapshot() &&
				!table_tuple_satisfies_snapshot(rel, existing, estate->es_snapshot))
			{
				xmin = slot_getsysattr(existing, MinTransactionIdAttributeNumber, &isnull);
				if (!TransactionIdIsCurrentTransactionId(DatumGetTransactionId(xmin)))
					ereport(ERROR,
							(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
							 errmsg("could not serialize access due to concurrent update")));
			}

			/*
			 * The new version: the key columns are equal (C collation, so
			 * byte for byte) and every other column comes from the proposed
			 * row, so the proposed row is the update.
			 */
			update_locked(estate, rri, epq, existing, slot);
			ExecClearTuple(existing);
			return;
		}

		/* no conflict: a speculative insertion; else again, finding the other row */
		if (consent_insert_speculative(rri, slot, estate, estate->es_output_cid, arbiter, &recheck))
		{
			ExecARInsertTriggers(estate, rri, slot, recheck, NULL);
			list_free(recheck);
			return;
		}
	}
}
#endif							/* PostgreSQL 15 */

/*
 * Store the record directly: what INSERT ... ON CONFLICT (subject,
 * purpose_id) DO UPDATE SET <every other column> = EXCLUDED.<column> does,
 * step for step (execMain.c's start-up checks, nodeModifyTable.c's
 * ExecInsert, ExecOnConflictUpdate and ExecUpdate), without parsing,
 * planning or starting an executor: the privilege checks (and their hook),
 * statement triggers before and after, BEFORE INSERT row triggers, the
 * CHECK constraints, a speculative insertion that waits for concurrent
 * inserters of the same key, and on a conflict the lock of the existing
 * row and its update.  AFTER row triggers (audit, outbox, foreign key) are
 * queued and fired at the end, as at the end of a statement.  Returns
 * false, having done nothing, where writer_prepare() says the statement is
 * needed.
 *
 * The interfaces used here are those of PostgreSQL 15 (14 has other
 * trigger functions, 16 permission info in the range table and other
 * EvalPlanQualInit and ExecInsertIndexTuples); elsewhere the statement is
 * always used.
 */
static bool
store_direct(const NewRecord *nr)
{
#if PG_VERSION_NUM >= 150000 && PG_VERSION_NUM < 160000
	Relation	rel;
	const char *why_not;
	EState	   *estate;
	MemoryContext old;
	RangeTblEntry *rte;
	List	   *rtable;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	TupleTableSlot *existing;
	EPQState	epqstate;
	List	   *arbiter;
	TupleDesc	desc;
	ListCell   *lc;

	rel = table_open(meta.records, RowExclusiveLock);
	desc = RelationGetDescr(rel);
	why_not = writer_prepare(rel);
	if (why_not != NULL)
	{
		elog(DEBUG1, "consent: storing the record through SPI: %s", why_not);
		table_close(rel, NoLock);
		return false;
	}

	/* what the executor checks of any INSERT (ExecCheckXactReadOnly) */
	if (XactReadOnly)
		PreventCommandIfReadOnly("INSERT");
	PreventCommandIfParallelMode("INSERT");

	/* as SPI runs a statement: a fresh snapshot, a new command */
	PushActiveSnapshot(GetTransactionSnapshot());
	CommandCounterIncrement();
	UpdateActiveSnapshotCommandId();

	estate = CreateExecutorState();
	old = MemoryContextSwitchTo(estate->es_query_cxt);
	estate->es_snapshot = GetActiveSnapshot();
	estate->es_output_cid = GetCurrentCommandId(true);

	/*
	 * The range table entry the statement would have: privileges to check
	 * (INSERT and UPDATE, SELECT of the arbiter's columns) and the column
	 * sets the trigger code reads (read, never changed, by both).
	 */
	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	rte->requiredPerms = ACL_INSERT | ACL_UPDATE | ACL_SELECT;
	rte->checkAsUser = InvalidOid;
	rte->insertedCols = writer.inserted_cols;
	rte->selectedCols = writer.selected_cols;
	rte->updatedCols = writer.updated_cols;
	rtable = list_make1(rte);
	ExecCheckRTPerms(rtable, true);
	ExecInitRangeTable(estate, rtable);
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);

	/*
	 * CheckValidResultRel for an INSERT with ON CONFLICT DO UPDATE, which
	 * checks the replica identity for the update too since 15.15 (as the
	 * headers this is built with tell).
	 */
	CheckCmdReplicaIdentity(rel, CMD_INSERT);
#if PG_VERSION_NUM >= 150015
	CheckCmdReplicaIdentity(rel, CMD_UPDATE);
#endif
	/* found there by ExecGetTriggerResultRel when AFTER triggers fire */
	estate->es_opened_result_relations = lappend(estate->es_opened_result_relations, rri);
	ExecOpenIndices(rri, true);

	/*
	 * The prepared CHECK constraints, unless a call in progress (this one's
	 * caller, from a trigger or a constraint) may be evaluating them: an
	 * expression state is not reentrant.
	 */
	if (writer_depth == 0)
		rri->ri_ConstraintExprs = writer.checks;
	EvalPlanQualInit(&epqstate, estate, NULL, NIL, -1);

	slot = ExecInitExtraTupleSlot(estate, desc, &TTSOpsVirtual);
	existing = ExecInitExtraTupleSlot(estate, desc, table_slot_callbacks(rel));
	arbiter = list_make1_oid(writer.pkey);
	MemoryContextSwitchTo(old);

	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * desc->natts);
	for (int i = 0; i < RC_NCOLUMNS; i++)
	{
		slot->tts_values[writer.att[i] - 1] = nr->values[i];
		slot->tts_isnull[writer.att[i] - 1] = nr->isnull[i];
	}
	ExecStoreVirtualTuple(slot);
	slot->tts_tableOid = RelationGetRelid(rel);

	writer_depth++;
	PG_TRY();
	{
		AfterTriggerBeginQuery();
		ExecBSInsertTriggers(estate, rri);
		ExecBSUpdateTriggers(estate, rri);
		if (!(rri->ri_TrigDesc && rri->ri_TrigDesc->trig_insert_before_row &&
			  !ExecBRInsertTriggers(estate, rri, slot)))	/* not "do nothing" */
		{
			check_constraints(rri, slot, estate);
			insert_or_update(estate, rri, &epqstate, arbiter, slot, existing);
		}
		ExecASUpdateTriggers(estate, rri, NULL);
		ExecASInsertTriggers(estate, rri, NULL);
		AfterTriggerEndQuery(estate);
	}
	PG_FINALLY();
	{
		writer_depth--;
	}
	PG_END_TRY();

	/* relations the AFTER triggers' events opened (none expected) */
	foreach(lc, estate->es_trig_target_relations)
		table_close(((ResultRelInfo *) lfirst(lc))->ri_RelationDesc, NoLock);
	EvalPlanQualEnd(&epqstate);
	ExecCloseIndices(rri);
	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);

	CommandCounterIncrement();
	PopActiveSnapshot();
	table_close(rel, NoLock);
	return true;
#else
	return false;
#endif
}

/* Insert or overwrite the (subject, purpose) record. */
static void
upsert_record(const Choice *c, const PurposeRow *p, Oid status, const char *status_name,
			  bool has_expiry, TimestampTz expires_at, const NoticeInfo *ni,
			  const char *actor)
{
	Oid			types[11] = {TEXTOID, INT4OID, TEXTOID, TIMESTAMPTZOID, TEXTOID, INT4OID,
	TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID};
	Datum		values[11];
	char		nulls[11];
	SPIPlanPtr	plan;
	NewRecord	nr;

	memset(nr.isnull, false, sizeof(nr.isnull));
	nr.values[RC_SUBJECT] = c->subject;
	nr.values[RC_PURPOSE_ID] = Int32GetDatum(p->id);
	nr.values[RC_STATUS] = ObjectIdGetDatum(status);
	nr.values[RC_EFFECTIVE_AT] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	nr.values[RC_EXPIRES_AT] = TimestampTzGetDatum(expires_at);
	nr.isnull[RC_EXPIRES_AT] = !has_expiry;
	nr.values[RC_NOTICE_KEY] = ni ? CStringGetTextDatum(ni->key) : (Datum) 0;
	nr.values[RC_NOTICE_VERSION] = ni ? Int32GetDatum(ni->version) : (Datum) 0;
	nr.isnull[RC_NOTICE_KEY] = nr.isnull[RC_NOTICE_VERSION] = (ni == NULL);
	nr.values[RC_METHOD] = PointerGetDatum(c->method);
	nr.values[RC_SOURCE] = c->source;
	nr.isnull[RC_SOURCE] = c->source_null;
	nr.values[RC_ACTOR] = CStringGetTextDatum(actor);
	nr.values[RC_REASON] = c->reason;
	nr.isnull[RC_REASON] = c->reason_null;
	nr.values[RC_EVIDENCE] = c->evidence ? JsonbPGetDatum(c->evidence) : (Datum) 0;
	nr.isnull[RC_EVIDENCE] = (c->evidence == NULL);
	nr.values[RC_RECORDED_AT] = TimestampTzGetDatum(GetCurrentTimestamp());

	if (store_direct(&nr))
		return;

	/* the general path: the same statement, through SPI */
	memset(nulls, ' ', sizeof(nulls));
	for (int i = RC_SUBJECT; i <= RC_EVIDENCE; i++)
	{
		int			arg = (i < RC_EFFECTIVE_AT) ? i : i - 1;	/* effective_at is now() */

		if (i == RC_EFFECTIVE_AT)
			continue;
		values[arg] = nr.values[i];
		nulls[arg] = nr.isnull[i] ? 'n' : ' ';
	}
	values[RC_STATUS] = CStringGetTextDatum(status_name);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = saved_plan(&upsert_plan,
					  "INSERT INTO consent.records AS r"
					  " (subject, purpose_id, status, effective_at, expires_at, notice_key, notice_version,"
					  "  method, source, actor, reason, evidence)"
					  " VALUES ($1, $2, $3::consent.status, pg_catalog.now(), $4, $5, $6, $7, $8, $9, $10, $11)"
					  " ON CONFLICT (subject, purpose_id) DO UPDATE"
					  " SET status = EXCLUDED.status, effective_at = EXCLUDED.effective_at,"
					  "     expires_at = EXCLUDED.expires_at, notice_key = EXCLUDED.notice_key,"
					  "     notice_version = EXCLUDED.notice_version, method = EXCLUDED.method,"
					  "     source = EXCLUDED.source, actor = EXCLUDED.actor, reason = EXCLUDED.reason,"
					  "     evidence = EXCLUDED.evidence, recorded_at = EXCLUDED.recorded_at",
					  11, types);
	if (SPI_execute_plan(plan, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not store the record");
	SPI_finish();
}

/*
 * Validate one choice and store it; returns the stored status.  The same
 * checks, in the same order, as the PL/pgSQL writer this replaces.
 */
static Oid
record_choice(const Choice *c)
{
	Relation	purposes;
	Snapshot	snapshot;
	PurposeRow	p;
	char	   *purpose_str;
	NoticeInfo	notice;
	bool		has_notice = false;
	Oid			status;
	const char *status_name;
	bool		has_expiry = false;
	TimestampTz expires_at = 0;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	const char *actor;

	check_arguments(c);
	record_lock_tables();
	purpose_str = key_cstring(c->purpose);

	/*
	 * ROW SHARE on consent.purposes before the snapshot: retire_purpose
	 * holds EXCLUSIVE until it commits (see the file header).
	 */
	purposes = table_open(meta.purposes, RowShareLock);
	snapshot = RegisterSnapshot(GetTransactionSnapshot());

	if (!purpose_lookup(purposes, snapshot, c->purpose, &p))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("purpose \"%s\" does not exist", purpose_str),
				 errhint("%s", closest_purposes_hint(c->purpose, false))));
	if (IsolationUsesXactSnapshot())
	{
		PurposeRow	latest;

		if (!purpose_lookup(purposes, SnapshotSelf, c->purpose, &latest) ||
			!ItemPointerEquals(&latest.tid, &p.tid))
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not serialize access due to concurrent update")));
	}

	if (p.retired && (c->action == CA_GRANT || c->action == CA_CONFIRM))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("purpose \"%s\" is retired and cannot be granted", purpose_str),
				 errdetail("It was retired at %s.", timestamptz_cstring(p.retired_at)),
				 errhint("%s", closest_purposes_hint(c->purpose, true))));
	if ((c->action == CA_GRANT || c->action == CA_CONFIRM ||
		 c->action == CA_DENY || c->action == CA_WITHDRAW) &&
		p.basis != meta.lb_consent && p.basis != meta.lb_explicit &&
		p.basis != meta.lb_legitimate)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("purpose \"%s\" does not rest on consent, so it cannot be %s",
						purpose_str, action_participle(c->action)),
				 errdetail("Its legal basis is %s.", enum_cstring(p.basis)),
				 errhint("Processing does not rest on consent; a grant, refusal or withdrawal does not change it. "
						 "Handle the request under the rules of that legal basis.")));

	/* Notice: "key" (latest version) or "key@version". */
	if (c->notice != NULL)
	{
		const char *s = VARDATA_ANY(c->notice);
		int			len = VARSIZE_ANY_EXHDR(c->notice);
		int			keylen;
		int32		version;

		if (!notice_parse(s, len, &keylen, &version))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("malformed notice reference \"%s\"", text_to_cstring(c->notice)),
					 errhint("Write the notice key, or key@version with a positive version, e.g. privacy-policy@3.")));
		notice_resolve(snapshot, s, keylen, version, c->purpose, &notice);
		if (!notice.key_exists)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("notice \"%s\" does not exist", notice.key)));
		if (!notice.version_exists)
		{
			Oid			argtypes[1] = {TEXTOID};
			Datum		args[1] = {CStringGetTextDatum(notice.key)};
			char	   *published;

			published = spi_text("SELECT pg_catalog.string_agg(DISTINCT n.version::pg_catalog.text, ', ')"
								 "  FROM consent.notices n WHERE n.key OPERATOR(pg_catalog.=) $1",
								 1, argtypes, args);
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("notice \"%s\" has no version %d", notice.key, notice.version),
					 errhint("Published versions: %s.", published ? published : "")));
		}
		if (c->action == CA_GRANT && notice.superseded)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("notice \"%s\" version %d has been superseded by a material version",
							notice.key, notice.version),
					 errhint("A grant under it would not count; record the grant under the latest version, e.g. %s alone.",
							 quote_literal_cstr(notice.key))));
		if (!notice.covers)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("notice \"%s\" version %d does not cover purpose \"%s\"",
							notice.key, notice.version, purpose_str),
					 errhint("A notice covers the purposes it lists and their descendants.")));
		has_notice = true;
	}

	switch (c->action)
	{
		case CA_GRANT:
			if (!c->expires_null && p.basis != meta.lb_consent && p.basis != meta.lb_explicit)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("a grant for purpose \"%s\" cannot expire: it rests on %s",
								purpose_str, enum_cstring(p.basis)),
						 errhint("A grant here only lifts an objection; only consent expires.")));
			if (!c->expires_null && c->expires_at <= now)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("expiry %s is not in the future", timestamptz_cstring(c->expires_at))));
			if (!c->expires_null)
			{
				has_expiry = true;
				expires_at = c->expires_at;
			}
			else if (p.has_valid_for)
			{
				has_expiry = true;
				expires_at = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
																	 TimestampTzGetDatum(now),
																	 IntervalPGetDatum(&p.valid_for)));
			}
			status = p.requires_confirmation ? meta.st_pending : meta.st_granted;
			status_name = p.requires_confirmation ? "pending" : "granted";
			break;
		case CA_DENY:
			status = meta.st_denied;
			status_name = "denied";
			break;
		case CA_WITHDRAW:
			status = meta.st_withdrawn;
			status_name = "withdrawn";
			break;
		case CA_CONFIRM:
			status = meta.st_granted;
			status_name = "granted";
			break;
		case CA_EXPIRE:
			status = meta.st_expired;
			status_name = "expired";
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown action \"%s\"", c->action_name)));
			status = InvalidOid;	/* keep the compiler quiet */
			status_name = NULL;
	}

	if (consent_actor != NULL && consent_actor[0] != '\0')
		actor = consent_actor;
	else
		actor = GetUserNameFromId(GetSessionUserId(), false);

	UnregisterSnapshot(snapshot);
	table_close(purposes, NoLock);

	if (c->action == CA_CONFIRM)
		confirm_record(c, &p, purpose_str, actor);
	else
		upsert_record(c, &p, status, status_name, has_expiry, expires_at,
					  has_notice ? &notice : NULL, actor);
	return status;
}

/*
 * The subject argument "argno" as text: bigint and uuid subjects (the
 * overloads of the recording functions) map to their canonical text form,
 * as subject::text does.  The type is the one declared in the catalog (not
 * read off the call expression, which a caller from C may not supply),
 * looked up once per call site.
 */
static void
subject_arg(FunctionCallInfo fcinfo, int argno, Choice *c)
{
	Oid		   *type = (Oid *) fcinfo->flinfo->fn_extra;

	c->subject_null = PG_ARGISNULL(argno);
	if (c->subject_null)
		return;
	if (type == NULL)
	{
		Oid		   *argtypes;
		int			nargs;

		(void) get_func_signature(fcinfo->flinfo->fn_oid, &argtypes, &nargs);
		if (argno >= nargs)
			elog(ERROR, "function %u has no argument %d", fcinfo->flinfo->fn_oid, argno + 1);
		type = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(Oid));
		*type = argtypes[argno];
		fcinfo->flinfo->fn_extra = type;
	}
	if (*type == INT8OID)
		c->subject = CStringGetTextDatum(DatumGetCString(DirectFunctionCall1(int8out,
																			 PG_GETARG_DATUM(argno))));
	else if (*type == UUIDOID)
		c->subject = CStringGetTextDatum(DatumGetCString(DirectFunctionCall1(uuid_out,
																			 PG_GETARG_DATUM(argno))));
	else
		c->subject = PG_GETARG_DATUM(argno);
}

/*
 * Fill a Choice from the arguments of a recording function, at the
 * positions given (-1: the function has no such argument, NULL).
 */
static void
choice_args(FunctionCallInfo fcinfo, Choice *c, ChoiceAction action, const char *action_name,
			int subject, int purpose, int notice, int method, int source,
			int expires_at, int evidence, int reason)
{
	memset(c, 0, sizeof(*c));
	c->action = action;
	c->action_name = action_name;
	subject_arg(fcinfo, subject, c);
	c->purpose = PG_ARGISNULL(purpose) ? NULL : PG_DETOAST_DATUM_PACKED(PG_GETARG_DATUM(purpose));
	c->notice = (notice < 0 || PG_ARGISNULL(notice)) ? NULL : PG_GETARG_TEXT_PP(notice);
	c->method = (method < 0 || PG_ARGISNULL(method)) ? NULL : PG_GETARG_TEXT_PP(method);
	c->source_null = (source < 0 || PG_ARGISNULL(source));
	c->source = c->source_null ? (Datum) 0 : PG_GETARG_DATUM(source);
	c->expires_null = (expires_at < 0 || PG_ARGISNULL(expires_at));
	c->expires_at = c->expires_null ? 0 : PG_GETARG_TIMESTAMPTZ(expires_at);
	c->evidence = (evidence < 0 || PG_ARGISNULL(evidence)) ? NULL : PG_GETARG_JSONB_P(evidence);
	c->reason_null = (reason < 0 || PG_ARGISNULL(reason));
	c->reason = c->reason_null ? (Datum) 0 : PG_GETARG_DATUM(reason);
}

/*
 * consent.apply_choice(action, subject, purpose, notice, method, source,
 *						expires_at, evidence, reason) RETURNS consent.status
 *
 * Not STRICT: most arguments may be NULL, and a NULL where a value is
 * required has its own error (22004).  Every argument is checked here.
 */
Datum
consent_apply_choice(PG_FUNCTION_ARGS)
{
	Choice		c;
	ChoiceAction action = CA_UNKNOWN;
	const char *action_name = "<NULL>";

	if (!PG_ARGISNULL(0))
	{
		action_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
		if (strcmp(action_name, "grant") == 0)
			action = CA_GRANT;
		else if (strcmp(action_name, "deny") == 0)
			action = CA_DENY;
		else if (strcmp(action_name, "withdraw") == 0)
			action = CA_WITHDRAW;
		else if (strcmp(action_name, "confirm") == 0)
			action = CA_CONFIRM;
		else if (strcmp(action_name, "expire") == 0)
			action = CA_EXPIRE;
	}
	choice_args(fcinfo, &c, action, action_name, 1, 2, 3, 4, 5, 6, 7, 8);
	PG_RETURN_OID(record_choice(&c));
}

/*
 * The public recording functions, each SECURITY DEFINER with a pinned
 * search_path (see 35_recording.sql), for text, bigint and uuid subjects.
 * Their defaults (method 'api', ...) come from the SQL declarations.
 *
 * consent.grant(subject, purpose, notice, method, source, expires_at, evidence)
 */
Datum
consent_grant(PG_FUNCTION_ARGS)
{
	Choice		c;

	choice_args(fcinfo, &c, CA_GRANT, "grant", 0, 1, 2, 3, 4, 5, 6, -1);
	PG_RETURN_OID(record_choice(&c));
}

/* consent.deny(subject, purpose, notice, method, source, evidence) */
Datum
consent_deny(PG_FUNCTION_ARGS)
{
	Choice		c;

	choice_args(fcinfo, &c, CA_DENY, "deny", 0, 1, 2, 3, 4, -1, 5, -1);
	PG_RETURN_OID(record_choice(&c));
}

/* consent.confirm(subject, purpose, method, source, evidence) */
Datum
consent_confirm(PG_FUNCTION_ARGS)
{
	Choice		c;

	choice_args(fcinfo, &c, CA_CONFIRM, "confirm", 0, 1, -1, 2, 3, -1, 4, -1);
	PG_RETURN_OID(record_choice(&c));
}

/*
 * consent.withdraw(subject, purpose, reason, method)
 *
 * Withdrawing a purpose withdraws what was given for its descendants too,
 * each recorded on its own (in key order), so that no narrower grant
 * survives.  Only a purpose with children can have descendants: one index
 * probe saves the query for every other purpose.
 */
Datum
consent_withdraw(PG_FUNCTION_ARGS)
{
	Choice		c;
	Oid			status;
	Relation	purposes;
	bool		has_children;

	choice_args(fcinfo, &c, CA_WITHDRAW, "withdraw", 0, 1, -1, 3, -1, -1, -1, 2);
	status = record_choice(&c);

	record_meta_load();
	purposes = table_open(meta.purposes, AccessShareLock);
	PushActiveSnapshot(GetTransactionSnapshot());
	has_children = purpose_has_children(purposes, GetActiveSnapshot(), c.purpose);
	PopActiveSnapshot();
	table_close(purposes, AccessShareLock);

	if (has_children)
	{
		MemoryContext caller = CurrentMemoryContext;
		Oid			argtypes[2] = {TEXTOID, TEXTOID};
		Datum		values[2] = {c.subject, PointerGetDatum(c.purpose)};
		uint64		n;
		Datum	   *keys;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		saved_plan(&descendants_plan,
				   "SELECT p.key::pg_catalog.text FROM consent.records r"
				   "  JOIN consent.purposes p ON p.id OPERATOR(pg_catalog.=) r.purpose_id"
				   " WHERE r.subject OPERATOR(pg_catalog.=) $1"
				   "   AND p.key OPERATOR(consent.<@) $2::consent.purpose_key"
				   "   AND p.key OPERATOR(consent.<>) $2::consent.purpose_key"
				   "   AND r.status::pg_catalog.text OPERATOR(pg_catalog.=) ANY ('{granted,pending}')"
				   "   AND p.legal_basis::pg_catalog.text OPERATOR(pg_catalog.=)"
				   "       ANY ('{consent,explicit_consent,legitimate_interests}')"
				   " ORDER BY p.key",
				   2, argtypes);
		if (SPI_execute_plan(descendants_plan, values, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read the descendant records");

		/* copied into the caller's context: SPI_finish frees SPI's */
		n = SPI_processed;
		keys = MemoryContextAlloc(caller, sizeof(Datum) * Max(n, 1));
		for (uint64 i = 0; i < n; i++)
		{
			bool		isnull;
			Datum		k = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
			MemoryContext spi = MemoryContextSwitchTo(caller);

			keys[i] = PointerGetDatum(PG_DETOAST_DATUM_COPY(k));
			MemoryContextSwitchTo(spi);
		}
		SPI_finish();

		for (uint64 i = 0; i < n; i++)
		{
			Choice		d = c;

			d.purpose = (struct varlena *) DatumGetPointer(keys[i]);
			(void) record_choice(&d);
		}
	}
	PG_RETURN_OID(status);
}
