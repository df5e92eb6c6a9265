# DROP DATABASE while a sweep helper is registered but not yet connected.
# A new backend takes its lock on the database before it counts as a user of
# it, so such a helper waits for DROP DATABASE, which waits for the sweeper,
# which must therefore not simply wait for its helpers: it notices that the
# database is wanted and stops them.  Stopping the postmaster (SIGSTOP) for
# a moment stands in for a slow fork of the helper.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('dropdb_helper');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'consent'
consent.databases = ''
consent.sweep_interval = '1h'
consent.sweep_batch_size = 100
# no notify relay: this test is about the sweeper and its helper
consent.notify_relays = 0
consent.notify = off
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE victim');
$node->safe_psql('victim', 'CREATE EXTENSION consent');
$node->safe_psql('victim', "SELECT consent.define_purpose('marketing', 'Marketing')");
$node->safe_psql(
	'victim', qq{
	INSERT INTO consent.records (subject, purpose_id, status, expires_at)
	SELECT 'v' || g, 1, 'granted', now() - interval '1 day' + interval '1 second' * g
	  FROM generate_series(1, 20000) g});

# Hold the sweeper at its first batch, so that the moment it registers its
# helper can be chosen.
my $blocker = $node->background_psql('victim');
$blocker->query_safe('BEGIN');
$blocker->query_safe('LOCK TABLE consent.records IN ACCESS EXCLUSIVE MODE');
my $dropper = $node->background_psql('postgres', on_error_stop => 0);

$node->adjust_conf('postgresql.conf', 'consent.databases', "'*'");
$node->reload;
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'consent sweeper' AND wait_event_type = 'Lock'")
  or die "no sweeper waiting";

open my $fh, '<', $node->data_dir . '/postmaster.pid' or die "no postmaster.pid";
my $pmpid = <$fh>;
chomp $pmpid;
close $fh;

# The postmaster stops: the sweeper's first batch completes and it
# registers a helper, which cannot be started yet; DROP DATABASE begins.
# (Whatever happens meanwhile, the postmaster is continued.)
my $t0;
kill 'STOP', $pmpid or die "could not stop the postmaster";
my $ok = eval {
	$blocker->query_safe('COMMIT');
	$blocker->quit;
	usleep(300_000);
	$t0 = time();
	$dropper->{stdin} .= "DROP DATABASE victim;\n";
	$dropper->{run}->pump_nb;
	usleep(500_000);
	1;
};
# Now the helper starts and waits for DROP DATABASE's lock.
kill 'CONT', $pmpid or die "could not continue the postmaster";
die $@ unless $ok;

ok( $node->poll_query_until(
		'postgres', "SELECT count(*) = 0 FROM pg_database WHERE datname = 'victim'"),
	'DROP DATABASE succeeds while a sweep helper is starting');
my $took = time() - $t0;
cmp_ok($took, '<', 10, sprintf('within %.1f s', $took));
$dropper->quit;
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('consent sweeper', 'consent sweep helper')"),
	'0',
	'neither the sweeper nor its helper is left');

$node->stop;
done_testing();
