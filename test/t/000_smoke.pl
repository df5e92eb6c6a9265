use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('smoke');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'consent'");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION consent');
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'consent'"), '0.1', 'installed');
$node->stop;
done_testing();
