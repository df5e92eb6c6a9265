/*-------------------------------------------------------------------------
 *
 * audit.c
 *		The audit trail: C triggers that append one hash-chained event per
 *		change of consent.records, consent.purposes and consent.notices, in
 *		the writing transaction; the guards that keep the trail append-only;
 *		seals; erasure; and the helpers verification needs.
 *
 * Chains.  Every event belongs to one hash chain: the chain of its subject,
 * or the registry chain ('') for purposes and notices.  A chain is a row
 * of consent.audit_chains; a writer locks that row (FOR NO KEY UPDATE, a
 * tuple lock, no lock-table entry) before it appends, so writers of one
 * subject queue up and writers of different subjects never meet.  Holding
 * the lock, the writer takes the next id from the sequence (so, within a
 * chain, id order is append order), reads the chain's last event through
 * the (subject, id) index and links the new event to its hash.  A new
 * chain is created with a speculative insertion, as INSERT ... ON CONFLICT
 * does, so that two first events of one subject never fork it.
 *
 * Hash.  hash = SHA-256 over a domain tag, prev_hash and the canonical
 * encoding of every field (docs/audit.md gives it byte by byte).  Personal
 * fields (subject, source, reason, evidence, application_name, actor) enter
 * as commitments SHA-256(k || value) with a per-event, per-field key
 * k = HMAC-SHA256(chain secret, tag || id || field name).  Erasure replaces
 * those values, stores the commitments of the replaced fields and the keys
 * of the kept ones in "redactions", and replaces the chain secret: the
 * chain still verifies, and nothing left allows testing a guessed
 * identifier against it.
 *
 * The write path touches relations directly (no SPI): index probes under
 * SnapshotSelf, a heap insert and the executor's index maintenance.
 * Seals and erasure are rare and use SPI.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_enum.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "common/int.h"
#include "common/sha2.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inet.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"
#include "utils/xid8.h"

#include "consent.h"
#include "audit.h"
#include "sha256.h"

PG_FUNCTION_INFO_V1(consent_audit_trigger);
PG_FUNCTION_INFO_V1(consent_audit_guard);
PG_FUNCTION_INFO_V1(consent_last_event_id);
PG_FUNCTION_INFO_V1(consent_audit_event_hash);
PG_FUNCTION_INFO_V1(consent_audit_seal_root);
PG_FUNCTION_INFO_V1(consent_audit_redact_text);
PG_FUNCTION_INFO_V1(consent_audit_redact_jsonb);
PG_FUNCTION_INFO_V1(consent_audit_redactions);
PG_FUNCTION_INFO_V1(consent_pseudonym);
PG_FUNCTION_INFO_V1(consent_seal);
PG_FUNCTION_INFO_V1(consent_audit_erase);

#define HASH_LEN		PG_SHA256_DIGEST_LENGTH
#define EVENT_DOMAIN	"consent.audit.v1"	/* followed by one NUL byte */
#define SEAL_DOMAIN		"consent.seal.v1"	/* likewise */
#define PSEUDONYM_PREFIX "erased:"
#define REGISTRY_CHAIN	""

/* ----------------------------------------------------------------
 * Settings: the controller named in receipts and exports
 * ----------------------------------------------------------------
 */
static char *controller_name = NULL;
static char *controller_contact = NULL;
static char *controller_address = NULL;
static char *controller_email = NULL;
static char *controller_phone = NULL;
static char *controller_url = NULL;
static char *jurisdiction = NULL;
static char *policy_url = NULL;
static char *service_name = NULL;
static char *receipt_language = NULL;

/* ----------------------------------------------------------------
 * Fields of an event, in hash order
 * ----------------------------------------------------------------
 */
typedef enum AuditFieldKind
{
	AK_INT8,
	AK_INT4,
	AK_TSTZ,
	AK_XID8,
	AK_TEXT,
	AK_STATUS,
	AK_BYTEA,
	AK_JSONB,
	AK_INET
} AuditFieldKind;

typedef enum AuditField
{
	AF_ID,
	AF_AT,
	AF_XID,
	AF_SUBJECT,
	AF_PURPOSE,
	AF_ACTION,
	AF_OLD_STATUS,
	AF_NEW_STATUS,
	AF_NOTICE_KEY,
	AF_NOTICE_VERSION,
	AF_NOTICE_SHA256,
	AF_EXPIRES_AT,
	AF_ROW_STAMP,
	AF_METHOD,
	AF_SOURCE,
	AF_REASON,
	AF_EVIDENCE,
	AF_DB_USER,
	AF_SESSION_USER,
	AF_APPLICATION_NAME,
	AF_CLIENT_ADDR,
	AF_ACTOR,
	AF_NHASHED,					/* fields above enter the hash, in this order */
	AF_REDACTIONS = AF_NHASHED,
	AF_PREV_HASH,
	AF_HASH,
	AF_NFIELDS
} AuditField;

typedef struct AuditFieldDef
{
	const char *name;
	AuditFieldKind kind;
	bool		personal;		/* enters the hash as a commitment */
} AuditFieldDef;

static const AuditFieldDef audit_fields[AF_NFIELDS] = {
	{"id", AK_INT8, false},
	{"at", AK_TSTZ, false},
	{"xid", AK_XID8, false},
	{"subject", AK_TEXT, true},
	{"purpose", AK_TEXT, false},
	{"action", AK_TEXT, false},
	{"old_status", AK_STATUS, false},
	{"new_status", AK_STATUS, false},
	{"notice_key", AK_TEXT, false},
	{"notice_version", AK_INT4, false},
	{"notice_sha256", AK_BYTEA, false},
	{"expires_at", AK_TSTZ, false},
	{"row_stamp", AK_TSTZ, false},
	{"method", AK_TEXT, false},
	{"source", AK_TEXT, true},
	{"reason", AK_TEXT, true},
	{"evidence", AK_JSONB, true},
	{"db_user", AK_TEXT, false},
	{"session_user", AK_TEXT, false},
	{"application_name", AK_TEXT, true},
	{"client_addr", AK_INET, false},
	{"actor", AK_TEXT, true},
	{"redactions", AK_JSONB, false},
	{"prev_hash", AK_BYTEA, false},
	{"hash", AK_BYTEA, false}
};

typedef struct AuditEvent
{
	Datum		values[AF_NFIELDS];
	bool		isnull[AF_NFIELDS];
} AuditEvent;

/* ----------------------------------------------------------------
 * OIDs and attribute numbers, looked up once per backend and dropped on
 * any relcache invalidation of the relations involved
 * ----------------------------------------------------------------
 */
typedef struct AuditMeta
{
	Oid			records,
				purposes,
				notices,
				purposes_pkey,
				notices_kvl,
				events,
				events_pkey,
				events_subject_idx,
				events_seq,
				chains;
	AttrNumber	r_subject,
				r_purpose_id,
				r_status,
				r_expires_at,
				r_notice_key,
				r_notice_version,
				r_method,
				r_source,
				r_actor,
				r_reason,
				r_evidence,
				r_recorded_at;
	AttrNumber	p_id,
				p_key,
				p_created_at,
				p_retired_at;
	AttrNumber	n_id,
				n_key,
				n_version,
				n_body_sha256,
				n_published_at;
	AttrNumber	c_subject,
				c_secret,
				c_started_at,
				c_erased_at;
	AttrNumber	e_att[AF_NFIELDS];
	Oid			st_pending,
				st_granted,
				st_denied,
				st_withdrawn,
				st_expired;
} AuditMeta;

static AuditMeta meta;
static bool meta_valid = false;

/* ----------------------------------------------------------------
 * Backend state
 * ----------------------------------------------------------------
 */
static bool erasing = false;

/*
 * The id of the event this backend wrote last, per transaction, restored
 * when the subtransaction that wrote it aborts.  "owner" is the
 * subtransaction the current value was set in; "saved" holds the values to
 * restore, newest first (in TopTransactionContext).
 */
typedef struct SavedLast
{
	bool		have;
	int64		id;
	SubTransactionId owner;
	struct SavedLast *next;
} SavedLast;

static LocalTransactionId last_lxid = InvalidLocalTransactionId;
static bool last_have = false;
static int64 last_id = 0;
static SubTransactionId last_owner = InvalidSubTransactionId;
static SavedLast *last_saved = NULL;
static int64 first_id_in_xact = 0;	/* 0: none */

static bool client_addr_known = false;
static Datum client_addr = (Datum) 0;	/* inet, in TopMemoryContext */
static bool client_addr_isnull = true;	/* no IP client */

/* ----------------------------------------------------------------
 * Settings and callbacks
 * ----------------------------------------------------------------
 */
static void
define_string(const char *name, const char *desc, char **var)
{
	DefineCustomStringVariable(name, desc,
							   "Shown in consent receipts and exports; set it per database with ALTER DATABASE ... SET.",
							   var, "", PGC_SUSET, 0, NULL, NULL, NULL);
}

static void
audit_relcache_callback(Datum arg pg_attribute_unused(), Oid relid)
{
	if (!meta_valid)
		return;
	if (!OidIsValid(relid) ||
		relid == meta.records || relid == meta.purposes ||
		relid == meta.notices || relid == meta.events ||
		relid == meta.chains || relid == meta.events_seq ||
		relid == meta.events_pkey ||
		relid == meta.purposes_pkey || relid == meta.notices_kvl ||
		relid == meta.events_subject_idx)
		meta_valid = false;
}

static void
last_reset(void)
{
	last_lxid = InvalidLocalTransactionId;
	last_have = false;
	last_id = 0;
	last_owner = InvalidSubTransactionId;
	last_saved = NULL;
	first_id_in_xact = 0;
}

static void
audit_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			last_reset();
			erasing = false;
			break;
		default:
			break;
	}
}

static void
audit_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg pg_attribute_unused())
{
	if (last_lxid != MyProc->lxid)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		/* Values set in mySubid or its children are gone. */
		while (last_owner != InvalidSubTransactionId && last_owner >= mySubid)
		{
			if (last_saved == NULL)
			{
				last_have = false;
				last_owner = InvalidSubTransactionId;
				break;
			}
			last_have = last_saved->have;
			last_id = last_saved->id;
			last_owner = last_saved->owner;
			last_saved = last_saved->next;
		}
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB && last_owner == mySubid)
	{
		/* The value now belongs to the parent; drop what it overwrote there. */
		if (last_saved != NULL && last_saved->owner == parentSubid)
			last_saved = last_saved->next;
		last_owner = parentSubid;
	}
}

static void
note_event(int64 id)
{
	SubTransactionId sub = GetCurrentSubTransactionId();

	if (last_lxid != MyProc->lxid)
	{
		last_reset();
		last_lxid = MyProc->lxid;
		first_id_in_xact = id;
	}
	if (last_owner != sub)
	{
		SavedLast  *s = MemoryContextAlloc(TopTransactionContext, sizeof(SavedLast));

		s->have = last_have;
		s->id = last_id;
		s->owner = last_owner;
		s->next = last_saved;
		last_saved = s;
		last_owner = sub;
	}
	last_have = true;
	last_id = id;
}

void
consent_audit_init(void)
{
	define_string("consent.controller_name", "Name of the PII controller (Kantara piiController).", &controller_name);
	define_string("consent.controller_contact", "Contact person or office of the controller.", &controller_contact);
	define_string("consent.controller_address", "Postal address of the controller.", &controller_address);
	define_string("consent.controller_email", "Contact e-mail of the controller.", &controller_email);
	define_string("consent.controller_phone", "Contact phone of the controller.", &controller_phone);
	define_string("consent.controller_url", "Web address of the controller (piiControllerUrl).", &controller_url);
	define_string("consent.jurisdiction", "Jurisdiction of the controller, e.g. EU or DE.", &jurisdiction);
	define_string("consent.policy_url", "Web address of the privacy policy (policyUrl).", &policy_url);
	define_string("consent.service_name", "Service named in receipts (services[].service); default: the controller name.", &service_name);
	define_string("consent.receipt_language", "Language of receipts (language), e.g. en.", &receipt_language);

	CacheRegisterRelcacheCallback(audit_relcache_callback, (Datum) 0);
	RegisterXactCallback(audit_xact_callback, NULL);
	RegisterSubXactCallback(audit_subxact_callback, NULL);
}

bool
consent_audit_erasing(void)
{
	return erasing;
}

