# pg_dump and restore keep every audit event, chain and seal, and
# verify_audit() passes on the restored database; the restore writes no
# events of its own; the pseudonymisation key stays out of the dump; the
# restored trail goes on growing and verifying.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('audit_dump');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'consent'");
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', q{
	CREATE EXTENSION consent;
	SELECT consent.define_purpose('marketing', 'Marketing');
	SELECT consent.define_purpose('marketing.email', 'E-mail', valid_for => '1 year');
	SELECT consent.define_purpose('research', 'Research', 'explicit_consent', requires_confirmation => true);
	SELECT consent.define_purpose('legacy', 'Legacy');
	SELECT consent.publish_notice('privacy', 1, 'Privacy v1', ARRAY['marketing', 'research']::consent.purpose_key[]);
	SELECT consent.publish_notice('privacy', 1, 'Datenschutz v1', ARRAY['marketing', 'research']::consent.purpose_key[], 'de');
	SET consent.actor = 'agent:1';
	SELECT consent.grant('s' || i, 'marketing.email', 'privacy', 'web', 'signup',
						 evidence => jsonb_build_object('ip', '192.0.2.' || i, 'n', i * 1.50))
	  FROM generate_series(1, 30) i;
	RESET consent.actor;
	SELECT consent.grant('s' || i, 'research', 'privacy@1') FROM generate_series(1, 10) i;
	SELECT consent.confirm('s' || i, 'research') FROM generate_series(1, 5) i;
	SELECT consent.withdraw('s' || i, 'marketing', 'bye') FROM generate_series(20, 25) i;
	SELECT consent.deny('s' || i, 'legacy') FROM generate_series(1, 3) i;
	SELECT consent.retire_purpose('legacy');
	SELECT consent.erase_subject('s7', 'request #7');
	SELECT consent.seal();
	SELECT consent.grant('s' || i, 'marketing') FROM generate_series(40, 44) i;
	SELECT consent.seal();
	-- an unsealed tail
	SELECT consent.deny('s' || i, 'marketing') FROM generate_series(40, 41) i;
});

# Everything the trail is made of, in a form to compare.
my %snapshot_sql = (
	events   => q{SELECT md5(string_agg(e::text, '|' ORDER BY id)), count(*) FROM consent.audit_events e},
	chains   => q{SELECT md5(string_agg(c::text, '|' ORDER BY subject)), count(*) FROM consent.audit_chains c},
	seals    => q{SELECT md5(string_agg(s::text, '|' ORDER BY id)), count(*) FROM consent.seals s},
	rollup   => q{SELECT md5(string_agg(r::text, '|' ORDER BY day, purpose, action)), count(*) FROM consent.activity_rollup r},
	records  => q{SELECT md5(string_agg(r::text, '|' ORDER BY subject, purpose_id)), count(*) FROM consent.records r},
	sequence => q{SELECT last_value || '/' || is_called FROM consent.audit_events_id_seq},
);
my %src;
$src{$_} = $node->safe_psql('src', $snapshot_sql{$_}) for keys %snapshot_sql;
like($src{events}, qr/\|75$/, 'the source trail holds the 75 events written above');
is($node->safe_psql('src', 'SELECT ok FROM consent.verify_audit()'), 't', 'the source trail verifies');

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $key = $node->safe_psql('src', q{SELECT encode(key, 'hex') FROM consent.audit_key});

# Custom format and pg_restore; plain format and psql.
$node->command_ok([ 'pg_dump', '-Fc', '-f', "$tmp/src.dump", '-d', $node->connstr('src') ],
	'pg_dump -Fc');
$node->command_ok([ 'pg_dump', '-Fp', '-f', "$tmp/src.sql", '-d', $node->connstr('src') ],
	'pg_dump -Fp');
$node->safe_psql('postgres', 'CREATE DATABASE dst');
$node->safe_psql('postgres', 'CREATE DATABASE dst_plain');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('dst'), "$tmp/src.dump" ],
	'pg_restore');
$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', "$tmp/src.sql", '-d', $node->connstr('dst_plain') ],
	'psql restores the plain dump');

for my $db ('dst', 'dst_plain')
{
	for my $what (sort keys %snapshot_sql)
	{
		is($node->safe_psql($db, $snapshot_sql{$what}), $src{$what},
			"$db: $what identical to the source");
	}
	is($node->safe_psql($db, 'SELECT ok, bad_event_id, bad_seal_id, reason, seals_checked FROM consent.verify_audit()'),
		't||||2', "$db: verify_audit passes, both seals checked");
	isnt($node->safe_psql($db, q{SELECT encode(key, 'hex') FROM consent.audit_key}), $key,
		"$db: a fresh pseudonymisation key, not the source's");
}

# The key is nowhere in the dumps.
my $plain = slurp_file("$tmp/src.sql");
unlike($plain, qr/$key/, 'the plain dump does not contain the key');
unlike($plain, qr/COPY consent\.audit_key/, 'the plain dump has no data for consent.audit_key');
like($plain, qr/COPY consent\.audit_events/, 'the plain dump has the audit events');
my $list = `pg_restore -l $tmp/src.dump`;
unlike($list, qr/TABLE DATA consent audit_key/, 'the custom dump has no data for consent.audit_key');

# The restored trail grows and verifies: new events continue the sequence
# and the chains, a new seal continues the seals.
my $last = $node->safe_psql('dst', 'SELECT max(id) FROM consent.audit_events');
$node->safe_psql('dst', q{
	SELECT consent.grant('s1', 'marketing');
	SELECT consent.grant('newcomer', 'marketing');
	SELECT consent.seal();
});
is($node->safe_psql('dst', "SELECT min(id) FROM consent.audit_events WHERE id > $last"),
	$last + 1, 'new events continue the restored sequence');
is($node->safe_psql('dst', q{SELECT ok, seals_checked FROM consent.verify_audit()}),
	't|3', 'the grown trail verifies with the new seal');
is($node->safe_psql('dst', q{SELECT ok FROM consent.verify_audit('s1')}),
	't', 'a restored chain extended after the restore verifies');

# Erasure works on the restored database (with its own key) ...
$node->safe_psql('dst', q{SELECT consent.erase_subject('s2', 'request #2')});
is($node->safe_psql('dst', q{SELECT ok FROM consent.verify_audit()}), 't',
	'erasure after the restore keeps the trail verifiable');
# ... and pseudonyms differ from the source's until the key is carried over
# (docs/audit.md, "Pseudonymisation key and pg_dump").
my $p_src = $node->safe_psql('src', q{SELECT consent.pseudonym('s7')});
isnt($node->safe_psql('dst_plain', q{SELECT consent.pseudonym('s7')}), $p_src,
	'a restored database pseudonymises with its own key');
$node->safe_psql('dst_plain', qq{
	SET session_replication_role = replica;
	DELETE FROM consent.audit_key;
	INSERT INTO consent.audit_key (key) VALUES (decode('$key', 'hex'));
});
is($node->safe_psql('dst_plain', q{SELECT consent.pseudonym('s7')}), $p_src,
	'with the source key carried over, pseudonyms match the source');
is($node->safe_psql('dst_plain', q{SELECT count(*) FROM consent.audit_events WHERE subject = consent.pseudonym('s7')}),
	'3', 'and find the erased person\'s three events');

$node->stop;
done_testing();
