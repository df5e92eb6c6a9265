# The background sweeper on a real cluster: the launcher starts and sweeps
# every database that has the extension, picks up CREATE EXTENSION within an
# interval and stops after DROP EXTENSION, follows SIGHUP, sweeps two
# databases at once, announces changes with NOTIFY, and waits cleanly on a
# bad setting instead of restarting in a loop.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConsentNotify;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('sweeper');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'consent'
consent.sweep_interval = 1
max_worker_processes = 16
max_prepared_transactions = 2
});
$node->start;

# The launcher is up, without a database connection.
$node->wait_for_log(qr/LOG:  consent launcher started/);
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'consent launcher' AND datname IS NULL"),
	'1',
	'one launcher, connected to no database');

# Grants that expired a minute ago, inserted directly as superuser.
sub add_expired
{
	my ($db, $prefix, $n) = @_;
	$node->safe_psql(
		$db, qq{
		INSERT INTO consent.records (subject, purpose_id, status, expires_at)
		SELECT '$prefix' || g, (SELECT id FROM consent.purposes ORDER BY id LIMIT 1), 'granted',
			   now() - interval '1 minute'
		  FROM generate_series(1, $n) g});
}

sub setup_db
{
	my ($db) = @_;
	$node->safe_psql($db, "CREATE EXTENSION consent");
	$node->safe_psql($db, "SELECT consent.define_purpose('marketing', 'Marketing')");
}

sub granted_left
{
	my ($db, $prefix) = @_;
	return $node->safe_psql($db,
		"SELECT count(*) FROM consent.records WHERE subject LIKE '$prefix%' AND status = 'granted'");
}

#
# The sweeper starts and sweeps.
#
my $offset = -s $node->logfile;
setup_db('postgres');
add_expired('postgres', 'a', 10);
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM consent.records WHERE subject LIKE 'a%' AND status = 'granted'")
  or die "the sweeper did not expire the grants";
pass('the sweeper expired the grants of database postgres');
$node->wait_for_log(qr/LOG:  consent sweeper: sweeping database "postgres" every 1 s/, $offset);
pass('the first sweep of a database is logged');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM consent.outbox WHERE event = 'expire' AND subject LIKE 'a%'"),
	'10',
	'one expire event per record in the outbox');
$node->poll_query_until('postgres',
	"SELECT expired >= 10 AND sweeps >= 1 AND last_end IS NOT NULL AND last_error IS NULL FROM consent.sweeper_status WHERE database = 'postgres'"
) or die "sweeper_status does not show the sweep";
pass('consent.sweeper_status shows the sweep');

# A sweep that takes a while shows the sweeper in pg_stat_activity.
$node->safe_psql('postgres', "ALTER SYSTEM SET consent.sweep_batch_size = 50");
$node->reload;
add_expired('postgres', 'b', 20000);
$node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'consent sweeper' AND datname = 'postgres'")
  or die "no consent sweeper seen in pg_stat_activity";
pass('pg_stat_activity shows backend_type "consent sweeper"');
$node->poll_query_until('postgres',
	"SELECT state = 'sweeping' AND pid IS NOT NULL FROM consent.sweeper_status WHERE database = 'postgres'")
  or die "sweeper_status does not show the running sweep";
pass('consent.sweeper_status shows the running sweep and its pid');
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM consent.records WHERE subject LIKE 'b%' AND status = 'granted'")
  or die "the large sweep did not finish";
pass('a sweep of 20000 records in batches of 50 finished');

#
# NOTIFY consent reaches a listener for expiries made by the sweeper.
#
my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN consent');

my $heard = '';

add_expired('postgres', 'n', 1);
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM consent.records WHERE subject = 'n1' AND status = 'granted'")
  or die "n1 not expired";
hear($listener, \$heard, qr/"subject":"n1"/);
like(
	$heard,
	qr/Asynchronous notification "consent" with payload "\{"id":\d+,"event":"expire","subject":"n1","purpose":"marketing","status":"expired","at":"[^"]+","event_id":(?:\d+|null)\}"/,
	'NOTIFY consent carries outbox id, event, subject, purpose, status, time and event id');

# Expiry warnings are announced in the same form.
$heard = '';
$node->safe_psql('postgres',
	"SELECT consent.grant('w1', 'marketing', expires_at => now() + interval '3 days')");
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM consent.outbox WHERE subject = 'w1' AND event = 'warning'")
  or die "no warning for w1";
hear($listener, \$heard, qr/"event":"warning","subject":"w1"/);
like(
	$heard,
	qr/payload "\{"id":\d+,"event":"grant","subject":"w1",.*payload "\{"id":\d+,"event":"warning","subject":"w1","purpose":"marketing","status":"granted","at":"[^"]+","event_id":null\}"/s,
	'the grant and its expiry warning are announced');

# What rolled-back, rolled-back-subtransaction and prepared transactions
# send (nothing) is tested in 024_notify_relay.pl.
$listener->quit;

