# Caches kept across statements stay exact across a restart: a prepared
# transaction that wrote consent state before the restart registered in a
# ring that the restart wiped, and must still invalidate caches when it
# commits afterwards.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('cache_restart');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'consent'
max_prepared_transactions = 5
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION consent;
	SELECT consent.define_purpose('mkt', 'Marketing');
	SELECT consent.grant(g, 'mkt') FROM generate_series(1, 50) g;
});

# Withdraw subject 7 in a prepared transaction, then restart.
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT consent.withdraw(7, 'mkt');
	PREPARE TRANSACTION 'w7';
});
$node->restart;

# One session builds its caches (bulk map from the first call) while the
# prepared transaction is still open, then asks again after it commits.
my $reader = $node->background_psql('postgres');
my $count = q{SET consent.bulk_threshold = 0;
	SELECT count(*) FILTER (WHERE consent.has(g, 'mkt')) FROM generate_series(1, 50) g;};
is($reader->query_safe($count), '50', 'before COMMIT PREPARED: all 50 allowed');
is($reader->query_safe($count), '50', 'again: still 50 (the cache may be reused)');

$node->safe_psql('postgres', q{COMMIT PREPARED 'w7'});
is($reader->query_safe($count), '49', 'after COMMIT PREPARED: the withdrawal counts');
is($reader->query_safe(q{SELECT consent.has(7::bigint, 'mkt')}), 'f', 'subject 7 refused');

# A withdrawal committed normally after the restart is seen too.
$node->safe_psql('postgres', q{SELECT consent.withdraw(8, 'mkt')});
is($reader->query_safe($count), '48', 'a later withdrawal counts');

$reader->quit;
$node->stop;
done_testing();
