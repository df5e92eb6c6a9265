/*-------------------------------------------------------------------------
 *
 * util.c
 *		Small helpers: the SHA-256 of a notice body, the edit distance behind
 *		"did you mean" hints, and the catalog lookups of the extension's own
 *		objects that the C parts share.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/cryptohash.h"
#include "common/sha2.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/varlena.h"
#include "catalog/namespace.h"
#include "catalog/pg_enum.h"
#include "catalog/pg_type.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "consent.h"

PG_FUNCTION_INFO_V1(consent_sha256_text);
PG_FUNCTION_INFO_V1(consent_edit_distance);

/*
 * consent.sha256_text(text) RETURNS bytea
 *
 * Hashes the bytes of the value as stored, i.e. in the database encoding.
 * The encoding of a database never changes, so the result is immutable.
 */
Datum
consent_sha256_text(PG_FUNCTION_ARGS)
{
	text	   *in = PG_GETARG_TEXT_PP(0);
	pg_cryptohash_ctx *ctx;
	bytea	   *result;

	result = (bytea *) palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	SET_VARSIZE(result, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);

	ctx = pg_cryptohash_create(PG_SHA256);
	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) VARDATA_ANY(in),
							 VARSIZE_ANY_EXHDR(in)) < 0 ||
		pg_cryptohash_final(ctx, (uint8 *) VARDATA(result),
							PG_SHA256_DIGEST_LENGTH) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute SHA-256 digest: %s",
						pg_cryptohash_error(ctx))));
	pg_cryptohash_free(ctx);

	PG_RETURN_BYTEA_P(result);
}

/*
 * consent.edit_distance(text, text) RETURNS integer
 *
 * Levenshtein distance with unit costs; both inputs at most 255 characters.
 */
Datum
consent_edit_distance(PG_FUNCTION_ARGS)
{
	text	   *a = PG_GETARG_TEXT_PP(0);
	text	   *b = PG_GETARG_TEXT_PP(1);

	PG_RETURN_INT32(varstr_levenshtein(VARDATA_ANY(a), VARSIZE_ANY_EXHDR(a),
									   VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b),
									   1, 1, 1, false));
}

/* ----------------------------------------------------------------
 * Catalog lookups of the extension's objects (schema consent)
 * ----------------------------------------------------------------
 */

Oid
consent_namespace(void)
{
	Oid			nsp = get_namespace_oid("consent", true);

	if (!OidIsValid(nsp))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_SCHEMA),
				 errmsg("schema \"consent\" does not exist"),
				 errhint("Run CREATE EXTENSION consent in this database.")));
	return nsp;
}

Oid
consent_relid(Oid nsp, const char *name)
{
	Oid			relid = get_relname_relid(name, nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"consent.%s\" does not exist", name),
				 errhint("The consent extension is not installed correctly; reinstall it.")));
	return relid;
}

AttrNumber
consent_attnum(Oid relid, const char *name)
{
	AttrNumber	att = get_attnum(relid, name);

	if (att == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"consent.%s\" does not exist",
						name, get_rel_name(relid)),
				 errhint("The consent extension's objects were changed; reinstall the extension.")));
	return att;
}

Oid
consent_enum_label(Oid nsp, const char *type, const char *label)
{
	Oid			typid;
	Oid			labeloid;

	typid = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
							CStringGetDatum(type), ObjectIdGetDatum(nsp));
	if (!OidIsValid(typid))
		elog(ERROR, "type consent.%s is missing", type);
	labeloid = GetSysCacheOid2(ENUMTYPOIDNAME, Anum_pg_enum_oid,
							   ObjectIdGetDatum(typid), CStringGetDatum(label));
	if (!OidIsValid(labeloid))
		elog(ERROR, "label \"%s\" of type consent.%s is missing", label, type);
	return labeloid;
}

/*
 * Fill in what the extension's dynamic background workers (sweepers, sweep
 * helpers, notify relays) share: a database connection, started once
 * recovery has finished, never restarted by the postmaster (whoever needs
 * one starts it again).  The caller sets name, argument and notify pid.
 */
void
consent_worker_init(BackgroundWorker *bgw, const char *function, const char *type)
{
	memset(bgw, 0, sizeof(*bgw));
	bgw->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw->bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw->bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(bgw->bgw_library_name, "consent", BGW_MAXLEN);
	strlcpy(bgw->bgw_function_name, function, BGW_MAXLEN);
	strlcpy(bgw->bgw_type, type, BGW_MAXLEN);
}

/*
 * Insert "slot" into the relation of "rri" speculatively, as ExecInsert
 * does for ON CONFLICT: concurrent inserters of the same key in an arbiter
 * index (all unique indexes when "arbiter" is NIL) wait for our decision.
 * False, the insertion undone, when such a key turned up meanwhile: the
 * caller looks for the conflicting row again.  "recheck" (may be NULL)
 * gets the deferred indexes to recheck, for the AFTER INSERT triggers.
 */
bool
consent_insert_speculative(ResultRelInfo *rri, TupleTableSlot *slot, EState *estate,
						   CommandId cid, List *arbiter, List **recheck)
{
	bool		conflicted = false;
	uint32		token = SpeculativeInsertionLockAcquire(GetCurrentTransactionId());
	List	   *indexes;

	table_tuple_insert_speculative(rri->ri_RelationDesc, slot, cid, 0, NULL, token);
	indexes = ExecInsertIndexTuples(rri, slot, estate, false, true, &conflicted, arbiter);
	table_tuple_complete_speculative(rri->ri_RelationDesc, slot, token, !conflicted);
	SpeculativeInsertionLockRelease(GetCurrentTransactionId());
	if (recheck != NULL && !conflicted)
		*recheck = indexes;
	else
		list_free(indexes);
	return !conflicted;
}