/* ----------------------------------------------------------------
 * Catalog lookups
 * ----------------------------------------------------------------
 */
static const AuditMeta *
audit_meta(void)
{
	Oid			nsp;
	AuditMeta	m;

	if (meta_valid)
		return &meta;

	nsp = get_namespace_oid("consent", true);
	if (!OidIsValid(nsp))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_SCHEMA),
				 errmsg("schema \"consent\" does not exist"),
				 errhint("Run CREATE EXTENSION consent in this database.")));

	m.records = consent_relid(nsp, "records");
	m.purposes = consent_relid(nsp, "purposes");
	m.notices = consent_relid(nsp, "notices");
	m.purposes_pkey = consent_relid(nsp, "purposes_pkey");
	m.notices_kvl = consent_relid(nsp, "notices_key_version_locale_key");
	m.events = consent_relid(nsp, "audit_events");
	m.events_pkey = consent_relid(nsp, "audit_events_pkey");
	m.events_subject_idx = consent_relid(nsp, "audit_events_subject_idx");
	m.events_seq = consent_relid(nsp, "audit_events_id_seq");
	m.chains = consent_relid(nsp, "audit_chains");

	m.r_subject = consent_attnum(m.records, "subject");
	m.r_purpose_id = consent_attnum(m.records, "purpose_id");
	m.r_status = consent_attnum(m.records, "status");
	m.r_expires_at = consent_attnum(m.records, "expires_at");
	m.r_notice_key = consent_attnum(m.records, "notice_key");
	m.r_notice_version = consent_attnum(m.records, "notice_version");
	m.r_method = consent_attnum(m.records, "method");
	m.r_source = consent_attnum(m.records, "source");
	m.r_actor = consent_attnum(m.records, "actor");
	m.r_reason = consent_attnum(m.records, "reason");
	m.r_evidence = consent_attnum(m.records, "evidence");
	m.r_recorded_at = consent_attnum(m.records, "recorded_at");

	m.p_id = consent_attnum(m.purposes, "id");
	m.p_key = consent_attnum(m.purposes, "key");
	m.p_created_at = consent_attnum(m.purposes, "created_at");
	m.p_retired_at = consent_attnum(m.purposes, "retired_at");

	m.n_id = consent_attnum(m.notices, "id");
	m.n_key = consent_attnum(m.notices, "key");
	m.n_version = consent_attnum(m.notices, "version");
	m.n_body_sha256 = consent_attnum(m.notices, "body_sha256");
	m.n_published_at = consent_attnum(m.notices, "published_at");

	m.c_subject = consent_attnum(m.chains, "subject");
	m.c_secret = consent_attnum(m.chains, "secret");
	m.c_started_at = consent_attnum(m.chains, "started_at");
	m.c_erased_at = consent_attnum(m.chains, "erased_at");

	for (int f = 0; f < AF_NFIELDS; f++)
		m.e_att[f] = consent_attnum(m.events, audit_fields[f].name);

	m.st_pending = consent_enum_label(nsp, "status", "pending");
	m.st_granted = consent_enum_label(nsp, "status", "granted");
	m.st_denied = consent_enum_label(nsp, "status", "denied");
	m.st_withdrawn = consent_enum_label(nsp, "status", "withdrawn");
	m.st_expired = consent_enum_label(nsp, "status", "expired");

	meta = m;
	meta_valid = true;
	return &meta;
}

/* ----------------------------------------------------------------
 * SHA-256 and HMAC-SHA256
 * ----------------------------------------------------------------
 */
/*
 * SHA-256 and HMAC-SHA256 come from sha256.c: plain structs, copied rather
 * than re-initialised, which matters at twenty-odd short hashes per event.
 */
#define sha_init(s)				sha256_init(s)
#define sha_update(s, p, n)		sha256_update((s), (p), (n))
#define sha_final(s, out)		sha256_final((s), (out))

static char *
hex_of(const uint8 *b, int n)
{
	static const char digits[] = "0123456789abcdef";
	char	   *s = palloc(2 * n + 1);

	for (int i = 0; i < n; i++)
	{
		s[2 * i] = digits[b[i] >> 4];
		s[2 * i + 1] = digits[b[i] & 15];
	}
	s[2 * n] = '\0';
	return s;
}

static bool
unhex32(const char *s, int len, uint8 *out)
{
	if (len != 2 * HASH_LEN)
		return false;
	for (int i = 0; i < HASH_LEN; i++)
	{
		int			v = 0;

		for (int j = 0; j < 2; j++)
		{
			char		c = s[2 * i + j];

			v <<= 4;
			if (c >= '0' && c <= '9')
				v |= c - '0';
			else if (c >= 'a' && c <= 'f')
				v |= c - 'a' + 10;
			else
				return false;
		}
		out[i] = (uint8) v;
	}
	return true;
}

static bytea *
bytea_of(const uint8 *b, int n)
{
	bytea	   *r = palloc(VARHDRSZ + n);

	SET_VARSIZE(r, VARHDRSZ + n);
	if (n > 0)
		memcpy(VARDATA(r), b, n);
	return r;
}

/* ----------------------------------------------------------------
 * Canonical encoding and the event hash (docs/audit.md)
 * ----------------------------------------------------------------
 */
