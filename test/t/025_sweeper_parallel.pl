# A backlog swept by several processes (consent.sweep_workers): the sweeper
# and its helper expire every record exactly once, each with one audit event
# and one outbox row, the audit trail verifies, and consent.sweeper_status
# shows one sweeper with the helper's counts folded in.  With
# consent.sweep_workers = 1 no helper starts; when no background worker
# slot is free the sweeper does the helper's part itself.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('parallel');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'consent'
consent.databases = ''
consent.sweep_interval = '1h'
consent.sweep_batch_size = 100
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION consent');
$node->safe_psql('postgres',
	"SELECT consent.define_purpose('a', 'A'), consent.define_purpose('b', 'B')");

# $people people with a grant of each purpose, expired; the two records of
# a person expire one second apart, so batches cut between them.
sub add_expired
{
	my ($prefix, $people) = @_;
	$node->safe_psql(
		'postgres', qq{
		INSERT INTO consent.records (subject, purpose_id, status, expires_at)
		SELECT '$prefix' || g, p.id, 'granted',
			   now() - interval '1 day' + interval '2 seconds' * g + interval '1 second' * p.id
		  FROM generate_series(1, $people) g, consent.purposes p});
}

# One sweep now: a new value of consent.databases starts a cycle at once.
# Returns the log written meanwhile.
sub sweep_once
{
	my ($expect) = @_;
	my $offset = -s $node->logfile;
	$node->adjust_conf('postgresql.conf', 'consent.databases', "'*'");
	$node->reload;
	$node->wait_for_log(
		qr/LOG:  consent sweeper: database "postgres": $expect records expired.*\n(?:.*DETAIL:.*\n)?/,
		$offset);
	$node->adjust_conf('postgresql.conf', 'consent.databases', "''");
	$node->reload;
	$node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type IN ('consent sweeper', 'consent sweep helper')"
	) or die "sweeper still running";
	return slurp_file($node->logfile, $offset);
}

# Each record of the people "prefix" expired once, with one outbox row and
# one audit event; the trail verifies.
sub check_exactly_once
{
	my ($prefix, $records, $what) = @_;
	is( $node->safe_psql(
			'postgres', qq{
			SELECT count(*) FILTER (WHERE r.status = 'expired') || ' expired, ' ||
				   count(*) FILTER (WHERE (SELECT count(*) FROM consent.outbox o
										   WHERE o.subject = r.subject AND o.purpose = p.key::text
											 AND o.event = 'expire') = 1) || ' with one outbox row, ' ||
				   count(*) FILTER (WHERE (SELECT count(*) FROM consent.audit_events e
										   WHERE e.subject = r.subject AND e.purpose = p.key::text
											 AND e.action = 'expire') = 1) || ' with one audit event'
			  FROM consent.records r JOIN consent.purposes p ON p.id = r.purpose_id
			 WHERE r.subject LIKE '$prefix%'}),
		"$records expired, $records with one outbox row, $records with one audit event",
		"$what: every record expired once, with one outbox row and one audit event");
	is( $node->safe_psql('postgres',
			"SELECT ok::text || coalesce(' ' || reason, '') FROM consent.verify_audit()"),
		'true', "$what: verify_audit() passes");
}

#
# Two processes (the default).
#
is($node->safe_psql('postgres', 'SHOW consent.sweep_workers'), '2', 'consent.sweep_workers is 2 by default');
add_expired('x', 6000);
my $seals_before = $node->safe_psql('postgres', 'SELECT count(*) FROM consent.seals');
my $log = sweep_once(12000);
like($log, qr/DETAIL:  1 sweep helper expired \d+ of the records; the sweeper.s own part took \d+ ms, then it waited \d+ ms for its helper\./, 'a helper took part');
my ($helped) = $log =~ /DETAIL:  1 sweep helper expired (\d+) of the records;/;
$helped //= 0;
cmp_ok($helped, '>', 0, "the helper expired records ($helped of 12000)");
cmp_ok($helped, '<', 12000, 'and the sweeper did too');
unlike($log, qr/ERROR|deadlock/, 'no error, no deadlock');
check_exactly_once('x', 12000, 'two processes');
# at batch size 100 the sweeper seals every 5000 expiries (the mark is
# passed with thousands to go), and at the end
cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM consent.seals') - $seals_before,
	'>=', 2, 'the sweep sealed while the helper wrote, and at its end');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) || ' ' || sum(last_expired) || ' ' || bool_and(state = 'idle') FROM consent.sweeper_status WHERE database = 'postgres'"
	),
	'1 12000 true',
	'consent.sweeper_status: one sweeper, with the helper\'s count folded in');

#
# One process.
#
$node->append_conf('postgresql.conf', 'consent.sweep_workers = 1');
add_expired('y', 1000);
$log = sweep_once(2000);
unlike($log, qr/sweep helpers? expired/, 'consent.sweep_workers = 1: no helper');
check_exactly_once('y', 2000, 'one process');

#
# A batch of a second or more is logged, with its statement.
#
$node->safe_psql(
	'postgres', q{
	CREATE FUNCTION public.slow_expiry() RETURNS trigger LANGUAGE plpgsql AS
	  $$ BEGIN IF NEW.subject = 'slow1' THEN PERFORM pg_sleep(1.2); END IF; RETURN NEW; END $$;
	CREATE TRIGGER slow_expiry BEFORE UPDATE ON consent.records
	  FOR EACH ROW EXECUTE FUNCTION public.slow_expiry();});
add_expired('slow', 1);
$log = sweep_once(2);
like(
	$log,
	qr/LOG:  consent sweeper: database "postgres": a transaction took \d+ ms\n.*DETAIL:  Statement: SELECT expired, last_expires_at, seen FROM consent\.expire_batch/,
	'a transaction of over a second is logged with its statement');
$node->safe_psql('postgres',
	'DROP TRIGGER slow_expiry ON consent.records; DROP FUNCTION public.slow_expiry()');

#
# No free background worker slot for the helper: the launcher and the
# sweeper take both.
#
$node->adjust_conf('postgresql.conf', 'consent.sweep_workers', '2');
# three slots: the logical replication launcher, ours, and the sweeper
$node->append_conf('postgresql.conf', 'max_worker_processes = 3');
$node->restart;
add_expired('z', 1000);
$log = sweep_once(2000);
like(
	$log,
	qr/LOG:  consent sweeper: database "postgres": no free background worker slot for 1 of 1 sweep helpers/,
	'no slot for the helper is logged');
check_exactly_once('z', 2000, 'no slot for the helper');

$node->stop;
done_testing();
