/*-------------------------------------------------------------------------
 *
 * enforce.h
 *		The effective rule: what a person's recorded choices mean for one
 *		purpose right now.  Shared by the enforcement functions (has,
 *		has_all, has_any, mask) and the explanatory ones (status,
 *		decisions).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CONSENT_ENFORCE_H
#define CONSENT_ENFORCE_H

#include "postgres.h"

#include "consent.h"
#include "fmgr.h"
#include "utils/snapshot.h"
#include "utils/timestamp.h"

/* Why a decision came out the way it did. */
typedef enum DecisionReason
{
	REASON_GRANTED,				/* nearest record is a live grant */
	REASON_PENDING,				/* nearest record awaits confirmation */
	REASON_DENIED,				/* nearest record is a refusal / objection */
	REASON_WITHDRAWN,			/* nearest record is a withdrawal */
	REASON_EXPIRED,				/* nearest record expired (stored or by time) */
	REASON_SUPERSEDED,			/* granted under a notice since materially changed */
	REASON_NO_RECORD_OPT_IN,	/* no record; consent basis needs opt-in */
	REASON_NO_RECORD_BASIS,		/* no record; another legal basis allows */
	REASON_RETIRED				/* the purpose is retired */
} DecisionReason;

/* One purpose as the rule needs it. */
typedef struct PurposeInfo
{
	int32		id;
	int			keylen;
	char		key[PURPOSE_KEY_MAX_BYTES + 1];
	Oid			basis;			/* consent.legal_basis enum label OID */
	bool		retired;
	bool		default_allowed;	/* answer with no record on the path */
} PurposeInfo;

/* A purpose with its ancestors resolved: path[0] is the purpose itself. */
typedef struct ResolvedPurpose
{
	const PurposeInfo *self;
	int			pathlen;
	int32		path[PURPOSE_KEY_MAX_SEGMENTS];
} ResolvedPurpose;

/* The record that decides, as read from consent.records. */
typedef struct DecisiveRecord
{
	int32		purpose_id;
	Oid			status;
	bool		has_expiry;
	TimestampTz expires_at;
	int32		notice_version; /* 0 when no notice */
	char	   *notice_key;		/* NULL when no notice */
} DecisiveRecord;

typedef struct Decision
{
	bool		allowed;
	DecisionReason reason;
	bool		has_record;
	DecisiveRecord rec;			/* valid when has_record */
} Decision;

extern void consent_enforce_init(void);

#endif							/* CONSENT_ENFORCE_H */
