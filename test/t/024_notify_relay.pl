# NOTIFY consent sent by the per-database relay after commit
# (src/notify_relay.c): every committed change is announced exactly once,
# by the relay and not by the committing session; rolled-back and prepared
# transactions announce nothing; a transaction too large for the relay's
# buffer announces its own changes; a relay stopped with SIGTERM sends what
# it holds first; an idle relay exits, so DROP DATABASE is not held up; and
# with consent.notify_relays = 0 every transaction sends its own.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConsentNotify;
use Time::HiRes qw(time usleep);
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('relay');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'consent'
consent.databases = ''
consent.notify_relay_buffer = 64kB
max_worker_processes = 16
max_prepared_transactions = 2
# for the synchronous replication test (SyncRepRequested needs WAL senders)
wal_level = replica
max_wal_senders = 2
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION consent');
$node->safe_psql('postgres', "SELECT consent.define_purpose('marketing', 'Marketing')");

my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN consent');
my $heard = '';

# payload subject => sender pid, of what was heard
sub senders
{
	my %pid;
	while ($heard =~
		/payload "\{"id":\d+,"event":"\w+","subject":"([^"]+)".*?received from server process with PID (\d+)/g)
	{
		$pid{$1} = $2;
	}
	return \%pid;
}

# Wait until as many notifications of subjects $prefix<n> were heard as
# the outbox has rows for them; then compare the two sets of outbox ids.
sub heard_all
{
	my ($prefix, $name) = @_;
	my @ids = split /,/,
	  $node->safe_psql('postgres',
		"SELECT string_agg(id::text, ',' ORDER BY id) FROM consent.outbox WHERE subject ~ '^${prefix}[0-9]+\$'");
	my %count;
	my $until = time() + 60;
	while (1)
	{
		$heard .= $listener->query_safe('SELECT 1');
		%count = ();
		$count{$1}++ while $heard =~ /\{"id":(\d+),"event":"\w+","subject":"$prefix\d+"/g;
		last if scalar(keys %count) >= scalar(@ids) || time() > $until;
		usleep(50_000);
	}
	usleep(300_000);    # anything duplicated would come now
	$heard .= $listener->query_safe('SELECT 1');
	%count = ();
	$count{$1}++ while $heard =~ /\{"id":(\d+),"event":"\w+","subject":"$prefix\d+"/g;
	my @missing = grep { !$count{$_} } @ids;
	my @twice = grep { $count{$_} > 1 } keys %count;
	my %known = map { $_ => 1 } @ids;
	my @unknown = grep { !$known{$_} } keys %count;
	ok(@ids > 0 && !@missing && !@twice && !@unknown,
		"$name: all " . scalar(@ids) . " outbox rows announced once")
	  or diag(sprintf("missing %d (first: %s), twice %d, not in the outbox %d",
			scalar(@missing), join(',', @missing[0 .. ($#missing < 4 ? $#missing : 4)]),
			scalar(@twice), scalar(@unknown)));
	diag($node->safe_psql('postgres', "SELECT o::text FROM consent.outbox o WHERE id = $missing[0]"))
	  if @missing;
}

#
# One change, announced by the relay after commit.  (The first change in a
# database without a relay is sent by its own transaction, which asks for
# a relay.)
#
my $writer = $node->background_psql('postgres');
my $writer_pid = $writer->query_safe('SELECT pg_backend_pid()');
$writer->query_safe("SELECT consent.grant('zero', 'marketing')");
ok(hear($listener, \$heard, qr/"subject":"zero"/), 'the first change is announced');
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'consent notify relay' AND datname = 'postgres'")
  or die "no relay started";
$writer->query_safe("SELECT consent.grant('one', 'marketing')");
ok(hear($listener, \$heard, qr/"subject":"one"/), 'a committed change is announced');
like(
	$heard,
	qr/Asynchronous notification "consent" with payload "\{"id":\d+,"event":"grant","subject":"one","purpose":"marketing","status":"granted","at":"[^"]+","event_id":(?:\d+|null)\}"/,
	'the payload has the documented form');
my $relay_pid = senders()->{one};
isnt($relay_pid, $writer_pid, 'the committing session did not send it itself');
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'consent notify relay' AND datname = 'postgres'",
		't'),
	'a relay (backend_type "consent notify relay") serves the database');

#
# Rolled back, rolled-back subtransaction, prepared: nothing announced; the
# outbox has the committed and the prepared change.
#
$writer->query_safe(
	q{BEGIN;
	SELECT consent.grant('rolled-back', 'marketing');
	ROLLBACK;
	BEGIN;
	SAVEPOINT s;
	SELECT consent.grant('sub-rolled-back', 'marketing');
	ROLLBACK TO s;
	SELECT consent.grant('kept', 'marketing');
	COMMIT;
	BEGIN;
	SELECT consent.grant('prepared', 'marketing');
	PREPARE TRANSACTION 'p1';
	COMMIT PREPARED 'p1';
	SELECT consent.grant('marker', 'marketing');});
ok(hear($listener, \$heard, qr/"subject":"marker"/), 'the change after them is announced');
like($heard, qr/"subject":"kept"/, 'a committed change of a transaction with a rolled-back subtransaction is announced');
unlike($heard, qr/"subject":"(?:sub-)?rolled-back"/, 'rolled-back changes are not');
unlike($heard, qr/"subject":"prepared"/, 'a prepared transaction announces nothing');
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(subject, ',' ORDER BY id) FROM consent.outbox WHERE subject IN ('rolled-back', 'sub-rolled-back', 'kept', 'prepared')"),
	'kept,prepared',
	'the outbox has the committed and the prepared change');

#
# Concurrent writers: every outbox row announced exactly once.
#
$writer->query_safe("SELECT consent.grant('warm', 'marketing')");
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'consent notify relay' AND datname = 'postgres'")
  or die "no relay before the concurrent writers";
$heard = '';
$node->pgbench(
	'--no-vacuum --client=2 --transactions=300',
	0,
	[qr{processed: 600/600}],
	[qr{^$}],
	'two clients write 600 changes',
	{
		'024_relay_grant' => q{
\set s random(1, 100)
SELECT consent.grant('c' || :s, 'marketing');
}
	});
heard_all('c', 'two concurrent writers');
# Sent by one process, the relay, not by the two pgbench sessions (which
# would have sent about 300 each); the very first may precede the relay.
my %by_pid;
$by_pid{$1}++ while $heard =~ /"subject":"c\d+".*? received from server process with PID (\d+)/g;
my ($top) = sort { $by_pid{$b} <=> $by_pid{$a} } keys %by_pid;
cmp_ok($by_pid{$top}, '>=', 598, "one process sent $by_pid{$top} of the 600 (the relay)");

#
# A transaction whose notifications take more than half of the relay's
# buffer (64kB here) sends them itself, all of them.
#
$heard = '';
$writer->query_safe(
	"SELECT count(consent.grant('big' || g, 'marketing')) FROM generate_series(1, 400) g");
ok(hear($listener, \$heard, qr/"subject":"big400"/), 'the large transaction is announced');
my $s = senders();
is(scalar(grep { /^big\d+$/ } keys %$s), 400, 'all 400 of its changes');
is(scalar(grep { $s->{$_} eq $writer_pid } grep { /^big\d+$/ } keys %$s),
	400, 'sent by the committing session itself');

#
# SIGTERM: the relay sends what it holds before it exits; later changes
# get a new relay.
#
$heard = '';
my $script = $node->basedir . '/relay_terminate.sql';
append_to_file($script, "\\set s random(1, 100)\nSELECT consent.grant('t' || :s, 'marketing');\n");
my ($pgb_out, $pgb_err) = ('', '');
my $pgb = IPC::Run::start(
	[
		'pgbench', '--no-vacuum', '--client=2', '--time=4', '-f', $script,
		'-h', $node->host, '-p', $node->port, 'postgres'
	],
	'>', \$pgb_out, '2>', \$pgb_err);
usleep(1_000_000);
$relay_pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'consent notify relay' AND datname = 'postgres'");
like($relay_pid, qr/^\d+$/, 'a relay serves the two writing clients');
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($relay_pid)"),
	't', 'the relay is terminated while two clients write');
$pgb->finish;
like($pgb_out, qr/number of failed transactions: 0/, 'no write failed') or diag($pgb_err);
heard_all('t', 'around a terminated relay');
isnt(
	$node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'consent notify relay' AND datname = 'postgres'"),
	$relay_pid,
	'the terminated relay is gone');

#
# A relay waits for commits that have reserved room in its buffer: one held
# up by synchronous replication (after its commit record, before it hands
# over its notifications) keeps an idle relay alive, and on SIGTERM the
# relay waits for it before it exits.
#
$node->safe_psql('postgres', "ALTER SYSTEM SET synchronous_standby_names = 'nobody'");
$node->reload;
usleep(2_000_000);    # the checkpointer publishes the setting to committers
# a change committed locally makes sure a relay runs (it stays 2 s idle)
$writer->query_safe(
	"SET synchronous_commit = local; SELECT consent.grant('s0', 'marketing'); RESET synchronous_commit;");
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'consent notify relay' AND datname = 'postgres'")
  or die "no relay for the synchronous replication test";
$heard = '';
$writer->query_until(qr/sent/, "\\echo sent\nSELECT consent.grant('syncrep', 'marketing');\n");
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event = 'SyncRep'")
  or die "the commit does not wait for synchronous replication";
usleep(3_000_000);
$relay_pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'consent notify relay' AND datname = 'postgres'");
like($relay_pid, qr/^\d+$/, 'a commit that reserved room keeps an idle relay from exiting')
  or die "no relay left to terminate";
$node->safe_psql('postgres', "SELECT pg_terminate_backend($relay_pid)");
usleep(500_000);
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE pid = $relay_pid"),
	'1', 'a terminated relay waits for it');
$node->safe_psql('postgres', "ALTER SYSTEM RESET synchronous_standby_names");
$node->reload;
ok(hear($listener, \$heard, qr/"subject":"syncrep"/), 'the held-up commit is announced once it completes');
is(senders()->{syncrep}, $relay_pid, 'by the terminated relay, before it exited');
$writer->query_safe('SELECT 1');    # collect the grant's result

#
# An idle relay exits; DROP DATABASE right after writes is not held up.
#
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'consent notify relay'"),
	'an idle relay exits');

$node->safe_psql('postgres', 'CREATE DATABASE db2');
$node->safe_psql('db2', 'CREATE EXTENSION consent');
$node->safe_psql('db2', "SELECT consent.define_purpose('marketing', 'Marketing')");
$node->safe_psql('db2', "SELECT consent.grant('d' || g, 'marketing') FROM generate_series(1, 10) g");
my $admin = $node->background_psql('postgres');
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'consent notify relay' AND datname = 'db2'"),
	'a relay is connected to db2');