static const char *
status_label(Oid enumoid)
{
	HeapTuple	tup;
	char	   *label;

	/* the five labels, without a catalog lookup while the OIDs are known */
	if (meta_valid)
	{
		if (enumoid == meta.st_granted)
			return "granted";
		if (enumoid == meta.st_expired)
			return "expired";
		if (enumoid == meta.st_withdrawn)
			return "withdrawn";
		if (enumoid == meta.st_denied)
			return "denied";
		if (enumoid == meta.st_pending)
			return "pending";
	}
	tup = SearchSysCache1(ENUMOID, ObjectIdGetDatum(enumoid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "enum label %u of consent.status does not exist", enumoid);
	label = pstrdup(NameStr(((Form_pg_enum) GETSTRUCT(tup))->enumlabel));
	ReleaseSysCache(tup);
	return label;
}

/*
 * The plain encoding of one value: 0x00 for NULL, else 0x01, the length as
 * a 4-byte big-endian integer, and the bytes.
 */
static void
encode_value(StringInfo buf, AuditFieldKind kind, Datum d, bool isnull)
{
	const char *p = NULL;
	uint32		len = 0;
	uint64		n64;
	uint32		n32;
	uint32		lenbe;

	if (isnull)
	{
		appendStringInfoChar(buf, '\0');
		return;
	}
	switch (kind)
	{
		case AK_INT8:
		case AK_TSTZ:
			n64 = pg_hton64((uint64) DatumGetInt64(d));
			p = (const char *) &n64;
			len = 8;
			break;
		case AK_XID8:
			n64 = pg_hton64(U64FromFullTransactionId(DatumGetFullTransactionId(d)));
			p = (const char *) &n64;
			len = 8;
			break;
		case AK_INT4:
			n32 = pg_hton32((uint32) DatumGetInt32(d));
			p = (const char *) &n32;
			len = 4;
			break;
		case AK_TEXT:
		case AK_BYTEA:
			{
				struct varlena *v = PG_DETOAST_DATUM_PACKED(d);

				p = VARDATA_ANY(v);
				len = VARSIZE_ANY_EXHDR(v);
			}
			break;
		case AK_STATUS:
			p = status_label(DatumGetObjectId(d));
			len = strlen(p);
			break;
		case AK_JSONB:
			{
				Jsonb	   *jb = DatumGetJsonbP(d);

				p = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
				len = strlen(p);
			}
			break;
		case AK_INET:
			p = DatumGetCString(DirectFunctionCall1(inet_out, d));
			len = strlen(p);
			break;
	}
	appendStringInfoChar(buf, '\1');
	/* not into n32: p may point there (an integer value) */
	lenbe = pg_hton32(len);
	appendBinaryStringInfo(buf, (const char *) &lenbe, 4);
	appendBinaryStringInfo(buf, p, len);
}

/*
 * k = HMAC-SHA256(secret, "consent.audit.v1\0" || be64(id) || field name),
 * with the secret's key blocks absorbed once (sha256_hmac_key).
 */
static void
field_key(const Sha256Hmac *secret, int64 id, int f, uint8 *k)
{
	uint64		idbe = pg_hton64((uint64) id);

	sha256_hmac(secret,
				EVENT_DOMAIN, sizeof(EVENT_DOMAIN),
				&idbe, 8,
				audit_fields[f].name, strlen(audit_fields[f].name), k);
}

/* c = SHA-256(k || plain encoding of the value) */
static void
field_commitment(const uint8 *k, StringInfo enc, uint8 *c)
{
	Sha256		ctx;

	sha_init(&ctx);
	sha_update(&ctx, k, HASH_LEN);
	sha_update(&ctx, enc->data, enc->len);
	sha_final(&ctx, c);
}

/*
 * The redaction erasure stored for field f: a commitment ("commitment") or
 * a field key ("key").  Returns 'c', 'k' or 0 (none), filling out.
 */
static char
redaction_of(Jsonb *red, int f, uint8 *out)
{
	JsonbValue *entry;
	JsonbValue *v;
	const char *name = audit_fields[f].name;

	if (red == NULL || !JB_ROOT_IS_OBJECT(red))
		return 0;
	entry = getKeyJsonValueFromContainer(&red->root, name, strlen(name), NULL);
	if (entry == NULL || entry->type != jbvBinary)
		return 0;
	v = getKeyJsonValueFromContainer(entry->val.binary.data, "commitment", 10, NULL);
	if (v != NULL && v->type == jbvString &&
		unhex32(v->val.string.val, v->val.string.len, out))
		return 'c';
	v = getKeyJsonValueFromContainer(entry->val.binary.data, "key", 3, NULL);
	if (v != NULL && v->type == jbvString &&
		unhex32(v->val.string.val, v->val.string.len, out))
		return 'k';
	return 0;
}

/*
 * The hash an event must carry: SHA-256 over "consent.audit.v1\0",
 * prev_hash and each field in order, plain fields as their encoding and
 * personal fields as 0x02 followed by their commitment.  "secret" is the
 * chain's (NULL when unknown); returns false when it was needed.
 */
static bool
event_hash(const AuditEvent *ev, const uint8 *secret, uint8 *out)
{
	Sha256		ctx;
	Sha256Hmac	key;
	bool		have_key = false;
	Jsonb	   *red = ev->isnull[AF_REDACTIONS] ? NULL : DatumGetJsonbP(ev->values[AF_REDACTIONS]);
	int64		id = DatumGetInt64(ev->values[AF_ID]);
	StringInfoData enc;
	bool		ok = true;

	initStringInfo(&enc);
	sha_init(&ctx);
	sha_update(&ctx, EVENT_DOMAIN, sizeof(EVENT_DOMAIN));
	{
		bytea	   *prev = DatumGetByteaPP(ev->values[AF_PREV_HASH]);

		sha_update(&ctx, VARDATA_ANY(prev), VARSIZE_ANY_EXHDR(prev));
	}
	for (int f = 0; f < AF_NHASHED && ok; f++)
	{
		resetStringInfo(&enc);
		encode_value(&enc, audit_fields[f].kind, ev->values[f], ev->isnull[f]);
		if (!audit_fields[f].personal)
			sha_update(&ctx, enc.data, enc.len);
		else
		{
			uint8		k[HASH_LEN];
			uint8		c[HASH_LEN];
			char		how = redaction_of(red, f, k);

			if (how == 'c')
				memcpy(c, k, HASH_LEN);
			else
			{
				if (how == 0)
				{
					if (secret == NULL)
					{
						ok = false;
						break;
					}
					if (!have_key)
					{
						sha256_hmac_key(&key, secret, HASH_LEN);
						have_key = true;
					}
					field_key(&key, id, f, k);
				}
				field_commitment(k, &enc, c);
			}
			sha_update(&ctx, "\2", 1);
			sha_update(&ctx, c, HASH_LEN);
		}
	}
	if (ok)
		sha_final(&ctx, out);
	pfree(enc.data);
	return ok;
}

/* ----------------------------------------------------------------
 * Events as rows of consent.audit_events
 * ----------------------------------------------------------------
 */
static void
event_init(AuditEvent *ev)
{
	for (int f = 0; f < AF_NFIELDS; f++)
	{
		ev->values[f] = (Datum) 0;
		ev->isnull[f] = true;
	}
}

static inline void
event_set(AuditEvent *ev, int f, Datum d)
{
	ev->values[f] = d;
	ev->isnull[f] = false;
}

static inline void
event_set_text(AuditEvent *ev, int f, const char *s)
{
	if (s == NULL)
		ev->isnull[f] = true;
	else
		event_set(ev, f, CStringGetTextDatum(s));
}

/* Copy attribute "att" of a tuple into field f (NULL stays NULL). */
static inline void
event_copy(AuditEvent *ev, int f, HeapTuple tup, TupleDesc desc, AttrNumber att)
{
	ev->values[f] = heap_getattr(tup, att, desc, &ev->isnull[f]);
}

/*
 * Read a row of consent.audit_events (or of any row type with the same
 * column names) into an event.  The column map is cached in *cache.
 */
typedef struct RowMap
{
	Oid			type;
	int32		typmod;
	AttrNumber	att[AF_NFIELDS];
} RowMap;

static void
event_from_row(HeapTupleHeader row, RowMap **cache, MemoryContext mcxt, AuditEvent *ev)
{
	Oid			type = HeapTupleHeaderGetTypeId(row);
	int32		typmod = HeapTupleHeaderGetTypMod(row);
	TupleDesc	desc = lookup_rowtype_tupdesc(type, typmod);
	HeapTupleData tmp;
	RowMap	   *map = *cache;

	if (map == NULL || map->type != type || map->typmod != typmod)
	{
		if (map == NULL)
			map = *cache = MemoryContextAlloc(mcxt, sizeof(RowMap));
		map->type = type;
		map->typmod = typmod;
		for (int f = 0; f < AF_NFIELDS; f++)
		{
			map->att[f] = InvalidAttrNumber;
			for (int i = 0; i < desc->natts; i++)
			{
				Form_pg_attribute a = TupleDescAttr(desc, i);

				if (!a->attisdropped && strcmp(NameStr(a->attname), audit_fields[f].name) == 0)
					map->att[f] = i + 1;
			}
			if (map->att[f] == InvalidAttrNumber)
				ereport(ERROR,
						(errcode(ERRCODE_DATATYPE_MISMATCH),
						 errmsg("row has no column \"%s\"", audit_fields[f].name),
						 errhint("Pass a row of consent.audit_events.")));
		}
	}
	tmp.t_len = HeapTupleHeaderGetDatumLength(row);
	ItemPointerSetInvalid(&tmp.t_self);
	tmp.t_tableOid = InvalidOid;
	tmp.t_data = row;
	for (int f = 0; f < AF_NFIELDS; f++)
		ev->values[f] = heap_getattr(&tmp, map->att[f], desc, &ev->isnull[f]);
	ReleaseTupleDesc(desc);
}

/* ----------------------------------------------------------------
 * The writer: appends events to their chains
 * ----------------------------------------------------------------
 */
/*
 * What a statement keeps between the rows it audits (the trigger's
 * fn_extra, which lives as long as the statement): index descriptions,
 * slots, an executor state, purpose keys and user names.  Building these
 * per row was about a fifth of the trigger's cost in a profile of the
 * expiry sweep.  Relations are still opened and closed per row (cheap once
 * the lock is held): a relation held open across rows would have to be
 * closed at the end of the statement, which a trigger is not told about.
 */
typedef struct WriterCache
{
	MemoryContext cxt;
	Oid			events;			/* the relations described below */
	Oid			chains;
	int			events_natts;
	int			chains_natts;
	EState	   *estate;
	int			ev_nindexes;
	Oid		   *ev_index_oids;
	IndexInfo **ev_index_info;
	Relation   *ev_index_rels;	/* opened per row */
	int			ev_subject_index;	/* position of (subject, id) */
	int			ch_nindexes;
	Oid		   *ch_index_oids;
	IndexInfo **ch_index_info;	/* with what speculative insertion needs */
	Relation   *ch_index_rels;
	TupleTableSlot *events_slot;	/* virtual, to insert */
	TupleTableSlot *events_scan;	/* heap, to read */
	TupleTableSlot *chains_slot;	/* heap, to insert and lock */
	HTAB	   *purpose_keys;	/* purposes.id -> key, as text */
	Oid			outer_user;
	char	   *outer_user_name;
	Oid			session_user;
	char	   *session_user_name;
} WriterCache;

typedef struct PurposeKeyEntry
{
	int32		id;
	text	   *key;
} PurposeKeyEntry;

typedef struct AuditWriter
{
	const AuditMeta *m;
	WriterCache *c;
	bool		own_cache;		/* built for this writer alone */
	EState	   *estate;
	Relation	events;
	Relation	chains;
	Relation	subject_idx;
	ResultRelInfo events_rri;
	ResultRelInfo chains_rri;
	TupleTableSlot *events_slot;
	TupleTableSlot *events_scan;
	TupleTableSlot *chains_slot;
	CommandId	cid;
} AuditWriter;

/* Index OIDs and descriptions of a relation, built once per statement. */
static int
cache_indexes(Relation rel, bool speculative, Oid **oids, IndexInfo ***info, Relation **rels)
{
	List	   *list = RelationGetIndexList(rel);
	int			n = list_length(list);
	ListCell   *lc;
	int			i = 0;

	*oids = palloc(sizeof(Oid) * (n + 1));
	*info = palloc(sizeof(IndexInfo *) * (n + 1));
	*rels = palloc0(sizeof(Relation) * (n + 1));
	foreach(lc, list)
	{
		Relation	index = index_open(lfirst_oid(lc), RowExclusiveLock);
		IndexInfo  *ii = BuildIndexInfo(index);

		if (speculative && ii->ii_Unique)
			BuildSpeculativeIndexInfo(index, ii);
		(*oids)[i] = lfirst_oid(lc);
		(*info)[i] = ii;
		index_close(index, NoLock);
		i++;
	}
	list_free(list);
	return n;
}

static WriterCache *
writer_cache_build(const AuditMeta *m, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	WriterCache *c = palloc0(sizeof(WriterCache));
	Relation	events;
	Relation	chains;
	HASHCTL		hctl;

	c->cxt = cxt;
	c->events = m->events;
	c->chains = m->chains;
	c->estate = CreateExecutorState();

	/*
	 * Lock consent.audit_events before taking an id: consent.seal() reads
	 * the sequence, then waits for every holder of this lock (audit.md).
	 */
	events = table_open(m->events, RowExclusiveLock);
	chains = table_open(m->chains, RowExclusiveLock);
	c->events_natts = RelationGetNumberOfAttributes(events);
	c->chains_natts = RelationGetNumberOfAttributes(chains);
	c->ev_nindexes = cache_indexes(events, false, &c->ev_index_oids,
								   &c->ev_index_info, &c->ev_index_rels);
	c->ev_subject_index = -1;
	for (int i = 0; i < c->ev_nindexes; i++)
		if (c->ev_index_oids[i] == m->events_subject_idx)
			c->ev_subject_index = i;
	if (c->ev_subject_index < 0)
		elog(ERROR, "index \"audit_events_subject_idx\" is not an index of consent.audit_events");
	c->ch_nindexes = cache_indexes(chains, true, &c->ch_index_oids,
								   &c->ch_index_info, &c->ch_index_rels);

	/* copies of the descriptors are not reference-counted: no pins */
	c->events_slot = MakeSingleTupleTableSlot(CreateTupleDescCopy(RelationGetDescr(events)),
											  &TTSOpsVirtual);
	c->events_scan = MakeSingleTupleTableSlot(CreateTupleDescCopy(RelationGetDescr(events)),
											  &TTSOpsBufferHeapTuple);
	c->chains_slot = MakeSingleTupleTableSlot(CreateTupleDescCopy(RelationGetDescr(chains)),
											  &TTSOpsBufferHeapTuple);
	table_close(chains, NoLock);
	table_close(events, NoLock);

	memset(&hctl, 0, sizeof(hctl));
	hctl.keysize = sizeof(int32);
	hctl.entrysize = sizeof(PurposeKeyEntry);
	hctl.hcxt = cxt;
	c->purpose_keys = hash_create("consent audit purpose keys", 16, &hctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	MemoryContextSwitchTo(old);
	return c;
}

static void
writer_cache_free(WriterCache *c)
{
	ExecDropSingleTupleTableSlot(c->events_slot);
	ExecDropSingleTupleTableSlot(c->events_scan);
	ExecDropSingleTupleTableSlot(c->chains_slot);
	FreeExecutorState(c->estate);
	hash_destroy(c->purpose_keys);
}

static void
open_indexes(Relation rel, ResultRelInfo *rri, int n, const Oid *oids,
			 IndexInfo **info, Relation *rels)
{
	MemSet(rri, 0, sizeof(ResultRelInfo));
	rri->type = T_ResultRelInfo;
	rri->ri_RelationDesc = rel;
	rri->ri_NumIndices = n;
	rri->ri_IndexRelationDescs = rels;
	rri->ri_IndexRelationInfo = info;
	for (int i = 0; i < n; i++)
		rels[i] = index_open(oids[i], RowExclusiveLock);
}

/*
 * Open the audit tables for appending.  "cachep" is where the statement
 * keeps its WriterCache (NULL: build one for this writer alone).
 */
static void
writer_open(AuditWriter *w, WriterCache **cachep, MemoryContext cxt)
{
	WriterCache *c = cachep ? *cachep : NULL;

	/*
	 * Lock the audit tables before trusting the cached catalog facts (as
	 * record.c and the outbox trigger do): DDL that committed while we
	 * waited for a lock has invalidated them by the time it is granted.
	 * audit_events first (see writer_cache_build).
	 */
	for (;;)
	{
		w->m = audit_meta();
		LockRelationOid(w->m->events, RowExclusiveLock);
		LockRelationOid(w->m->chains, RowExclusiveLock);
		if (meta_valid)
			break;
	}
	if (c != NULL && (c->events != w->m->events || c->chains != w->m->chains))
		c = NULL;				/* the extension was re-created meanwhile */
	if (c == NULL)
	{
		c = writer_cache_build(w->m, cxt);
		if (cachep)
			*cachep = c;
	}
	w->c = c;
	w->own_cache = (cachep == NULL);
	w->estate = c->estate;
	w->cid = GetCurrentCommandId(true);
	w->estate->es_output_cid = w->cid;

	/* see writer_cache_build: the lock on audit_events comes first */
	w->events = table_open(w->m->events, RowExclusiveLock);
	w->chains = table_open(w->m->chains, RowExclusiveLock);
	if (RelationGetNumberOfAttributes(w->events) != c->events_natts ||
		RelationGetNumberOfAttributes(w->chains) != c->chains_natts)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the audit tables changed during the statement")));
	open_indexes(w->events, &w->events_rri, c->ev_nindexes, c->ev_index_oids,
				 c->ev_index_info, c->ev_index_rels);
	open_indexes(w->chains, &w->chains_rri, c->ch_nindexes, c->ch_index_oids,
				 c->ch_index_info, c->ch_index_rels);
	w->subject_idx = c->ev_index_rels[c->ev_subject_index];
	w->events_slot = c->events_slot;
	w->events_scan = c->events_scan;
	w->chains_slot = c->chains_slot;
}

static void
writer_close(AuditWriter *w)
{
	WriterCache *c = w->c;

	ExecClearTuple(w->events_slot);
	ExecClearTuple(w->events_scan);
	ExecClearTuple(w->chains_slot);
	ResetPerTupleExprContext(w->estate);
	for (int i = 0; i < c->ev_nindexes; i++)
		index_close(c->ev_index_rels[i], NoLock);
	for (int i = 0; i < c->ch_nindexes; i++)
		index_close(c->ch_index_rels[i], NoLock);
	table_close(w->chains, NoLock);
	table_close(w->events, NoLock);
	if (w->own_cache)
		writer_cache_free(c);
}

/* A user's name, remembered for the statement. */
static char *
user_name(Oid user, Oid *cached_oid, char **cached_name, MemoryContext cxt)
{
	if (*cached_name == NULL || *cached_oid != user)
	{
		char	   *name = GetUserNameFromId(user, false);

		*cached_name = MemoryContextStrdup(cxt, name);
		*cached_oid = user;
	}
	return *cached_name;
}

static bool
tuple_is_ours(TupleTableSlot *slot)
{
	bool		should_free;
	HeapTuple	tup = ExecFetchSlotHeapTuple(slot, false, &should_free);
	bool		ours = TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetRawXmin(tup->t_data));

	if (should_free)
		heap_freetuple(tup);
	return ours;
}

/*
 * Lock the chain "chain" (creating it if needed) and copy its secret.
 * Holding the lock until commit, this transaction is the only writer of
 * the chain.
 */
static void
chain_lock(AuditWriter *w, const char *chain, uint8 *secret)
{
	TupleDesc	desc = RelationGetDescr(w->chains);
	TupleTableSlot *slot = w->chains_slot;
	uint8		fresh[HASH_LEN];
	bool		have_fresh = false;
	Datum		secret_d;
	bool		isnull;

	for (;;)
	{
		ItemPointerData conflict;

		CHECK_FOR_INTERRUPTS();

		/* the row a new chain would get */
		ExecClearTuple(slot);
		for (int i = 0; i < desc->natts; i++)
		{
			slot->tts_values[i] = (Datum) 0;
			slot->tts_isnull[i] = true;
		}
		slot->tts_values[w->m->c_subject - 1] = CStringGetTextDatum(chain);
		slot->tts_isnull[w->m->c_subject - 1] = false;
		ExecStoreVirtualTuple(slot);

		/* Waits for in-progress inserters of the same key, like ON CONFLICT. */
		if (!ExecCheckIndexConstraints(&w->chains_rri, slot, w->estate, &conflict, NIL))
		{
			TM_FailureData tmfd;
			TM_Result	res;

			res = table_tuple_lock(w->chains, &conflict,
								   ActiveSnapshotSet() ? GetActiveSnapshot() : SnapshotSelf, slot,
								   w->cid, LockTupleNoKeyExclusive, LockWaitBlock,
								   0, &tmfd);
			if (res == TM_Ok || res == TM_SelfModified || res == TM_Invisible)
			{
				if (res != TM_Ok)
				{
					/* A version this transaction wrote: ours already. */
					if (!table_tuple_fetch_row_version(w->chains, &conflict, SnapshotSelf, slot) ||
						!tuple_is_ours(slot))
						continue;
				}
				secret_d = slot_getattr(slot, w->m->c_secret, &isnull);
				if (isnull || VARSIZE_ANY_EXHDR(DatumGetByteaPP(secret_d)) != HASH_LEN)
					ereport(ERROR,
							(errcode(ERRCODE_DATA_CORRUPTED),
							 errmsg("audit chain \"%s\" has no valid secret", chain)));
				memcpy(secret, VARDATA_ANY(DatumGetByteaPP(secret_d)), HASH_LEN);
				return;
			}
			/* updated (erasure renamed it) or deleted meanwhile: look again */
			continue;
		}
		else
		{
			/* a new chain: its secret and start */
			if (!have_fresh && !pg_strong_random(fresh, HASH_LEN))
				ereport(ERROR,
						(errcode(ERRCODE_INTERNAL_ERROR),
						 errmsg("could not generate a random chain secret")));
			have_fresh = true;
			slot->tts_values[w->m->c_secret - 1] = PointerGetDatum(bytea_of(fresh, HASH_LEN));
			slot->tts_isnull[w->m->c_secret - 1] = false;
			slot->tts_values[w->m->c_started_at - 1] = TimestampTzGetDatum(GetCurrentTimestamp());
			slot->tts_isnull[w->m->c_started_at - 1] = false;

			if (!consent_insert_speculative(&w->chains_rri, slot, w->estate, w->cid, NIL, NULL))
				continue;
			memcpy(secret, fresh, HASH_LEN);
			return;
		}
	}
}

/* Scan the events of one chain (subject NULL: the registry chain). */
static IndexScanDesc
chain_scan_begin(AuditWriter *w, Datum subject, bool registry)
{
	ScanKeyData key;
	IndexScanDesc scan;

	if (registry)
		ScanKeyEntryInitialize(&key, SK_ISNULL | SK_SEARCHNULL, 1,
							   InvalidStrategy, InvalidOid, InvalidOid,
							   InvalidOid, (Datum) 0);
	else
	{
		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_TEXTEQ, subject);
		key.sk_collation = C_COLLATION_OID;
	}
	scan = index_beginscan(w->events, w->subject_idx, SnapshotSelf, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	return scan;
}

/* hash of the chain's last event, or zeros */
static void
chain_last_hash(AuditWriter *w, const AuditEvent *ev, uint8 *prev)
{
	IndexScanDesc scan = chain_scan_begin(w, ev->values[AF_SUBJECT], ev->isnull[AF_SUBJECT]);

	memset(prev, 0, HASH_LEN);
	if (index_getnext_slot(scan, BackwardScanDirection, w->events_scan))
	{
		bool		isnull;
		Datum		h = slot_getattr(w->events_scan, w->m->e_att[AF_HASH], &isnull);

		if (!isnull && VARSIZE_ANY_EXHDR(DatumGetByteaPP(h)) == HASH_LEN)
			memcpy(prev, VARDATA_ANY(DatumGetByteaPP(h)), HASH_LEN);
		else
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("audit event " INT64_FORMAT " has no valid hash",
							DatumGetInt64(slot_getattr(w->events_scan, w->m->e_att[AF_ID], &isnull)))));
	}
	index_endscan(scan);
}

