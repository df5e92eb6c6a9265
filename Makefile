# consent: PGXS build.  The version is read from consent.control; the
# extension script is concatenated from src/sql/NN_*.sql in name order.

EXTENSION  = consent
EXTVERSION = $(shell sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" consent.control)

MODULE_big = consent
OBJS       = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))

SQL_PARTS  = $(sort $(wildcard src/sql/[0-9][0-9]_*.sql))
DATA_built = consent--$(EXTVERSION).sql
DATA       = $(wildcard src/sql/consent--*--*.sql)

# Server headers as system headers: -Wextra then judges our code, not theirs.
PG_CPPFLAGS = -I$(srcdir)/src -isystem $(includedir_server) -isystem $(includedir_internal)
PG_CFLAGS   = -Wall -Wextra

# Test inputs; the driver is scripts/test.sh (see README).  These variables
# keep "make installcheck" working too, against an installed server build.
REGRESS      = $(sort $(basename $(notdir $(wildcard sql/*.sql))))
REGRESS_OPTS = --temp-instance=./tmp_check --temp-config=./test/consent.conf \
               --load-extension=consent
ISOLATION      = $(sort $(basename $(notdir $(wildcard test/isolation/specs/*.spec))))
ISOLATION_OPTS = --inputdir=test/isolation --temp-instance=./tmp_check_iso \
                 --temp-config=./test/consent.conf --load-extension=consent
TAP_TESTS   = 1
PROVE_TESTS = $(sort $(wildcard test/t/*.pl))
EXTRA_CLEAN = tmp_install test/results

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies: every object depends on every header.
$(OBJS): $(wildcard src/*.h)

$(DATA_built): $(SQL_PARTS) consent.control
	cat $(SQL_PARTS) > $@

.PHONY: demo test
demo:
	./scripts/demo.sh

test:
	./scripts/test.sh
