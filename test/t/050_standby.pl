
# consent.has on a hot standby: the same answers as the primary once replay
# has caught up, in both cache modes (index probes and bulk map), before and
# after changes made on the primary, in a standby session that stays open
# across the changes (so that nothing it kept can go stale), and through a
# row-level security policy.

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf(
	'postgresql.conf', qq(
shared_preload_libraries = 'consent'
max_parallel_workers_per_gather = 0
));
$primary->start;
$primary->backup('base');

my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;

# Purposes (opt-in, a child, legitimate interests, contract, one to be
# retired), a notice, 300 people with mixed states: grants with and
# without the notice, refusals, withdrawals, objections, future and past
# expiry.  A table gated for the role clerk.
$primary->safe_psql(
	'postgres', q{
CREATE EXTENSION consent;
SELECT consent.define_purpose('a', 'A');
SELECT consent.define_purpose('a.x', 'A X');
SELECT consent.define_purpose('b', 'B', 'legitimate_interests');
SELECT consent.define_purpose('c', 'C', 'contract');
SELECT consent.define_purpose('d', 'D');
SELECT consent.publish_notice('n', 1, 'Notice v1', '{a,d}');
CREATE TABLE people (id bigint PRIMARY KEY, name text);
INSERT INTO people SELECT g, 'person ' || g FROM generate_series(1, 300) g;
SELECT count(consent.grant(id, 'a', CASE WHEN id % 3 = 0 THEN 'n' END)) FROM people WHERE id % 2 = 0;
SELECT count(consent.deny(id, 'a')) FROM people WHERE id % 7 = 1;
SELECT count(consent.grant(id, 'a.x')) FROM people WHERE id % 5 = 0;
SELECT count(consent.withdraw(id, 'a.x')) FROM people WHERE id % 10 = 0;
SELECT count(consent.deny(id, 'b')) FROM people WHERE id % 4 = 0;
SELECT count(consent.grant(id, 'd', 'n')) FROM people WHERE id % 3 = 1;
SELECT count(consent.grant(id, 'a', expires_at => now() + interval '1 day')) FROM people WHERE id % 11 = 0;
UPDATE consent.records SET expires_at = now() - interval '1 hour'
 WHERE status = 'granted' AND subject::bigint % 13 = 0;
CREATE ROLE clerk;
GRANT SELECT ON people TO clerk;
SELECT consent.protect('people', 'id', 'a', ARRAY['clerk']);
CREATE FUNCTION check_a(subject bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	RETURN consent.has(subject, 'a');
END
$$;
CREATE TABLE other_writes (i integer);
});
$primary->wait_for_catchup($standby);

# Every (person, purpose) answer, as one string of t and f.
my $all_pairs = q{
SELECT count(*) || ' ' || string_agg(CASE WHEN consent.has(s.id, p.key) THEN 't' ELSE 'f' END, ''
									 ORDER BY s.id, p.id)
  FROM people s CROSS JOIN consent.purposes p};
# What clerk sees through the policy.
my $gated = q{
SET ROLE clerk;
SELECT count(*) || ' ' || string_agg(id::text, ',' ORDER BY id) FROM people;
RESET ROLE};

# One session on the standby that stays open for the whole test.
my $sb = $standby->background_psql('postgres');
$sb->query_safe('SET max_parallel_workers_per_gather = 0');

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'standby is in recovery');

sub compare
{
	my ($when) = @_;

	foreach my $threshold (-1, 0)
	{
		my $p = $primary->safe_psql('postgres', "SET consent.bulk_threshold = $threshold; $all_pairs");
		$sb->query_safe("SET consent.bulk_threshold = $threshold");
		my $s1 = $sb->query_safe($all_pairs);
		my $s2 = $sb->query_safe($all_pairs);
		my $fresh = $standby->safe_psql('postgres', "SET consent.bulk_threshold = $threshold; $all_pairs");
		like($p, qr/^1500 [tf]{1500}$/, "$when, threshold $threshold: 300 x 5 answers on the primary");
		is($s1, $p, "$when, threshold $threshold: standby session answers as the primary");
		is($s2, $p, "$when, threshold $threshold: and again in the same standby session");
		is($fresh, $p, "$when, threshold $threshold: a new standby session too");

		my $pg = $primary->safe_psql('postgres', "SET consent.bulk_threshold = $threshold; $gated");
		my $sg = $sb->query_safe("SET consent.bulk_threshold = $threshold; $gated");
		is($sg, $pg, "$when, threshold $threshold: the policy lets clerk see the same rows on the standby");
	}
}

