/*-------------------------------------------------------------------------
 *
 * sweeper.h
 *		The background worker (launcher and per-database sweepers), the
 *		sweep itself and the notification outbox (see sweeper.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CONSENT_SWEEPER_H
#define CONSENT_SWEEPER_H

#include "postgres.h"

#include "fmgr.h"

/* GUCs */
extern char *consent_databases;
extern int	consent_sweep_interval;
extern int	consent_max_sweepers;
extern int	consent_sweep_batch_size;
extern int	consent_sweep_workers;
extern int	consent_warn_before;
extern int	consent_outbox_retention;
extern bool consent_notify;

/* Background worker entry points (looked up by name by the postmaster). */
extern PGDLLEXPORT void consent_launcher_main(Datum main_arg);
extern PGDLLEXPORT void consent_sweeper_main(Datum main_arg);
extern PGDLLEXPORT void consent_sweep_helper_main(Datum main_arg);

/* Defines the settings; under shared_preload_libraries also the launcher. */
extern void consent_sweeper_init(void);

/* Under preload: shared memory, requested and set up (consent.c). */
extern void consent_sweeper_shmem_request(void);
extern void consent_sweeper_shmem_startup(void);

#endif							/* CONSENT_SWEEPER_H */
