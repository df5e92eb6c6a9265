/*-------------------------------------------------------------------------
 *
 * consent.c
 *		Module entry point: the magic block, _PG_init, the settings
 *		that belong to no single area, and the shared memory hooks.
 *
 * Each area registers its own settings from here so that all of them are
 * defined, and the "consent" prefix reserved, in one place at load time.
 * Under shared_preload_libraries one pair of shared memory hooks asks each
 * area that keeps state in shared memory for its size and its set-up.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/guc.h"

#include "consent.h"
#include "audit.h"
#include "cache.h"
#include "notify_relay.h"
#include "sha256.h"
#include "sweeper.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* consent.actor: who the application says is acting, recorded with a choice */
char	   *consent_actor = NULL;

#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/*
 * Shared memory, under shared_preload_libraries: one pair of hooks for the
 * whole library, asking each area (cache.c, sweeper.c, notify_relay.c) for
 * what it needs and then to set it up.
 */
static void
consent_shmem_request(void)
{
#if PG_VERSION_NUM >= 150000
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	consent_cache_shmem_request();
	consent_sweeper_shmem_request();
	consent_relay_shmem_request();
}

static void
consent_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	consent_cache_shmem_startup();
	consent_sweeper_shmem_startup();
	consent_relay_shmem_startup();
}

void
_PG_init(void)
{
	/* Do nothing during pg_upgrade: no settings, no hooks, no workers. */
	if (IsBinaryUpgrade)
		return;

	DefineCustomStringVariable("consent.actor",
							   "Application-supplied actor recorded with each choice.",
							   "Set it per session or transaction, e.g. SET LOCAL consent.actor = 'agent:42'; "
							   "when empty the session user is recorded.",
							   &consent_actor,
							   "",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomBoolVariable("consent.sha256_portable",
							 "Hash the audit trail with the portable SHA-256 code even where the CPU has SHA instructions.",
							 "A developer setting, for tests: both give the same hashes.",
							 &consent_sha256_portable,
							 false,
							 PGC_SUSET, GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);

	consent_cache_init();
	consent_audit_init();
	consent_sweeper_init();
	consent_notify_relay_init();

	if (process_shared_preload_libraries_in_progress)
	{
#if PG_VERSION_NUM >= 150000
		prev_shmem_request_hook = shmem_request_hook;
		shmem_request_hook = consent_shmem_request;
#else
		/* before PostgreSQL 15, requests are made from _PG_init itself */
		consent_shmem_request();
#endif
		prev_shmem_startup_hook = shmem_startup_hook;
		shmem_startup_hook = consent_shmem_startup;
	}

#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("consent");
#else
	EmitWarningsOnPlaceholders("consent");
#endif
}