compare('initial state');

# Both answers are not trivially all-true or all-false.
my $initial = $primary->safe_psql('postgres', $all_pairs);
ok($initial =~ /t/ && $initial =~ /f/, 'the data has both answers');
is( $primary->safe_psql(
		'postgres',
		q{SELECT string_agg(consent.has(i::bigint, 'a')::text, ',' ORDER BY i) FROM unnest(ARRAY[2, 6, 8, 10, 22, 26]) i}),
	'true,true,false,true,true,false',
	'known answers on the primary: grant, grant under notice v1, denial, grant, future expiry, past expiry');

# The standby never fires the triggers the cross-statement cache depends
# on: it does not keep a cache across statements.
is($sb->query_safe(q{SELECT consent.cache_info()->>'shared_scope'}),
	'false', 'no cross-statement cache on the standby');

# Change things on the primary: a withdrawal, a grant, a withdraw_all, a
# material notice that supersedes the grants under version 1, and a
# retirement.
$primary->safe_psql(
	'postgres', q{
SELECT consent.withdraw(2::bigint, 'a');
SELECT consent.grant(1::bigint, 'a');
SELECT consent.withdraw_all(20::bigint);
SELECT consent.publish_notice('n', 2, 'Notice v2', '{a,d}', material => true);
SELECT consent.retire_purpose('d');
});
$primary->wait_for_catchup($standby);

compare('after changes');

is( $sb->query_safe(
		q{SELECT string_agg(consent.has(i::bigint, 'a')::text, ',' ORDER BY i) FROM unnest(ARRAY[1, 2, 6, 20]) i}),
	'true,false,false,false',
	'the standby session sees the grant, the withdrawal, the superseded grant, withdraw_all');
is( $sb->query_safe(q{SELECT count(*) FILTER (WHERE consent.has(id, 'd')) FROM people}),
	'0', 'the standby session sees the retirement');

# A REPEATABLE READ transaction on the standby keeps its answer while
# replay goes on, and the next one sees the change.
$sb->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
my $rr_before = $sb->query_safe($all_pairs);
$primary->safe_psql('postgres', q{SELECT consent.withdraw(4::bigint, 'a')});
$primary->wait_for_catchup($standby);
is($sb->query_safe($all_pairs), $rr_before, 'repeatable read on the standby keeps its answer');
$sb->query_safe('COMMIT');
is($sb->query_safe(q{SELECT consent.has(4::bigint, 'a')}), 'f', 'the next transaction sees the withdrawal');
compare('after a withdrawal during a standby transaction');

# A PL/pgSQL function keeps the call state of RETURN consent.has(...) for
# the whole transaction; each READ COMMITTED statement on the standby takes
# a new snapshot.  A writer that commits between two statements must be
# seen by the second, also when the two snapshots have the same xmin and
# xmax: an older transaction (y) stays open and has written (so the standby
# knows it is running), and a newer one (x) completed before the first
# statement.
$sb->query_safe('SET consent.bulk_threshold = 0');
is($sb->query_safe('SELECT check_a(10)'), 't', 'person 10 consents to a');
my $y = $primary->background_psql('postgres');
$y->query_safe('BEGIN');
$y->query_safe('INSERT INTO other_writes VALUES (1)');
my $w = $primary->background_psql('postgres');
$w->query_safe('BEGIN');
$w->query_safe(q{SELECT consent.withdraw(10::bigint, 'a')});
$primary->safe_psql('postgres', 'INSERT INTO other_writes VALUES (2)');
$primary->wait_for_catchup($standby);
$sb->query_safe('BEGIN');
is($sb->query_safe('SELECT check_a(10)'), 't', 'before the withdrawal commits: still t');
$w->query_safe('COMMIT');
$primary->wait_for_catchup($standby);
is($sb->query_safe('SELECT check_a(10)'),
	'f', 'after it commits, the next statement of the same standby transaction says f');
$sb->query_safe('COMMIT');
is($sb->query_safe('SELECT check_a(10)'), 'f', 'and the next transaction too');
$y->query_safe('COMMIT');
$y->quit;
$w->quit;

$sb->quit;
$standby->stop;
$primary->stop;
done_testing();