#
# SIGHUP changes the interval.
#
$offset = -s $node->logfile;
$node->safe_psql('postgres', "ALTER SYSTEM SET consent.sweep_interval = '1h'");
$node->reload;
$node->wait_for_log(qr/consent launcher: settings changed/, $offset);
# let a sweep already running finish
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'consent sweeper'");
add_expired('postgres', 'h', 5);
sleep(4);
is(granted_left('postgres', 'h'), '5', 'with a one-hour interval nothing is swept for 4 s');
$node->safe_psql('postgres', "ALTER SYSTEM SET consent.sweep_interval = '1s'");
$node->reload;
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM consent.records WHERE subject LIKE 'h%' AND status = 'granted'")
  or die "not swept after the interval went back to 1 s";
pass('after SIGHUP with a 1 s interval the grants are swept');

#
# CREATE EXTENSION is picked up within an interval; two databases are
# swept at once; DROP EXTENSION stops the sweeping.
#
$node->safe_psql('postgres', 'CREATE DATABASE db2');
$node->safe_psql('postgres', 'CREATE DATABASE db3');
sleep(2);    # a few intervals with no extension in db2 and db3
setup_db('db2');
add_expired('db2', 'c', 5);
$node->poll_query_until('db2',
	"SELECT count(*) = 0 FROM consent.records WHERE subject LIKE 'c%' AND status = 'granted'")
  or die "db2 not swept after CREATE EXTENSION";
pass('CREATE EXTENSION in a new database is picked up');

setup_db('db3');
$node->safe_psql('postgres', "ALTER SYSTEM SET consent.sweep_interval = '1h'");
$node->reload;
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'consent sweeper'");
add_expired('db2', 'd', 20000);
add_expired('db3', 'd', 20000);
$offset = -s $node->logfile;
$node->safe_psql('postgres', "ALTER SYSTEM SET consent.sweep_interval = '1s'");
$node->reload;
$node->poll_query_until('postgres',
	"SELECT count(DISTINCT datname) = 2 FROM pg_stat_activity WHERE backend_type = 'consent sweeper' AND datname IN ('db2', 'db3')"
) or die "db2 and db3 were not swept at the same time";
pass('two databases are swept at once');
$node->poll_query_until('db2',
	"SELECT count(*) = 0 FROM consent.records WHERE subject LIKE 'd%' AND status = 'granted'");
$node->poll_query_until('db3',
	"SELECT count(*) = 0 FROM consent.records WHERE subject LIKE 'd%' AND status = 'granted'");
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(database || ':' || (expired >= 20000)::text, ',' ORDER BY database) FROM consent.sweeper_status"
	),
	'db2:true,db3:true,postgres:true',
	'the status view has one row per database');

$offset = -s $node->logfile;
$node->safe_psql('db3', 'DROP EXTENSION consent CASCADE');
$node->wait_for_log(
	qr/consent sweeper: extension "consent" is no longer installed in database "db3", sweeping it stops/,
	$offset);
pass('DROP EXTENSION stops the sweeping, with a LOG line');
is($node->safe_psql('postgres', "SELECT count(*) FROM consent.sweeper_status WHERE database = 'db3'"),
	'0', 'the status view forgets the database');

#
# A list of databases: only those are swept.
#
$node->safe_psql('postgres', "ALTER SYSTEM SET consent.databases = 'db2'");
$node->reload;
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'consent sweeper'");
add_expired('postgres', 'l', 3);
add_expired('db2', 'l', 3);
$node->poll_query_until('db2',
	"SELECT count(*) = 0 FROM consent.records WHERE subject LIKE 'l%' AND status = 'granted'")
  or die "db2 not swept";
sleep(2);
is(granted_left('postgres', 'l'), '3', 'a database not in consent.databases is not swept');

#
# A bad setting: a clear LOG line and a launcher that waits, no restarts.
#
my $launcher_pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'consent launcher'");
$offset = -s $node->logfile;
$node->safe_psql('postgres', "ALTER SYSTEM SET consent.databases = 'no_such_db'");
$node->reload;
$node->wait_for_log(
	qr/consent launcher: database "no_such_db" named in consent.databases does not exist/,
	$offset);
pass('a database that does not exist is reported');
sleep(3);
is( $node->safe_psql(
		'postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'consent launcher'"),
	$launcher_pid,
	'the launcher keeps waiting, with the same pid');
my $log = slurp_file($node->logfile, $offset);
my $reported = () = $log =~ /no_such_db" named in consent.databases does not exist/g;
is($reported, 1, 'the problem is logged once, not every interval');
unlike($log, qr/consent launcher started/, 'no restart of the launcher');

# Back to every database: swept again.
$node->safe_psql('postgres', "ALTER SYSTEM RESET consent.databases");
$node->reload;
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM consent.records WHERE subject LIKE 'l%' AND status = 'granted'")
  or die "postgres not swept after the setting was fixed";
pass('after fixing the setting, sweeping resumes');

$offset = -s $node->logfile;
$node->stop;
like(slurp_file($node->logfile, $offset), qr/LOG:  consent launcher shutting down/,
	'the launcher logs its stop');

done_testing();