/*
 * Does the chain already hold an event with this action, purpose (or
 * notice key and version) and row_stamp?  Used to recognise a reload of
 * rows whose history is already in the trail (pg_restore).
 */
static bool
chain_has_event(AuditWriter *w, const AuditEvent *ev)
{
	IndexScanDesc scan = chain_scan_begin(w, ev->values[AF_SUBJECT], ev->isnull[AF_SUBJECT]);
	TupleTableSlot *s = w->events_scan;
	bool		found = false;
	const int	cmp[] = {AF_PURPOSE, AF_NEW_STATUS, AF_NOTICE_KEY,
	AF_NOTICE_VERSION, AF_ROW_STAMP};

	while (!found && index_getnext_slot(scan, BackwardScanDirection, s))
	{
		found = true;
		for (int i = 0; i < (int) lengthof(cmp) && found; i++)
		{
			int			f = cmp[i];
			bool		isnull;
			Datum		d = slot_getattr(s, w->m->e_att[f], &isnull);

			if (isnull != ev->isnull[f])
				found = false;
			else if (!isnull)
			{
				switch (audit_fields[f].kind)
				{
					case AK_TEXT:
						found = DatumGetBool(DirectFunctionCall2Coll(texteq, C_COLLATION_OID,
																	 d, ev->values[f]));
						break;
					case AK_STATUS:
						found = DatumGetObjectId(d) == DatumGetObjectId(ev->values[f]);
						break;
					case AK_INT4:
						found = DatumGetInt32(d) == DatumGetInt32(ev->values[f]);
						break;
					default:
						found = DatumGetInt64(d) == DatumGetInt64(ev->values[f]);
						break;
				}
			}
		}
	}
	index_endscan(scan);
	return found;
}

static Datum
client_addr_datum(bool *isnull)
{
	if (!client_addr_known)
	{
		LOCAL_FCINFO(fcinfo, 0);
		Datum		d;

		InitFunctionCallInfoData(*fcinfo, NULL, 0, InvalidOid, NULL, NULL);
		d = inet_client_addr(fcinfo);
		if (!fcinfo->isnull)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			client_addr = datumCopy(d, false, -1);
			client_addr_isnull = false;
			MemoryContextSwitchTo(old);
		}
		client_addr_known = true;
	}
	*isnull = client_addr_isnull;
	return client_addr;
}

/*
 * Append one event (id, time, transaction, session fields and hashes are
 * filled in here) and return its id.
 */
static int64
writer_append(AuditWriter *w, AuditEvent *ev)
{
	uint8		secret[HASH_LEN];
	uint8		prev[HASH_LEN];
	uint8		hash[HASH_LEN];
	int64		id;
	TupleTableSlot *slot = w->events_slot;
	TupleDesc	desc = RelationGetDescr(w->events);
	const char *chain;
	List	   *recheck;
	bool		isnull;
	Datum		addr;

	chain = ev->isnull[AF_SUBJECT] ? REGISTRY_CHAIN : TextDatumGetCString(ev->values[AF_SUBJECT]);
	chain_lock(w, chain, secret);

	id = nextval_internal(w->m->events_seq, false);
	event_set(ev, AF_ID, Int64GetDatum(id));
	event_set(ev, AF_AT, TimestampTzGetDatum(GetCurrentTimestamp()));
	event_set(ev, AF_XID, FullTransactionIdGetDatum(GetTopFullTransactionId()));
	event_set_text(ev, AF_DB_USER, user_name(GetOuterUserId(), &w->c->outer_user,
											 &w->c->outer_user_name, w->c->cxt));
	event_set_text(ev, AF_SESSION_USER, user_name(GetSessionUserId(), &w->c->session_user,
												  &w->c->session_user_name, w->c->cxt));
	event_set_text(ev, AF_APPLICATION_NAME,
				   (application_name && application_name[0]) ? application_name : NULL);
	addr = client_addr_datum(&isnull);
	if (!isnull)
		event_set(ev, AF_CLIENT_ADDR, addr);
	if (consent_actor != NULL && consent_actor[0] != '\0')
		event_set_text(ev, AF_ACTOR, consent_actor);
	ev->isnull[AF_REDACTIONS] = true;

	chain_last_hash(w, ev, prev);
	event_set(ev, AF_PREV_HASH, PointerGetDatum(bytea_of(prev, HASH_LEN)));
	if (!event_hash(ev, secret, hash))
		elog(ERROR, "audit chain secret missing while writing");
	event_set(ev, AF_HASH, PointerGetDatum(bytea_of(hash, HASH_LEN)));

	ExecClearTuple(slot);
	for (int i = 0; i < desc->natts; i++)
	{
		slot->tts_values[i] = (Datum) 0;
		slot->tts_isnull[i] = true;
	}
	for (int f = 0; f < AF_NFIELDS; f++)
	{
		slot->tts_values[w->m->e_att[f] - 1] = ev->values[f];
		slot->tts_isnull[w->m->e_att[f] - 1] = ev->isnull[f];
	}
	ExecStoreVirtualTuple(slot);
	table_tuple_insert(w->events, slot, w->cid, 0, NULL);
	recheck = ExecInsertIndexTuples(&w->events_rri, slot, w->estate, false, false, NULL, NIL);
	list_free(recheck);

	note_event(id);
	return id;
}

/* ----------------------------------------------------------------
 * Building events from the audited rows
 * ----------------------------------------------------------------
 */
