/*-------------------------------------------------------------------------
 *
 * consent.c
 *		Module entry point: the magic block, _PG_init and the settings
 *		that belong to no single area.
 *
 * Each area registers its own settings from here so that all of them are
 * defined, and the "consent" prefix reserved, in one place at load time.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "consent.h"
#include "audit.h"
#include "cache.h"
#include "notify_relay.h"
#include "sha256.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* consent.actor: who the application says is acting, recorded with a choice */
char	   *consent_actor = NULL;

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

#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("consent");
#else
	EmitWarningsOnPlaceholders("consent");
#endif
}
