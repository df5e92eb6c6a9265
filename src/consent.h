/*-------------------------------------------------------------------------
 *
 * consent.h
 *		Declarations shared by the consent extension's C sources.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CONSENT_H
#define CONSENT_H

#include "postgres.h"

#include "access/attnum.h"
#include "nodes/execnodes.h"
#include "postmaster/bgworker.h"

/* Limits of a subject key, in bytes. */
#define CONSENT_SUBJECT_MAX_BYTES	256

/* Limits of a purpose key (see purpose_key.c). */
#define PURPOSE_KEY_MAX_BYTES		63
#define PURPOSE_KEY_MAX_SEGMENTS	8

/* GUC variables (consent.c) */
extern char *consent_actor;

/* sweeper.c: settings, and under shared_preload_libraries the launcher */
extern void consent_sweeper_init(void);

/* util.c: the extension's own objects, with clear errors when missing */
extern Oid	consent_namespace(void);
extern Oid	consent_relid(Oid nsp, const char *name);
extern AttrNumber consent_attnum(Oid relid, const char *name);
extern Oid	consent_enum_label(Oid nsp, const char *type, const char *label);

/* util.c: what every dynamic background worker of the extension shares */
extern void consent_worker_init(BackgroundWorker *bgw, const char *function,
								const char *type);

/* util.c: ExecInsert's speculative insertion, for ON CONFLICT done in C */
extern bool consent_insert_speculative(ResultRelInfo *rri, TupleTableSlot *slot,
									   EState *estate, CommandId cid, List *arbiter,
									   List **recheck);

/* purpose_key.c */
extern void purpose_key_validate(const char *str, int len);

#endif							/* CONSENT_H */