static Datum
purpose_key_by_id(const AuditMeta *m, Datum id, bool *found)
{
	Relation	rel = table_open(m->purposes, AccessShareLock);
	Relation	idx = index_open(m->purposes_pkey, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	ScanKeyData key;
	IndexScanDesc scan;
	Datum		result = (Datum) 0;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT4EQ, id);
	scan = index_beginscan(rel, idx, SnapshotSelf, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	*found = index_getnext_slot(scan, ForwardScanDirection, slot);
	if (*found)
	{
		bool		isnull;
		Datum		k = slot_getattr(slot, m->p_key, &isnull);

		result = PointerGetDatum(cstring_to_text(TextDatumGetCString(k)));
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(idx, AccessShareLock);
	table_close(rel, AccessShareLock);
	return result;
}

/*
 * The key of purpose "id", remembered for the statement once found.  A
 * statement's AFTER ROW triggers fire after all of its changes, so the
 * keys they look up do not change while they run; a purpose not found is
 * looked up again.
 */
static Datum
purpose_key_of(AuditWriter *w, Datum id, bool *found)
{
	int32		pid = DatumGetInt32(id);
	PurposeKeyEntry *e = hash_search(w->c->purpose_keys, &pid, HASH_FIND, NULL);
	Datum		key;

	if (e != NULL)
	{
		*found = true;
		return PointerGetDatum(e->key);
	}
	key = purpose_key_by_id(w->m, id, found);
	if (*found)
	{
		e = hash_search(w->c->purpose_keys, &pid, HASH_ENTER, NULL);
		e->key = (text *) MemoryContextAlloc(w->c->cxt, VARSIZE_ANY(DatumGetPointer(key)));
		memcpy(e->key, DatumGetPointer(key), VARSIZE_ANY(DatumGetPointer(key)));
	}
	return key;
}

/* body_sha256 of notice key@version (of its first-published locale) */
static bool
notice_sha256(const AuditMeta *m, Datum key, Datum version, Datum *sha)
{
	Relation	rel = table_open(m->notices, AccessShareLock);
	Relation	idx = index_open(m->notices_kvl, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	ScanKeyData keys[2];
	IndexScanDesc scan;
	int32		best = PG_INT32_MAX;
	bool		found = false;

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_TEXTEQ, key);
	keys[0].sk_collation = idx->rd_indcollation[0];
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT4EQ, version);
	scan = index_beginscan(rel, idx, SnapshotSelf, 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		int32		nid = DatumGetInt32(slot_getattr(slot, m->n_id, &isnull));
		Datum		h = slot_getattr(slot, m->n_body_sha256, &isnull);

		if (!isnull && nid < best)
		{
			best = nid;
			*sha = PointerGetDatum(DatumGetByteaPCopy(h));
			found = true;
		}
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(idx, AccessShareLock);
	table_close(rel, AccessShareLock);
	return found;
}

/* A row as jsonb (row_to_json), without the named column when given. */
static Datum
row_jsonb(HeapTuple tup, TupleDesc desc, const char *drop)
{
	Datum		row = heap_copy_tuple_as_datum(tup, desc);
	Datum		json = DirectFunctionCall1(row_to_json, row);
	Datum		jb = DirectFunctionCall1(jsonb_in, CStringGetDatum(TextDatumGetCString(json)));

	if (drop)
		jb = DirectFunctionCall2(jsonb_delete, jb, CStringGetTextDatum(drop));
	return jb;
}

static const char *
records_action(const AuditMeta *m, Oid newst, bool have_old, Oid oldst)
{
	if (newst == m->st_granted)
		return (have_old && oldst == m->st_pending) ? "confirm" : "grant";
	if (newst == m->st_pending)
		return "grant";
	if (newst == m->st_denied)
		return "deny";
	if (newst == m->st_withdrawn)
		return "withdraw";
	return "expire";
}

/*
 * The event for a records row: "newt" after an insert or update (with
 * "oldt" for an update), or "oldt" alone for a deletion.  Returns false
 * when the row cannot be attributed (its purpose is gone).
 */
static bool
records_event(AuditWriter *w, TupleDesc desc, HeapTuple oldt, HeapTuple newt, AuditEvent *ev)
{
	const AuditMeta *m = w->m;
	HeapTuple	t = newt ? newt : oldt;
	bool		found;
	Datum		key;
	bool		isnull;

	event_init(ev);
	event_copy(ev, AF_SUBJECT, t, desc, m->r_subject);
	key = purpose_key_of(w, heap_getattr(t, m->r_purpose_id, desc, &isnull), &found);
	if (found)
		event_set(ev, AF_PURPOSE, key);
	event_copy(ev, AF_NOTICE_KEY, t, desc, m->r_notice_key);
	event_copy(ev, AF_NOTICE_VERSION, t, desc, m->r_notice_version);
	if (!ev->isnull[AF_NOTICE_KEY] && !ev->isnull[AF_NOTICE_VERSION])
	{
		Datum		sha;

		if (notice_sha256(m, ev->values[AF_NOTICE_KEY], ev->values[AF_NOTICE_VERSION], &sha))
			event_set(ev, AF_NOTICE_SHA256, sha);
	}
	event_copy(ev, AF_EXPIRES_AT, t, desc, m->r_expires_at);
	event_copy(ev, AF_ROW_STAMP, t, desc, m->r_recorded_at);

	if (newt == NULL)
	{
		event_set_text(ev, AF_ACTION, "delete");
		event_copy(ev, AF_OLD_STATUS, oldt, desc, m->r_status);
		return true;
	}

	event_copy(ev, AF_NEW_STATUS, newt, desc, m->r_status);
	if (oldt)
		event_copy(ev, AF_OLD_STATUS, oldt, desc, m->r_status);
	event_set_text(ev, AF_ACTION,
				   records_action(m, DatumGetObjectId(ev->values[AF_NEW_STATUS]),
								  oldt != NULL,
								  oldt ? DatumGetObjectId(ev->values[AF_OLD_STATUS]) : InvalidOid));
	event_copy(ev, AF_METHOD, newt, desc, m->r_method);
	event_copy(ev, AF_SOURCE, newt, desc, m->r_source);
	event_copy(ev, AF_REASON, newt, desc, m->r_reason);
	event_copy(ev, AF_EVIDENCE, newt, desc, m->r_evidence);
	event_copy(ev, AF_ACTOR, newt, desc, m->r_actor);
	return true;
}

static void
purposes_event(AuditWriter *w, TupleDesc desc, HeapTuple oldt, HeapTuple newt, AuditEvent *ev)
{
	const AuditMeta *m = w->m;
	HeapTuple	t = newt ? newt : oldt;
	bool		isnull;
	Datum		k;

	event_init(ev);
	k = heap_getattr(t, m->p_key, desc, &isnull);
	event_set(ev, AF_PURPOSE, PointerGetDatum(cstring_to_text(TextDatumGetCString(k))));
	event_copy(ev, AF_ROW_STAMP, t, desc, m->p_created_at);
	event_set(ev, AF_EVIDENCE, row_jsonb(t, desc, NULL));
	if (oldt == NULL)
		event_set_text(ev, AF_ACTION, "define");
	else if (newt == NULL)
		event_set_text(ev, AF_ACTION, "delete");
	else
	{
		bool		was_active,
					is_active;

		/* retired_at going from NULL to a time is a retirement */
		(void) heap_getattr(oldt, m->p_retired_at, desc, &was_active);
		(void) heap_getattr(newt, m->p_retired_at, desc, &is_active);
		event_set_text(ev, AF_ACTION, (was_active && !is_active) ? "retire" : "update");
	}
}

static void
notices_event(AuditWriter *w, TupleDesc desc, HeapTuple oldt, HeapTuple newt, AuditEvent *ev)
{
	const AuditMeta *m = w->m;
	HeapTuple	t = newt ? newt : oldt;

	event_init(ev);
	event_copy(ev, AF_NOTICE_KEY, t, desc, m->n_key);
	event_copy(ev, AF_NOTICE_VERSION, t, desc, m->n_version);
	event_copy(ev, AF_NOTICE_SHA256, t, desc, m->n_body_sha256);
	event_copy(ev, AF_ROW_STAMP, t, desc, m->n_published_at);
	event_set(ev, AF_EVIDENCE, row_jsonb(t, desc, "body"));
	event_set_text(ev, AF_ACTION, oldt == NULL ? "publish" : newt == NULL ? "delete" : "update");
}

/*
 * A row inserted with a timestamp older than its transaction whose event
 * is already in the trail is a reload (pg_restore, COPY of a dump): it is
 * not a new change and gets no second event.
 */
static bool
is_reload(AuditWriter *w, const AuditEvent *ev)
{
	if (ev->isnull[AF_ROW_STAMP] ||
		DatumGetTimestampTz(ev->values[AF_ROW_STAMP]) >= GetCurrentTransactionStartTimestamp())
		return false;
	return chain_has_event(w, ev);
}

/* Audit one row change of consent.records, purposes or notices. */
static void
audit_row(AuditWriter *w, Relation rel, HeapTuple oldt, HeapTuple newt)
{
	const AuditMeta *m = w->m;
	Oid			relid = RelationGetRelid(rel);
	TupleDesc	desc = RelationGetDescr(rel);
	AuditEvent	ev;

	if (relid == m->records)
	{
		if (oldt && newt)
		{
			bool		n1,
						n2;
			Datum		s1 = heap_getattr(oldt, m->r_subject, desc, &n1);
			Datum		s2 = heap_getattr(newt, m->r_subject, desc, &n2);
			Datum		p1 = heap_getattr(oldt, m->r_purpose_id, desc, &n1);
			Datum		p2 = heap_getattr(newt, m->r_purpose_id, desc, &n2);

			if (DatumGetInt32(p1) != DatumGetInt32(p2) ||
				!DatumGetBool(DirectFunctionCall2Coll(texteq, C_COLLATION_OID, s1, s2)))
			{
				/* moved to another subject or purpose: leaves one, joins another */
				if (records_event(w, desc, oldt, NULL, &ev))
					writer_append(w, &ev);
				if (records_event(w, desc, NULL, newt, &ev))
					writer_append(w, &ev);
				return;
			}
		}
		if (records_event(w, desc, oldt, newt, &ev))
		{
			if (oldt == NULL && is_reload(w, &ev))
				return;
			writer_append(w, &ev);
		}
	}
	else if (relid == m->purposes)
	{
		purposes_event(w, desc, oldt, newt, &ev);
		if (oldt == NULL && is_reload(w, &ev))
			return;
		writer_append(w, &ev);
	}
	else if (relid == m->notices)
	{
		notices_event(w, desc, oldt, newt, &ev);
		if (oldt == NULL && is_reload(w, &ev))
			return;
		writer_append(w, &ev);
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("consent.audit_trigger() does not audit table \"%s\"",
						RelationGetRelationName(rel))));
}

/* TRUNCATE: one delete event per row about to go. */
static void
audit_truncate(AuditWriter *w, Relation rel)
{
	TableScanDesc scan;
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	MemoryContext per_row = AllocSetContextCreate(CurrentMemoryContext,
												  "consent audit truncate",
												  ALLOCSET_DEFAULT_SIZES);

	scan = table_beginscan(rel, SnapshotSelf, 0, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		MemoryContext old = MemoryContextSwitchTo(per_row);
		bool		should_free;
		HeapTuple	tup = ExecFetchSlotHeapTuple(slot, false, &should_free);

		audit_row(w, rel, tup, NULL);
		MemoryContextSwitchTo(old);
		MemoryContextReset(per_row);
		CHECK_FOR_INTERRUPTS();
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	MemoryContextDelete(per_row);
}

/*
 * consent.audit_trigger(): AFTER INSERT OR UPDATE OR DELETE ... FOR EACH
 * ROW, or BEFORE TRUNCATE ... FOR EACH STATEMENT.
 */
Datum
consent_audit_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	AuditWriter w;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("consent.audit_trigger() must be called as a trigger")));
	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
	{
		if (!TRIGGER_FIRED_BEFORE(td->tg_event))
			ereport(ERROR,
					(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
					 errmsg("consent.audit_trigger() must be fired BEFORE TRUNCATE")));
	}
	else if (!TRIGGER_FIRED_FOR_ROW(td->tg_event) || !TRIGGER_FIRED_AFTER(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("consent.audit_trigger() must be fired AFTER ... FOR EACH ROW")));

	/* Erasure rewrites rows and records its own event. */
	if (erasing)
		return PointerGetDatum(NULL);

	/* what the statement's rows share is kept in fn_extra */
	writer_open(&w, (WriterCache **) &fcinfo->flinfo->fn_extra, fcinfo->flinfo->fn_mcxt);
	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
		audit_truncate(&w, td->tg_relation);
	else if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
		audit_row(&w, td->tg_relation, NULL, td->tg_trigtuple);
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		audit_row(&w, td->tg_relation, td->tg_trigtuple, td->tg_newtuple);
	else
		audit_row(&w, td->tg_relation, td->tg_trigtuple, NULL);
	writer_close(&w);

	return PointerGetDatum(NULL);
}

/*
 * consent.audit_guard(): BEFORE UPDATE OR DELETE OR TRUNCATE ... FOR EACH
 * STATEMENT on the audit tables.  Only erasure's UPDATEs pass.
 */
Datum
consent_audit_guard(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	const char *op;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("consent.audit_guard() must be called as a trigger")));
	/* Erasure rewrites rows in place; it never deletes or truncates. */
	if (erasing && TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		return PointerGetDatum(NULL);

	op = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? "UPDATE" :
		TRIGGER_FIRED_BY_DELETE(td->tg_event) ? "DELETE" :
		TRIGGER_FIRED_BY_TRUNCATE(td->tg_event) ? "TRUNCATE" : "this statement";
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("consent.%s is append-only", RelationGetRelationName(td->tg_relation)),
			 errdetail("%s is not allowed on the audit trail, for any role, the owner included.", op),
			 errhint("To erase a person, call consent.erase_subject(subject, reason).")));
	PG_RETURN_NULL();			/* not reached */
}