my $t0 = time();
$admin->query_safe('DROP DATABASE db2');
my $took = time() - $t0;
cmp_ok($took, '<', 5, sprintf('DROP DATABASE with its relay running took %.2f s', $took));
$admin->quit;

#
# consent.notify_relays = 0: every transaction sends its own.
#
$listener->quit;
$writer->quit;
$node->append_conf('postgresql.conf', 'consent.notify_relays = 0');
$node->restart;
$listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN consent');
$heard = '';
$writer = $node->background_psql('postgres');
$writer_pid = $writer->query_safe('SELECT pg_backend_pid()');
$writer->query_safe("SELECT consent.grant('norelay', 'marketing')");
ok(hear($listener, \$heard, qr/"subject":"norelay"/), 'with consent.notify_relays = 0 the change is announced');
is(senders()->{norelay}, $writer_pid, 'by the committing session');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'consent notify relay'"),
	'0', 'and no relay runs');
$listener->quit;
$writer->quit;
$node->stop;

#
# Without shared_preload_libraries: the library loads (its restart-only
# settings are not defined) and every transaction sends its own.
#
my $plain = PostgreSQL::Test::Cluster->new('no_preload');
$plain->init;
$plain->start;
$plain->safe_psql('postgres', 'CREATE EXTENSION consent');
$plain->safe_psql('postgres', "SELECT consent.define_purpose('marketing', 'Marketing')");
$listener = $plain->background_psql('postgres');
$listener->query_safe('LISTEN consent');
$heard = '';
$writer = $plain->background_psql('postgres');
$writer_pid = $writer->query_safe('SELECT pg_backend_pid()');
$writer->query_safe("SELECT consent.grant('plain', 'marketing')");
ok(hear($listener, \$heard, qr/"subject":"plain"/), 'without preload the change is announced');
is(senders()->{plain}, $writer_pid, 'by the committing session');
$listener->quit;
$writer->quit;
$plain->stop;

done_testing();
