# consent.has on a logical-replication subscriber stays exact: the apply
# worker fires row triggers only, and the registering row trigger must tell
# a cache kept across statements that consent.records changed.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $pub = PostgreSQL::Test::Cluster->new('publisher');
$pub->init(allows_streaming => 'logical');
$pub->append_conf('postgresql.conf', "shared_preload_libraries = 'consent'\nconsent.databases = ''");
$pub->start;

my $sub = PostgreSQL::Test::Cluster->new('subscriber');
$sub->init;
$sub->append_conf('postgresql.conf', "shared_preload_libraries = 'consent'\nconsent.databases = ''");
$sub->start;

my $setup = q{
	CREATE EXTENSION consent;
	SELECT consent.define_purpose('p', 'P');
};
$pub->safe_psql('postgres', $setup);
$sub->safe_psql('postgres', $setup);
$pub->safe_psql('postgres', q{
	SELECT consent.grant(g, 'p') FROM generate_series(1, 20) g;
	CREATE PUBLICATION consent_pub FOR TABLE consent.records;
});
my $connstr = $pub->connstr . ' dbname=postgres';
$sub->safe_psql('postgres', "CREATE SUBSCRIPTION consent_sub CONNECTION '$connstr' PUBLICATION consent_pub");
$pub->wait_for_catchup('consent_sub');
$sub->poll_query_until('postgres',
	q{SELECT count(*) = 20 FROM consent.records}) or die 'initial copy did not arrive';

# A reader on the subscriber builds its caches (a bulk map from the first
# call) and keeps them across statements.
my $reader = $sub->background_psql('postgres');
my $count = q{SET consent.bulk_threshold = 0;
	SELECT count(*) FILTER (WHERE consent.has(g, 'p')) FROM generate_series(1, 20) g;};
is($reader->query_safe($count), '20', 'subscriber: 20 allowed');
is($reader->query_safe($count), '20', 'again, from the kept cache');

$pub->safe_psql('postgres', q{SELECT consent.withdraw(7, 'p')});
$pub->wait_for_catchup('consent_sub');
is($sub->safe_psql('postgres', q{SELECT status FROM consent.records WHERE subject = '7'}),
	'withdrawn', 'the withdrawal was replicated');
is($reader->query_safe($count), '19', 'the reader sees the replicated withdrawal');
is($reader->query_safe(q{SELECT consent.has(7::bigint, 'p')}), 'f', 'subject 7 refused');

$pub->safe_psql('postgres', q{SELECT consent.grant(21, 'p')});
$pub->wait_for_catchup('consent_sub');
is($reader->query_safe(q{SELECT consent.has(21::bigint, 'p')}), 't', 'a replicated grant counts');

$reader->quit;
$sub->stop;
$pub->stop;
done_testing();
