/*-------------------------------------------------------------------------
 *
 * audit.h
 *		The audit trail: append-only, hash-chained events written by C
 *		triggers (see audit.c and docs/audit.md).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CONSENT_AUDIT_H
#define CONSENT_AUDIT_H

#include "postgres.h"

/*
 * Registers the audit settings (consent.controller_name and friends) and
 * the transaction callbacks.  Called from _PG_init before the "consent"
 * prefix is reserved.
 */
extern void consent_audit_init(void);

/* True while consent.erase_subject() rewrites the trail in this backend. */
extern bool consent_audit_erasing(void);

#endif							/* CONSENT_AUDIT_H */