/* consent.last_event_id() */
Datum
consent_last_event_id(PG_FUNCTION_ARGS)
{
	if (last_lxid != MyProc->lxid || !last_have)
		PG_RETURN_NULL();
	PG_RETURN_INT64(last_id);
}

/* ----------------------------------------------------------------
 * Verification helpers
 * ----------------------------------------------------------------
 */

/* consent.audit_event_hash(e consent.audit_events, secret bytea) */
Datum
consent_audit_event_hash(PG_FUNCTION_ARGS)
{
	AuditEvent	ev;
	uint8		hash[HASH_LEN];
	const uint8 *secret = NULL;

	{
		bytea	   *s = PG_GETARG_BYTEA_PP(1);

		if (VARSIZE_ANY_EXHDR(s) != HASH_LEN && VARSIZE_ANY_EXHDR(s) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a chain secret is %d bytes (or empty for none), not %d", HASH_LEN,
							(int) VARSIZE_ANY_EXHDR(s))));
		if (VARSIZE_ANY_EXHDR(s) == HASH_LEN)
			secret = (const uint8 *) VARDATA_ANY(s);
	}
	event_from_row(PG_GETARG_HEAPTUPLEHEADER(0), (RowMap **) &fcinfo->flinfo->fn_extra,
				   fcinfo->flinfo->fn_mcxt, &ev);
	if (ev.isnull[AF_ID] || ev.isnull[AF_PREV_HASH])
		PG_RETURN_NULL();
	if (!event_hash(&ev, secret, hash))
		PG_RETURN_NULL();
	PG_RETURN_BYTEA_P(bytea_of(hash, HASH_LEN));
}

/*
 * The root of a seal over the events in (from, upto]: SHA-256 over
 * "consent.seal.v1\0", prev_root, be64(from), be64(upto), be64(events) and,
 * for each chain with events in the range, in id order of its last event
 * there, be64(id) and hash.  Fills root, heads and events.
 *
 * The chains' last events are found in one pass over the range in id
 * order (audit_events_pkey), remembering the latest event of each chain in
 * a hash table, as long as that table fits in maintenance_work_mem (a
 * seal of the sweeper's, every 50,000 expiries, does: 100 to 700 bytes a
 * chain, by the length of its subject).  Otherwise two queries whose sorts
 * spill to disk: a count, and DISTINCT ON the chain; they are also used
 * at once for a range of more than SEAL_MIN_BYTES_PER_ID per id, which
 * could not fit.  Both give the same root (sql/audit_encoding.sql compares
 * them).
 */
#define SEAL_MIN_BYTES_PER_ID	100

typedef struct SealHead
{
	const char *chain;			/* the subject's bytes; "" for the registry */
	int			len;
	int64		id;				/* its last event in the range */
	bytea	   *hash;			/* that event's hash (NULL if null) */
} SealHead;

static uint32
seal_head_hash(const void *key, Size keysize pg_attribute_unused())
{
	const SealHead *h = (const SealHead *) key;

	return hash_bytes((const unsigned char *) h->chain, h->len);
}

static int
seal_head_match(const void *a, const void *b, Size keysize pg_attribute_unused())
{
	const SealHead *x = (const SealHead *) a;
	const SealHead *y = (const SealHead *) b;

	return (x->len == y->len && memcmp(x->chain, y->chain, x->len) == 0) ? 0 : 1;
}

static int
seal_head_cmp(const void *a, const void *b)
{
	int64		x = (*(SealHead *const *) a)->id;
	int64		y = (*(SealHead *const *) b)->id;

	return (x > y) - (x < y);
}

static void
seal_hash_head(Sha256 *ctx, int64 id, bytea *hash)
{
	uint64		be = pg_hton64((uint64) id);

	sha_update(ctx, &be, 8);
	if (hash != NULL)
		sha_update(ctx, VARDATA_ANY(hash), VARSIZE_ANY_EXHDR(hash));
}

/* What precedes the heads: the domain, the previous root, the range, the count. */
static void
seal_hash_header(Sha256 *ctx, bytea *prev_root, int64 from, int64 upto, int64 events)
{
	uint64		be;

	sha_update(ctx, SEAL_DOMAIN, sizeof(SEAL_DOMAIN));
	sha_update(ctx, VARDATA_ANY(prev_root), VARSIZE_ANY_EXHDR(prev_root));
	be = pg_hton64((uint64) from);
	sha_update(ctx, &be, 8);
	be = pg_hton64((uint64) upto);
	sha_update(ctx, &be, 8);
	be = pg_hton64((uint64) events);
	sha_update(ctx, &be, 8);
}

/*
 * The one-pass way: the heads in a hash table.  False, having hashed
 * nothing, when the table outgrows maintenance_work_mem.
 */
