# DROP DATABASE of a database that is being swept succeeds within 5 s: the
# sweeper notices that DROP DATABASE waits for the database and stops at
# the next batch (between sweeps no process of the extension is connected
# at all).  The other databases go on being swept.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = PostgreSQL::Test::Cluster->new('dropdb');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'consent'
consent.sweep_interval = 1
consent.sweep_batch_size = 50
});
$node->start;

for my $db ('victim', 'survivor')
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE EXTENSION consent');
	$node->safe_psql($db, "SELECT consent.define_purpose('marketing', 'Marketing')");
}

# Enough expired grants for a sweep of several seconds.
$node->safe_psql(
	'victim', qq{
	INSERT INTO consent.records (subject, purpose_id, status, expires_at)
	SELECT 'v' || g, 1, 'granted', now() - interval '1 minute' FROM generate_series(1, 50000) g});
$node->poll_query_until('victim', "SELECT count(*) > 0 FROM consent.records WHERE status = 'expired'")
  or die "the sweep of database victim did not start";
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'consent sweeper' AND datname = 'victim'"),
	'1',
	'a sweeper is connected to database victim');
my $swept = $node->safe_psql('victim', "SELECT count(*) FROM consent.records WHERE status = 'expired'");
cmp_ok($swept, '<', 50000, "the sweeper is in the middle of its sweep ($swept of 50000 done)");

my $offset = -s $node->logfile;
my $t0 = time();
my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE victim');
my $took = time() - $t0;
is($ret, 0, 'DROP DATABASE succeeds while the database is being swept') or diag($err);
cmp_ok($took, '<', 5, sprintf('DROP DATABASE took %.2f s', $took));
like(
	slurp_file($node->logfile, $offset),
	qr/consent sweeper: sweep of database "victim" stopped early: another session is waiting for exclusive use of the database/,
	'the sweeper logs why it stopped');

# The launcher is unharmed and sweeps the others.
$node->safe_psql(
	'survivor', qq{
	INSERT INTO consent.records (subject, purpose_id, status, expires_at)
	SELECT 's' || g, 1, 'granted', now() - interval '1 minute' FROM generate_series(1, 10) g});
$node->poll_query_until('survivor',
	"SELECT count(*) = 0 FROM consent.records WHERE status = 'granted'")
  or die "survivor not swept";
pass('the other database is still swept');
$node->poll_query_until('survivor',
	"SELECT count(*) = 0 FROM consent.sweeper_status WHERE datid NOT IN (SELECT oid FROM pg_database)")
  or die "the dropped database stays in the status view";
pass('the status view forgets the dropped database');

# Between sweeps nothing is connected: DROP DATABASE is immediate.
$node->safe_psql('postgres', "ALTER SYSTEM SET consent.sweep_interval = '1h'");
$node->reload;
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'consent sweeper'");
# (the database's notify relay, which sent the sweep's notifications,
# leaves a second after its last work)
ok( $node->poll_query_until(
		'postgres', "SELECT count(*) = 0 FROM pg_stat_activity WHERE datname = 'survivor'"),
	'between sweeps no process is connected to the database');
$t0 = time();
$node->safe_psql('postgres', 'DROP DATABASE survivor');
cmp_ok(time() - $t0, '<', 5, 'DROP DATABASE between sweeps');

$node->stop;
done_testing();
