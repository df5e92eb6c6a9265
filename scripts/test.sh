#!/usr/bin/env bash
# The one test command: installs what it needs, builds, installs the
# extension into a private copy of PostgreSQL 15, and runs every suite:
#
#   regress    pg_regress, sql/ + expected/
#   isolation  pg_isolation_regress, test/isolation/
#   pgtap      pg_prove, test/pgtap/ (on a scratch server)
#   tap        prove, Perl TAP on real clusters, test/t/
#   lint       versions agree; the C builds with -Wall -Wextra -Werror
#   docs       the SQL examples of docs/*.md give the output they show
#
# Ends with "N passed, N failed" (one unit: a test file or spec) and exits
# non-zero on any failure or on a suite that ran nothing.  Run it as root
# (it installs packages and runs the servers as postgres) or as a user that
# can write the tree, with the packages already installed.
#
# SUITES="regress isolation" limits the run; TAP_FILES="test/t/020_*.pl"
# limits the tap suite; KEEP=1 keeps the work dir.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# Packages first: env.sh asks pg_config, which they bring.
./scripts/deps.sh || { echo "0 passed, 1 failed"; exit 1; }
. scripts/env.sh
make -s PG_CONFIG="$PG_CONFIG" >/dev/null || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/consent-test.XXXXXX")
chmod 755 "$WORK"
INST=$WORK/inst
make_private_install "$INST" || { echo "install failed"; echo "0 passed, 1 failed"; exit 1; }
BIN=$INST$PGBIN
PGXS_PRIV=$INST$PGXS_DIR
export PATH="$BIN:$PATH"

# The tests run from a copy that postgres can write.
mkdir -p "$WORK/tree"
tar -C "$ROOT" --exclude=.git --exclude='*.o' --exclude='*.so' -cf - . | tar -C "$WORK/tree" -xf -
if [ "$(id -u)" -eq 0 ]; then chown -R postgres "$WORK"; fi
cd "$WORK/tree"

TOTAL_PASS=0
TOTAL_FAIL=0
SUMMARY=()
SUITES=${SUITES:-lint regress isolation pgtap tap docs}

record() {	# suite passed failed
	local suite=$1 p=${2:-0} f=${3:-0}
	if [ $((p + f)) -eq 0 ]; then
		echo "!! suite $suite ran no test"
		f=1
	fi
	TOTAL_PASS=$((TOTAL_PASS + p))
	TOTAL_FAIL=$((TOTAL_FAIL + f))
	SUMMARY+=("$(printf '%-10s %3d passed, %d failed' "$suite" "$p" "$f")")
}

# A listed test that reported no result (the runner stopped early) fails.
record_listed() {	# suite listed passed failed
	local suite=$1 listed=$2 p=${3:-0} f=${4:-0}
	if [ $((p + f)) -lt "$listed" ]; then
		echo "!! suite $suite: $((listed - p - f)) of $listed tests reported no result"
		f=$((listed - p))
	fi
	record "$suite" "$p" "$f"
}

# pg_regress (PG 15) prints "test name ... ok" / "... FAILED" per test.
count_regress() {
	local log=$1
	local p f
	p=$(grep -Ec '^(test| ) +[^ ]+ +\.\.\. ok' "$log")
	f=$(grep -Ec '\.\.\. FAILED|\.\.\. failed' "$log")
	echo "$p $f"
}