static bool
seal_heads_scan(Sha256 *ctx, bytea *prev_root, int64 from, int64 upto, int64 *heads, int64 *events)
{
	const AuditMeta *m = audit_meta();
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "consent seal",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Relation	rel = table_open(m->events, AccessShareLock);
	Relation	idx = index_open(m->events_pkey, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	ScanKeyData keys[2];
	IndexScanDesc scan;
	HASHCTL		hctl;
	HTAB	   *table;
	HASH_SEQ_STATUS seq;
	SealHead  **list;
	SealHead   *h;
	int64		n = 0;
	bool		fits = true;
	Size		limit = (Size) maintenance_work_mem * 1024;

	memset(&hctl, 0, sizeof(hctl));
	hctl.keysize = sizeof(SealHead);
	hctl.entrysize = sizeof(SealHead);
	hctl.hash = seal_head_hash;
	hctl.match = seal_head_match;
	hctl.hcxt = cxt;
	table = hash_create("consent seal heads", 1024, &hctl,
						HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);

	ScanKeyInit(&keys[0], 1, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(from));
	ScanKeyInit(&keys[1], 1, BTLessEqualStrategyNumber, F_INT8LE, Int64GetDatum(upto));
	scan = index_beginscan(rel, idx, GetActiveSnapshot(), 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	*events = 0;
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		SealHead	key;
		bool		isnull;
		bool		found;
		Datum		subject = slot_getattr(slot, m->e_att[AF_SUBJECT], &isnull);
		Datum		hash;

		CHECK_FOR_INTERRUPTS();
		if ((*events & 1023) == 0 && MemoryContextMemAllocated(cxt, true) > limit)
		{
			fits = false;
			break;
		}
		if (isnull)
		{
			key.chain = "";
			key.len = 0;
		}
		else
		{
			text	   *t = DatumGetTextPP(subject);

			key.chain = VARDATA_ANY(t);
			key.len = VARSIZE_ANY_EXHDR(t);
		}
		h = hash_search(table, &key, HASH_ENTER, &found);
		if (!found)
		{
			char	   *copy = palloc(key.len + 1);

			memcpy(copy, key.chain, key.len);
			copy[key.len] = '\0';
			h->chain = copy;
			h->len = key.len;
		}
		else if (h->hash != NULL)
			pfree(h->hash);
		/* in id order: the latest event of the chain so far */
		h->id = DatumGetInt64(slot_getattr(slot, m->e_att[AF_ID], &isnull));
		hash = slot_getattr(slot, m->e_att[AF_HASH], &isnull);
		h->hash = isnull ? NULL : DatumGetByteaPCopy(hash);
		(*events)++;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(idx, NoLock);
	table_close(rel, NoLock);
	if (!fits)
	{
		MemoryContextSwitchTo(old);
		MemoryContextDelete(cxt);
		return false;
	}

	list = palloc_extended(sizeof(SealHead *) * Max(hash_get_num_entries(table), 1),
						   MCXT_ALLOC_HUGE);
	hash_seq_init(&seq, table);
	while ((h = hash_seq_search(&seq)) != NULL)
		list[n++] = h;
	qsort(list, n, sizeof(SealHead *), seal_head_cmp);
	seal_hash_header(ctx, prev_root, from, upto, *events);
	for (int64 i = 0; i < n; i++)
		seal_hash_head(ctx, list[i]->id, list[i]->hash);
	*heads = n;

	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return true;
}

/* The way for a range too large for memory: two queries (SPI connected). */
static void
seal_heads_sql(Sha256 *ctx, bytea *prev_root, int64 from, int64 upto, int64 *heads, int64 *events)
{
	Datum		args[2];
	Oid			types[2] = {INT8OID, INT8OID};
	Portal		portal;
	SPIPlanPtr	plan;
	bool		isnull;

	args[0] = Int64GetDatum(from);
	args[1] = Int64GetDatum(upto);
	if (SPI_execute_with_args("SELECT count(*) FROM consent.audit_events e "
							  "WHERE e.id > $1 AND e.id <= $2",
							  2, types, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not count sealed events");
	*events = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	seal_hash_header(ctx, prev_root, from, upto, *events);

	plan = SPI_prepare("SELECT h.id, h.hash FROM ("
					   " SELECT DISTINCT ON (coalesce(e.subject, '')) e.id, e.hash"
					   "   FROM consent.audit_events e"
					   "  WHERE e.id > $1 AND e.id <= $2"
					   "  ORDER BY coalesce(e.subject, ''), e.id DESC) h "
					   "ORDER BY h.id", 2, types);
	if (plan == NULL)
		elog(ERROR, "could not plan the seal query: %s", SPI_result_code_string(SPI_result));
	portal = SPI_cursor_open(NULL, plan, args, NULL, true);
	*heads = 0;
	for (;;)
	{
		SPI_cursor_fetch(portal, true, 1000);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	t = SPI_tuptable->vals[i];
			int64		id = DatumGetInt64(SPI_getbinval(t, SPI_tuptable->tupdesc, 1, &isnull));
			Datum		h = SPI_getbinval(t, SPI_tuptable->tupdesc, 2, &isnull);

			seal_hash_head(ctx, id, isnull ? NULL : DatumGetByteaPP(h));
			(*heads)++;
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	SPI_freeplan(plan);
}

static void
seal_root(int64 from, int64 upto, bytea *prev_root, uint8 *root, int64 *heads, int64 *events)
{
	Sha256		ctx;
	int64		ids;
	bool		done = false;

	sha_init(&ctx);
	if (!pg_sub_s64_overflow(upto, from, &ids) &&
		ids <= (int64) maintenance_work_mem * 1024 / SEAL_MIN_BYTES_PER_ID)
		done = seal_heads_scan(&ctx, prev_root, from, upto, heads, events);
	if (!done)
		seal_heads_sql(&ctx, prev_root, from, upto, heads, events);
	sha_final(&ctx, root);
}

/* consent.audit_seal_root(from_id, upto_id, prev_root, OUT root, OUT heads, OUT events) */
Datum
consent_audit_seal_root(PG_FUNCTION_ARGS)
{
	int64		from = PG_GETARG_INT64(0);
	int64		upto = PG_GETARG_INT64(1);
	bytea	   *prev = PG_GETARG_BYTEA_PP(2);
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	uint8		root[HASH_LEN];
	int64		heads,
				events;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	desc = BlessTupleDesc(desc);

	SPI_connect();
	seal_root(from, upto, prev, root, &heads, &events);
	SPI_finish();

	values[0] = PointerGetDatum(bytea_of(root, HASH_LEN));
	values[1] = Int64GetDatum(heads);
	values[2] = Int64GetDatum(events);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/* consent.seal() */
Datum
consent_seal(PG_FUNCTION_ARGS)
{
	const AuditMeta *m = audit_meta();
	LOCKTAG		tag;
	int64		upto;
	int64		from;
	bytea	   *prev_root;
	int64		prev_id = 0;
	uint8		root[HASH_LEN];
	int64		heads,
				events;
	bool		isnull;
	Datum		args[6];
	Oid			types[6] = {INT8OID, INT8OID, INT8OID, INT8OID, BYTEAOID, BYTEAOID};
	int64		result;
	uint8		zero[HASH_LEN];

	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("consent.seal() must run in a READ COMMITTED transaction"),
				 errdetail("It waits for concurrent writers and must then see what they committed.")));

	SPI_connect();

	/* 1. Every id up to here was handed out to a transaction by now. */
	if (SPI_execute("SELECT CASE WHEN is_called THEN last_value ELSE 0 END "
					"FROM consent.audit_events_id_seq", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read consent.audit_events_id_seq");
	upto = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	/* Our own events are not committed yet: seal below them. */
	if (last_lxid == MyProc->lxid && first_id_in_xact > 0 && first_id_in_xact <= upto)
		upto = first_id_in_xact - 1;

	/*
	 * 2. Wait for every transaction writing audit events now.  A writer
	 * locks consent.audit_events before it takes an id, so once they are
	 * gone every id <= upto is committed or will never appear.
	 */
	SET_LOCKTAG_RELATION(tag, MyDatabaseId, m->events);
	WaitForLockers(tag, ShareLock, false);

	/*
	 * 3. One seal at a time; then a snapshot taken now sees every event up
	 * to upto and the previous seal.
	 */
	LockRelationOid(get_relname_relid("seals", get_namespace_oid("consent", false)),
					ShareRowExclusiveLock);
	PushActiveSnapshot(GetTransactionSnapshot());

	if (SPI_execute("SELECT id, upto_event_id, root FROM consent.seals ORDER BY id DESC LIMIT 1",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read consent.seals");
	memset(zero, 0, HASH_LEN);
	if (SPI_processed > 0)
	{
		HeapTuple	t = SPI_tuptable->vals[0];

		prev_id = DatumGetInt64(SPI_getbinval(t, SPI_tuptable->tupdesc, 1, &isnull));
		from = DatumGetInt64(SPI_getbinval(t, SPI_tuptable->tupdesc, 2, &isnull));
		prev_root = DatumGetByteaPCopy(SPI_getbinval(t, SPI_tuptable->tupdesc, 3, &isnull));
	}
	else
	{
		from = 0;
		prev_root = bytea_of(zero, HASH_LEN);
	}

	if (upto <= from)
	{
		PopActiveSnapshot();
		SPI_finish();
		if (prev_id == 0)
			PG_RETURN_NULL();
		PG_RETURN_INT64(prev_id);
	}

	seal_root(from, upto, prev_root, root, &heads, &events);

	args[0] = Int64GetDatum(from);
	args[1] = Int64GetDatum(upto);
	args[2] = Int64GetDatum(events);
	args[3] = Int64GetDatum(heads);
	args[4] = PointerGetDatum(prev_root);
	args[5] = PointerGetDatum(bytea_of(root, HASH_LEN));
	if (SPI_execute_with_args("INSERT INTO consent.seals "
							  "(from_event_id, upto_event_id, events, heads, prev_root, root) "
							  "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
							  6, types, args, NULL, false, 1) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not write the seal");
	result = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	/* The day-by-day counts of the sealed events (consent.activity_daily). */
	if (SPI_execute_with_args("INSERT INTO consent.activity_rollup AS r (day, purpose, action, events) "
							  "SELECT pg_catalog.timezone('UTC', pg_catalog.date_trunc('day', pg_catalog.timezone('UTC', e.at))), "
							  "       coalesce(e.purpose, ''), e.action, count(*) "
							  "  FROM consent.audit_events e WHERE e.id > $1 AND e.id <= $2 "
							  " GROUP BY 1, 2, 3 "
							  "ON CONFLICT (day, purpose, action) DO UPDATE SET events = r.events + EXCLUDED.events",
							  2, types, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not update consent.activity_rollup");

	PopActiveSnapshot();
	SPI_finish();
	PG_RETURN_INT64(result);
}

/* ----------------------------------------------------------------
 * Erasure
 * ----------------------------------------------------------------
 */
static inline bool
is_word_byte(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || c == '_' || c >= 0x80;
}

/* bytes that join two word bytes into one token: "a.b", "a-b", "a@b", "a+b" */
static inline bool
is_joiner_byte(unsigned char c)
{
	return c == '.' || c == '-' || c == '@' || c == '+';
}

/* Is the occurrence of ident at s[i..j) glued to a longer token? */
static inline bool
glued(const char *s, int slen, int i, int j, const char *ident, int ilen)
{
	const unsigned char *u = (const unsigned char *) s;

	if (i > 0 && is_word_byte((unsigned char) ident[0]) &&
		(is_word_byte(u[i - 1]) ||
		 (is_joiner_byte(u[i - 1]) && i >= 2 && is_word_byte(u[i - 2]))))
		return true;
	if (j < slen && is_word_byte((unsigned char) ident[ilen - 1]) &&
		(is_word_byte(u[j]) ||
		 (is_joiner_byte(u[j]) && j + 1 < slen && is_word_byte(u[j + 1]))))
		return true;
	return false;
}

/*
 * Replace every whole-token occurrence of ident in s.  Word bytes are
 * [A-Za-z0-9_] and non-ASCII; a word byte next to the occurrence, or one
 * of . - @ + followed by a word byte, makes it part of a longer token
 * (so "42" in "4242" or "a@b.org" in "a@b.org.uk" stay, while "a@b.org."
 * at the end of a sentence is replaced).  Returns NULL when nothing
 * changed.
 */
static char *
redact_str(const char *s, int slen, const char *ident, int ilen, const char *pseudo)
{
	StringInfoData out;
	int			i = 0;
	int			last = 0;
	bool		changed = false;

	if (ilen == 0 || slen < ilen)
		return NULL;
	initStringInfo(&out);
	while (i + ilen <= slen)
	{
		if (memcmp(s + i, ident, ilen) == 0 && !glued(s, slen, i, i + ilen, ident, ilen))
		{
			appendBinaryStringInfo(&out, s + last, i - last);
			appendStringInfoString(&out, pseudo);
			i += ilen;
			last = i;
			changed = true;
		}
		else
			i++;
	}
	if (!changed)
	{
		pfree(out.data);
		return NULL;
	}
	appendBinaryStringInfo(&out, s + last, slen - last);
	return out.data;
}

static text *
redact_text(text *t, const char *ident, const char *pseudo)
{
	char	   *r = redact_str(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), ident, strlen(ident), pseudo);

	return r ? cstring_to_text(r) : NULL;
}

/* Redact every key and string of a jsonb value, and numbers that match. */
static Jsonb *
redact_jsonb(Jsonb *jb, const char *ident, const char *pseudo)
{
	JsonbIterator *it = JsonbIteratorInit(&jb->root);
	JsonbParseState *state = NULL;
	JsonbValue	v;
	JsonbIteratorToken tok;
	JsonbValue *res = NULL;
	bool		changed = false;
	int			ilen = strlen(ident);

	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if ((tok == WJB_KEY || tok == WJB_VALUE || tok == WJB_ELEM) &&
			(v.type == jbvString || v.type == jbvNumeric))
		{
			char	   *r;

			if (v.type == jbvString)
				r = redact_str(v.val.string.val, v.val.string.len, ident, ilen, pseudo);
			else
			{
				char	   *num = DatumGetCString(DirectFunctionCall1(numeric_out,
																	  NumericGetDatum(v.val.numeric)));

				r = redact_str(num, strlen(num), ident, ilen, pseudo);
			}
			if (r)
			{
				v.type = jbvString;
				v.val.string.val = r;
				v.val.string.len = strlen(r);
				changed = true;
			}
		}
		res = pushJsonbValue(&state, tok, tok < WJB_BEGIN_ARRAY ? &v : NULL);
	}
	if (!changed)
		return NULL;
	return JsonbValueToJsonb(res);
}

/* consent.audit_redact(value text, identifier text, pseudonym text) */
Datum
consent_audit_redact_text(PG_FUNCTION_ARGS)
{
	text	   *r;

	r = redact_text(PG_GETARG_TEXT_PP(0), text_to_cstring(PG_GETARG_TEXT_PP(1)),
					text_to_cstring(PG_GETARG_TEXT_PP(2)));
	if (r == NULL)
		PG_RETURN_DATUM(PG_GETARG_DATUM(0));
	PG_RETURN_TEXT_P(r);
}

/* consent.audit_redact(value jsonb, identifier text, pseudonym text) */
Datum
consent_audit_redact_jsonb(PG_FUNCTION_ARGS)
{
	Jsonb	   *r;

	r = redact_jsonb(PG_GETARG_JSONB_P(0), text_to_cstring(PG_GETARG_TEXT_PP(1)),
					 text_to_cstring(PG_GETARG_TEXT_PP(2)));
	if (r == NULL)
		PG_RETURN_DATUM(PG_GETARG_DATUM(0));
	PG_RETURN_JSONB_P(r);
}

/*
 * consent.audit_redactions(e, secret, identifier, pseudonym, whole): for
 * each personal field, keep what an earlier erasure stored; else store the
 * commitment when erasing changes the value.  "whole" is for the erased
 * person's own events, whose chain secret is about to be replaced: there
 * the subject always changes, and every kept field gets its field key.
 * Otherwise (another person's event that mentions the identifier) kept
 * fields stay as they are, verified with their chain's secret.
 */
Datum
consent_audit_redactions(PG_FUNCTION_ARGS)
{
	AuditEvent	ev;
	Jsonb	   *old;
	const uint8 *secret = NULL;
	char	   *ident;
	char	   *pseudo;
	JsonbParseState *state = NULL;
	JsonbValue *res;
	Sha256Hmac	key;
	StringInfoData enc;
	int64		id;
	bool		whole;
	int			nentries = 0;

	{
		bytea	   *s = PG_GETARG_BYTEA_PP(1);

		if (VARSIZE_ANY_EXHDR(s) == HASH_LEN)
			secret = (const uint8 *) VARDATA_ANY(s);
	}
	ident = text_to_cstring(PG_GETARG_TEXT_PP(2));
	pseudo = text_to_cstring(PG_GETARG_TEXT_PP(3));
	whole = PG_GETARG_BOOL(4);
	event_from_row(PG_GETARG_HEAPTUPLEHEADER(0), (RowMap **) &fcinfo->flinfo->fn_extra,
				   fcinfo->flinfo->fn_mcxt, &ev);
	old = ev.isnull[AF_REDACTIONS] ? NULL : DatumGetJsonbP(ev.values[AF_REDACTIONS]);
	id = DatumGetInt64(ev.values[AF_ID]);

	if (secret != NULL)
		sha256_hmac_key(&key, secret, HASH_LEN);
	initStringInfo(&enc);
	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int f = 0; f < AF_NHASHED; f++)
	{
		uint8		k[HASH_LEN];
		uint8		c[HASH_LEN];
		char		how;
		bool		changes;
		JsonbValue	jk,
					jv;

		if (!audit_fields[f].personal)
			continue;
		how = redaction_of(old, f, k);
		if (how != 'c')
		{
			if (ev.isnull[f])
				changes = false;
			else if (f == AF_SUBJECT)
				changes = whole && strcmp(TextDatumGetCString(ev.values[f]), pseudo) != 0;
			else if (audit_fields[f].kind == AK_JSONB)
				changes = redact_jsonb(DatumGetJsonbP(ev.values[f]), ident, pseudo) != NULL;
			else
				changes = redact_text(DatumGetTextPP(ev.values[f]), ident, pseudo) != NULL;
			if (how == 0 && (changes || whole))
			{
				if (secret == NULL)
					ereport(ERROR,
							(errcode(ERRCODE_DATA_CORRUPTED),
							 errmsg("cannot erase audit event " INT64_FORMAT ": its chain secret is missing", id)));
				field_key(&key, id, f, k);
			}
			if (changes)
			{
				resetStringInfo(&enc);
				encode_value(&enc, audit_fields[f].kind, ev.values[f], ev.isnull[f]);
				field_commitment(k, &enc, c);
				memcpy(k, c, HASH_LEN);
				how = 'c';
			}
			else if (whole || how == 'k')
				how = 'k';
			else
				continue;		/* unchanged, still verified with the secret */
		}
		nentries++;
		jk.type = jbvString;
		jk.val.string.val = (char *) audit_fields[f].name;
		jk.val.string.len = strlen(audit_fields[f].name);
		(void) pushJsonbValue(&state, WJB_KEY, &jk);
		(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
		jk.val.string.val = (how == 'c') ? "commitment" : "key";
		jk.val.string.len = strlen(jk.val.string.val);
		(void) pushJsonbValue(&state, WJB_KEY, &jk);
		jv.type = jbvString;
		jv.val.string.val = hex_of(k, HASH_LEN);
		jv.val.string.len = 2 * HASH_LEN;
		(void) pushJsonbValue(&state, WJB_VALUE, &jv);
		(void) pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	}
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	if (nentries == 0)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(JsonbValueToJsonb(res));
}

/* The database's pseudonymisation key (consent.audit_key), via SPI. */
static void
database_key(uint8 *key)
{
	bool		isnull;
	Datum		d;
	bytea	   *b;

	if (SPI_execute("SELECT key FROM consent.audit_key", true, 2) != SPI_OK_SELECT)
		elog(ERROR, "could not read consent.audit_key");
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("consent.audit_key must hold exactly one key, it holds " UINT64_FORMAT,
						SPI_processed),
				 errhint("Reinstall the extension, or restore the key saved from the original database.")));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	b = DatumGetByteaPP(d);
	if (isnull || VARSIZE_ANY_EXHDR(b) != HASH_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("consent.audit_key holds an invalid key")));
	memcpy(key, VARDATA_ANY(b), HASH_LEN);
}

/* "erased:" || hex(HMAC-SHA256(key, subject)) */
static char *
pseudonym_of(const uint8 *key, const char *subject)
{
	Sha256Hmac	h;
	uint8		mac[HASH_LEN];

	sha256_hmac_key(&h, key, HASH_LEN);
	sha256_hmac(&h, subject, strlen(subject), NULL, 0, NULL, 0, mac);
	return psprintf(PSEUDONYM_PREFIX "%s", hex_of(mac, HASH_LEN));
}

/* consent.pseudonym(subject text) */
Datum
consent_pseudonym(PG_FUNCTION_ARGS)
{
	char	   *subject = text_to_cstring(PG_GETARG_TEXT_PP(0));
	uint8		key[HASH_LEN];
	char	   *p;

	SPI_connect();
	database_key(key);
	SPI_finish();
	p = pseudonym_of(key, subject);
	PG_RETURN_TEXT_P(cstring_to_text(p));
}

/* Run an SPI statement with text parameters $1..$n; returns rows processed. */
static uint64
spi_exec(const char *sql, int nargs, Datum *args, Oid *types, int expect)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, args, NULL, false, 0);

	if (rc != expect)
		elog(ERROR, "SPI_execute_with_args failed (%s): %s", SPI_result_code_string(rc), sql);
	return SPI_processed;
}

static bool
pseudonym_in_use(const char *p)
{
	Datum		arg = CStringGetTextDatum(p);
	Oid			type = TEXTOID;
	bool		isnull;

	spi_exec("SELECT EXISTS (SELECT 1 FROM consent.audit_chains WHERE subject = $1)"
			 "    OR EXISTS (SELECT 1 FROM consent.audit_events WHERE subject = $1)"
			 "    OR EXISTS (SELECT 1 FROM consent.records WHERE subject = $1)",
			 1, &arg, &type, SPI_OK_SELECT);
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Other tables of the extension that name subjects (e.g. an outbox): every
 * table in schema consent with a text column "subject", except the ones
 * erasure handles itself.  The person's rows get the pseudonym, and every
 * text and jsonb column of any row that mentions the identifier is
 * redacted.  Returns rows changed.
 */
static uint64
erase_elsewhere(Datum *args, Oid *types)
{
	uint64		n = 0;
	List	   *stmts = NIL;
	ListCell   *lc;

	spi_exec("SELECT c.relname::text,"
			 "       string_agg(pg_catalog.format('%I = consent.audit_redact(%I, $1, $2)', a.attname, a.attname), ', ')"
			 "         FILTER (WHERE a.attname <> 'subject' AND a.atttypid IN ('text'::regtype, 'jsonb'::regtype)),"
			 "       string_agg(pg_catalog.format('strpos(%I::text, $1) > 0', a.attname), ' OR ')"
			 "         FILTER (WHERE a.attname <> 'subject' AND a.atttypid IN ('text'::regtype, 'jsonb'::regtype))"
			 "  FROM pg_catalog.pg_class c"
			 "  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
			 " WHERE c.relnamespace = 'consent'::regnamespace AND c.relkind IN ('r', 'p')"
			 "   AND c.relname NOT IN ('records', 'audit_events', 'audit_chains')"
			 "   AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute s WHERE s.attrelid = c.oid"
			 "               AND s.attname = 'subject' AND s.atttypid = 'text'::regtype AND NOT s.attisdropped)"
			 " GROUP BY c.relname ORDER BY c.relname",
			 0, NULL, NULL, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *rel = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *sets = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		char	   *conds = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3);

		stmts = lappend(stmts,
						psprintf("UPDATE consent.%s SET subject = CASE WHEN subject = $1 THEN $2 ELSE subject END%s%s"
								 " WHERE subject = $1%s%s",
								 quote_identifier(rel), sets ? ", " : "", sets ? sets : "",
								 conds ? " OR " : "", conds ? conds : ""));
	}
	foreach(lc, stmts)
		n += spi_exec((char *) lfirst(lc), 2, args, types, SPI_OK_UPDATE);
	return n;
}

/*
 * The rewrite itself, with the guards open: the subject's events (values
 * redacted, redactions recorded), records, other tables, and chain (new
 * name, new secret).  args: $1 subject, $2 pseudonym, $3 old chain secret,
 * $4 new chain secret.
 */
static void
erase_rewrite_guts(Datum *args, Oid *types,
				   uint64 *nevents, uint64 *nrecords, uint64 *nother)
{
	Datum		pargs[3] = {args[1], args[0], args[3]};
	Oid			ptypes[3] = {TEXTOID, TEXTOID, BYTEAOID};

	if (SPI_execute_with_args("UPDATE consent.audit_events e SET"
							  "  subject = $2,"
							  "  source = consent.audit_redact(e.source, $1, $2),"
							  "  reason = consent.audit_redact(e.reason, $1, $2),"
							  "  evidence = consent.audit_redact(e.evidence, $1, $2),"
							  "  application_name = consent.audit_redact(e.application_name, $1, $2),"
							  "  actor = consent.audit_redact(e.actor, $1, $2),"
							  "  redactions = consent.audit_redactions(e, $3, $1, $2, true)"
							  " WHERE e.subject = $1",
							  3, types, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not pseudonymise consent.audit_events");
	*nevents = SPI_processed;

	/* Other people's events that mention the identifier. */
	*nother = spi_exec("UPDATE consent.audit_events e SET"
					   "  source = consent.audit_redact(e.source, $1, $2),"
					   "  reason = consent.audit_redact(e.reason, $1, $2),"
					   "  evidence = consent.audit_redact(e.evidence, $1, $2),"
					   "  application_name = consent.audit_redact(e.application_name, $1, $2),"
					   "  actor = consent.audit_redact(e.actor, $1, $2),"
					   "  redactions = coalesce(consent.audit_redactions(e,"
					   "      coalesce((SELECT c.secret FROM consent.audit_chains c"
					   "                 WHERE c.subject = coalesce(e.subject, '')), ''),"
					   "      $1, $2, false), e.redactions)"
					   " WHERE e.subject IS DISTINCT FROM $2"
					   "   AND (strpos(e.source, $1) > 0 OR strpos(e.reason, $1) > 0"
					   "        OR strpos(e.application_name, $1) > 0 OR strpos(e.actor, $1) > 0"
					   "        OR strpos(e.evidence::text, $1) > 0"
					   "        OR strpos(e.evidence::text, pg_catalog.btrim(pg_catalog.to_json($1)::text, '\"')) > 0)",
					   2, args, types, SPI_OK_UPDATE);

	*nrecords = spi_exec("UPDATE consent.records r SET"
						 "  subject = CASE WHEN r.subject = $1 THEN $2 ELSE r.subject END,"
						 "  source = consent.audit_redact(r.source, $1, $2),"
						 "  reason = consent.audit_redact(r.reason, $1, $2),"
						 "  evidence = consent.audit_redact(r.evidence, $1, $2),"
						 "  actor = consent.audit_redact(r.actor, $1, $2)"
						 " WHERE r.subject = $1"
						 "    OR strpos(r.source, $1) > 0 OR strpos(r.reason, $1) > 0"
						 "    OR strpos(r.actor, $1) > 0 OR strpos(r.evidence::text, $1) > 0"
						 "    OR strpos(r.evidence::text, pg_catalog.btrim(pg_catalog.to_json($1)::text, '\"')) > 0",
						 2, args, types, SPI_OK_UPDATE);

	*nother += erase_elsewhere(args, types);

	spi_exec("UPDATE consent.audit_chains SET subject = $1, secret = $3,"
			 " erased_at = pg_catalog.clock_timestamp() WHERE subject = $2",
			 3, pargs, ptypes, SPI_OK_UPDATE);
}

static void
erase_rewrite(Datum *args, Oid *types,
			  uint64 *nevents, uint64 *nrecords, uint64 *nother)
{
	erasing = true;
	PG_TRY();
	{
		erase_rewrite_guts(args, types, nevents, nrecords, nother);
	}
	PG_FINALLY();
	{
		erasing = false;
	}
	PG_END_TRY();
}

/* consent.audit_erase(subject text, reason text), behind consent.erase_subject() */
Datum
consent_audit_erase(PG_FUNCTION_ARGS)
{
	char	   *subject;
	char	   *reason;
	uint8		key[HASH_LEN];
	uint8		fresh[HASH_LEN];
	char	   *base;
	char	   *pseudo;
	Datum		args[4];
	Oid			types[4] = {TEXTOID, TEXTOID, BYTEAOID, TEXTOID};
	bytea	   *secret = NULL;
	uint64		nevents = 0,
				nrecords = 0,
				nother = 0;
	int64		event_id;
	bool		isnull;

	subject = text_to_cstring(PG_GETARG_TEXT_PP(0));
	reason = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (subject[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("subject must not be empty")));
	if (strlen(subject) > CONSENT_SUBJECT_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("subject is %d bytes long, the limit is %d",
						(int) strlen(subject), CONSENT_SUBJECT_MAX_BYTES)));
	/* The erase event records consent.actor: it must not name the person. */
	if (consent_actor != NULL && consent_actor[0] != '\0' &&
		redact_str(consent_actor, strlen(consent_actor), subject, strlen(subject), "") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("consent.actor names the subject being erased"),
				 errhint("RESET consent.actor, or set it to the operator, before erasing.")));
	if (!pg_strong_random(fresh, HASH_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random chain secret")));

	SPI_connect();
	args[0] = CStringGetTextDatum(subject);

	/*
	 * Lock what the subject has, in the order writers lock it (the record,
	 * then the chain), so that a concurrent choice waits rather than
	 * deadlocks.
	 */
	spi_exec("SELECT 1 FROM consent.records WHERE subject = $1 FOR UPDATE",
			 1, args, types, SPI_OK_SELECT);
	spi_exec("SELECT secret FROM consent.audit_chains WHERE subject = $1 FOR UPDATE",
			 1, args, types, SPI_OK_SELECT);
	if (SPI_processed > 0)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			secret = DatumGetByteaPCopy(d);
	}

	database_key(key);
	base = pseudonym_of(key, subject);
	pseudo = base;
	for (int n = 2; pseudonym_in_use(pseudo); n++)
		pseudo = psprintf("%s#%d", base, n);

	args[1] = CStringGetTextDatum(pseudo);
	args[2] = PointerGetDatum(secret ? secret : bytea_of(NULL, 0));
	args[3] = PointerGetDatum(bytea_of(fresh, HASH_LEN));
	types[3] = BYTEAOID;

	erase_rewrite(args, types, &nevents, &nrecords, &nother);

	/* The erasure itself, at the end of the (renamed) chain. */
	{
		AuditWriter w;
		AuditEvent	ev;
		char	   *red_reason;
		char	   *evidence;

		red_reason = redact_str(reason, strlen(reason), subject, strlen(subject), pseudo);
		evidence = psprintf("{\"events\": " UINT64_FORMAT ", \"records\": " UINT64_FORMAT
							", \"other_rows\": " UINT64_FORMAT "}",
							nevents, nrecords, nother);
		writer_open(&w, NULL, CurrentMemoryContext);
		event_init(&ev);
		event_set_text(&ev, AF_SUBJECT, pseudo);
		event_set_text(&ev, AF_ACTION, "erase");
		event_set_text(&ev, AF_METHOD, "api");
		event_set_text(&ev, AF_REASON, red_reason ? red_reason : reason);
		event_set(&ev, AF_EVIDENCE, DirectFunctionCall1(jsonb_in, CStringGetDatum(evidence)));
		event_id = writer_append(&w, &ev);
		writer_close(&w);
	}

	SPI_finish();
	PG_RETURN_INT64(event_id);
}
