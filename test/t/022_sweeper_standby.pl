# A hot standby runs no sweeper (it cannot write, and the primary's sweeps
# reach it through WAL); after promotion the promoted server sweeps.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
# The primary sweeps nothing here, so that what the standby has to sweep
# after its promotion is still there.
$primary->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'consent'
consent.databases = ''
});
$primary->start;
$primary->backup('backup');

my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->append_conf(
	'postgresql.conf', qq{
consent.databases = '*'
consent.sweep_interval = 1
});
$standby->start;

$primary->safe_psql('postgres', 'CREATE EXTENSION consent');
$primary->safe_psql('postgres', "SELECT consent.define_purpose('marketing', 'Marketing')");
$primary->safe_psql(
	'postgres', qq{
	INSERT INTO consent.records (subject, purpose_id, status, expires_at)
	SELECT 'p' || g, 1, 'granted', now() - interval '1 minute' FROM generate_series(1, 10) g});
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');
sleep(3);    # three sweep intervals
is( $standby->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('consent launcher', 'consent sweeper')"),
	'0',
	'the standby runs no launcher and no sweeper');
unlike(slurp_file($standby->logfile), qr/consent launcher started/, 'no launcher was started on the standby');
is($standby->safe_psql('postgres', "SELECT count(*) FROM consent.records WHERE status = 'granted'"),
	'10', 'the expired grants are untouched on the standby');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM consent.sweeper_status'),
	'0', 'the standby shows no sweeps');
# consent.sweep() by hand fails cleanly on a standby
my ($ret, $out, $err) = $standby->psql('postgres', 'SELECT * FROM consent.sweep()');
isnt($ret, 0, 'consent.sweep() fails on the standby');
like($err, qr/read-only transaction/, '... because the standby is read-only');

$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()')
  or die "promotion did not finish";
$standby->wait_for_log(qr/consent launcher started/);
pass('the promoted server starts the launcher');
$standby->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM consent.records WHERE status = 'granted'")
  or die "the promoted server did not sweep";
pass('the promoted server sweeps');
is($standby->safe_psql('postgres', "SELECT count(*) FROM consent.outbox WHERE event = 'expire'"),
	'10', 'one expire event per record on the promoted server');

$standby->stop;
$primary->stop;
done_testing();
