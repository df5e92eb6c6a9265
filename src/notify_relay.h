/*-------------------------------------------------------------------------
 *
 * notify_relay.h
 *		NOTIFY consent at commit, by the committing transaction or by a
 *		per-database relay process right after it (see notify_relay.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CONSENT_NOTIFY_RELAY_H
#define CONSENT_NOTIFY_RELAY_H

#include "postgres.h"

#include "fmgr.h"

/* GUCs */
extern int	consent_notify_relays;
extern int	consent_notify_relay_buffer;

/* Queue a payload for NOTIFY consent when the transaction commits. */
extern void consent_notify_at_commit(const char *payload);

/* Background worker entry point (looked up by name by the postmaster). */
extern PGDLLEXPORT void consent_notify_relay_main(Datum main_arg);

/* Defines the callbacks; under preload also the settings. */
extern void consent_notify_relay_init(void);

/* Under preload: shared memory, requested and set up (consent.c). */
extern void consent_relay_shmem_request(void);
extern void consent_relay_shmem_startup(void);

#endif							/* CONSENT_NOTIFY_RELAY_H */