run_regress() {
	local tests
	tests=$(ls sql/*.sql 2>/dev/null | xargs -n1 basename 2>/dev/null | sed 's/\.sql$//' | sort)
	echo "== regress: $(echo $tests | wc -w) tests"
	as_pg "$PGXS_PRIV/src/test/regress/pg_regress" \
		--bindir="$BIN" --temp-instance="$WORK/tmp_regress" \
		--temp-config=test/consent.conf --load-extension=consent \
		--inputdir=. --outputdir="$WORK/out_regress" --dbname=contrib_regression \
		$tests 2>&1 | tee "$WORK/regress.log"
	[ -f "$WORK/out_regress/regression.diffs" ] && head -200 "$WORK/out_regress/regression.diffs"
	record_listed regress "$(echo $tests | wc -w)" $(count_regress "$WORK/regress.log")
}

run_isolation() {
	local specs
	specs=$(ls test/isolation/specs/*.spec 2>/dev/null | xargs -n1 basename 2>/dev/null | sed 's/\.spec$//' | sort)
	echo "== isolation: $(echo $specs | wc -w) specs"
	as_pg "$PGXS_PRIV/src/test/isolation/pg_isolation_regress" \
		--bindir="$BIN" --temp-instance="$WORK/tmp_iso" \
		--temp-config=test/consent.conf --load-extension=consent \
		--inputdir=test/isolation --outputdir="$WORK/out_iso" --dbname=isolation_regression \
		$specs 2>&1 | tee "$WORK/isolation.log"
	[ -f "$WORK/out_iso/regression.diffs" ] && head -200 "$WORK/out_iso/regression.diffs"
	record_listed isolation "$(echo $specs | wc -w)" $(count_regress "$WORK/isolation.log")
}

# prove / pg_prove: count test files from the closing summary
# ("Files=N, Tests=M" and, on failure, "Failed X/N test programs").
count_prove() {
	local log=$1 files failed
	files=$(sed -n 's/^Files=\([0-9]*\),.*/\1/p' "$log" | tail -1)
	if [ -z "$files" ]; then echo "0 1"; return; fi
	failed=$(sed -n 's/^Failed \([0-9]*\)\/[0-9]* test programs.*/\1/p' "$log" | tail -1)
	if [ -z "$failed" ]; then
		grep -q '^Result: PASS' "$log" && failed=0 || \
			failed=$(grep -Ec '\(Wstat: [1-9]|\(Wstat: [0-9]+ Tests: [0-9]+ Failed: [1-9]' "$log")
		[ "$failed" -eq 0 ] && ! grep -q '^Result: PASS' "$log" && failed=1
	fi
	echo "$((files - failed)) $failed"
}

run_pgtap() {
	local files
	files=$(ls test/pgtap/*.sql 2>/dev/null | sort)
	echo "== pgtap: $(echo $files | wc -w) files"
	if [ -z "$files" ]; then record pgtap 0 0; return; fi
	start_scratch_server "$WORK/pgtap"
	as_pg "$BIN/createdb" consent_pgtap
	as_pg "$BIN/psql" -X -q -d consent_pgtap -c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION consent'
	as_pg pg_prove --ext .sql -d consent_pgtap $files 2>&1 | tee "$WORK/pgtap.log"
	stop_scratch_server "$WORK/pgtap"
	record pgtap $(count_prove "$WORK/pgtap.log")
}

run_tap() {
	local files
	files=$(ls ${TAP_FILES:-test/t/*.pl} 2>/dev/null | sort)
	echo "== tap: $(echo $files | wc -w) scripts"
	if [ -z "$files" ]; then record tap 0 0; return; fi
	mkdir -p "$WORK/tap/tmp_check/log"
	[ "$(id -u)" -eq 0 ] && chown -R postgres "$WORK/tap"
	as_pg env TESTDIR="$WORK/tap" PG_REGRESS="$PGXS_PRIV/src/test/regress/pg_regress" \
		PGXS_DIR="$PGXS_PRIV" CONSENT_TREE="$WORK/tree" \
		prove -I "$PGXS_PRIV/src/test/perl" -I test $files 2>&1 | tee "$WORK/tap.log"
	record tap $(count_prove "$WORK/tap.log")
}

# Static checks: the version is the same everywhere, and the C sources
# build without a single warning under -Wall -Wextra -Werror.
run_lint() {
	local p=0 f=0 v mv
	echo "== lint"
	v=$(sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" consent.control)
	mv=$(sed -n 's/^   "version": "\([^"]*\)",/\1/p' META.json | head -1)
	if [ -n "$v" ] && [ "$v" = "$mv" ] && [ -f "$ROOT/consent--$v.sql" ]; then
		echo "ok: version $v in consent.control, META.json and the install script"; p=$((p + 1))
	else
		echo "FAILED: consent.control says '$v', META.json says '$mv'"; f=$((f + 1))
	fi
	mkdir -p "$WORK/lint" && tar -C "$ROOT" --exclude=.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' -cf - src Makefile consent.control | tar -C "$WORK/lint" -xf -
	if make -s -C "$WORK/lint" PG_CONFIG="$PG_CONFIG" PG_CFLAGS="-Wall -Wextra -Werror" with_llvm=no >"$WORK/lint.log" 2>&1; then
		echo "ok: C sources build with -Wall -Wextra -Werror"; p=$((p + 1))
	else
		cat "$WORK/lint.log"; echo "FAILED: compiler warnings"; f=$((f + 1))
	fi
	record lint "$p" "$f"
}

# The SQL examples of the reference pages, run against a scratch server and
# compared with the output the pages show (scripts/check_docs.py).
DOC_PAGES=${DOC_PAGES:-docs/purposes.md docs/notices.md docs/recording.md docs/privileges.md docs/errors.md}
run_docs() {
	local p f
	echo "== docs: $(echo $DOC_PAGES | wc -w) pages"
	SCRATCH_PORT=5495 start_scratch_server "$WORK/docs"
	as_pg python3 scripts/check_docs.py $DOC_PAGES 2>&1 | tee "$WORK/docs.log"
	stop_scratch_server "$WORK/docs"
	p=$(grep -c '^ok: ' "$WORK/docs.log")
	f=$(grep -c '^FAILED: ' "$WORK/docs.log")
	record docs "$p" "$f"
}

for s in $SUITES; do
	"run_$s"
done

cd "$ROOT"
echo
echo "== summary"
for line in "${SUMMARY[@]}"; do echo "$line"; done
if [ "${KEEP:-0}" = 1 ] || [ "$TOTAL_FAIL" -gt 0 ]; then
	echo "work dir kept: $WORK"
else
	rm -rf "$WORK"
fi
echo "$TOTAL_PASS passed, $TOTAL_FAIL failed"
[ "$TOTAL_FAIL" -eq 0 ]
