# pg_dump of a database that uses consent, restored into a fresh database,
# gives back the same purposes, notices and records: the extension's
# tables are registered with pg_extension_config_dump, so pg_dump writes
# their rows (and the sequences' positions) after CREATE EXTENSION.
#
# Round trips: custom format through pg_restore, plain format through
# psql.  Each restored database must have identical table contents
# (body_sha256 included, recomputed by the generated column), sequences
# that continue after the restored ids, the same answers from consent.has
# and consent.decisions, the same extension members and privileges, and
# working recording functions.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump_restore');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'consent'");
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', 'CREATE EXTENSION consent');

# ---------------------------------------------------------------------
# A registry and choices that touch every column and code path
# ---------------------------------------------------------------------

$node->safe_psql('src', q{
	-- purposes: a three-level hierarchy, every legal basis that matters,
	-- default validity, double opt-in, and a retired branch
	SELECT consent.define_purpose('marketing', 'Marketing', description => 'Offers and news',
								  valid_for => '2 years');
	SELECT consent.define_purpose('marketing.email', 'Marketing by e-mail');
	SELECT consent.define_purpose('marketing.email.weekly', 'Weekly digest',
								  requires_confirmation => true);
	SELECT consent.define_purpose('marketing.sms', 'Marketing by SMS');
	SELECT consent.define_purpose('analytics', 'Product analytics', 'legitimate_interests');
	SELECT consent.define_purpose('billing', 'Billing', 'contract');
	SELECT consent.define_purpose('health', 'Health data', 'explicit_consent');
	SELECT consent.define_purpose('legacy', 'Legacy programme');
	SELECT consent.define_purpose('legacy.sms', 'Legacy SMS');

	-- notices: two versions of "privacy" in two locales, the second
	-- material; a second key
	SELECT consent.publish_notice('privacy', 1, 'We process your data for marketing.',
								  '{marketing,analytics}');
	SELECT consent.publish_notice('privacy', 1, 'Wir verarbeiten Ihre Daten für Marketing.',
								  '{marketing,analytics}', 'de');
	-- a grant under version 1, superseded by the material version 2 below
	SELECT consent.grant('bob', 'marketing', notice => 'privacy@1');
	SELECT consent.publish_notice('privacy', 2, 'We process your data for marketing and health.',
								  '{marketing,analytics,health}', 'en', true);
	SELECT consent.publish_notice('privacy', 2, 'Wir verarbeiten Ihre Daten für Marketing und Gesundheit.',
								  '{marketing,analytics,health}', 'de', true);
	SELECT consent.publish_notice('legacy-terms', 1, 'Legacy programme terms.', '{legacy}');

	-- text subjects
	SELECT consent.grant('alice', 'marketing', notice => 'privacy@2', method => 'web_form',
						 source => 'signup-page',
						 evidence => '{"ip": "192.0.2.10", "user_agent": "Mozilla/5.0", "form": 7}');
	SELECT consent.grant('alice', 'health', notice => 'privacy', expires_at => '2999-12-31 00:00+00');
	SELECT consent.grant('alice', 'marketing.email.weekly', source => 'newsletter-box');
	SELECT consent.confirm('alice', 'marketing.email.weekly', evidence => '{"link": "c0ffee"}');
	SELECT consent.deny('alice', 'marketing.sms', method => 'paper');
	SELECT consent.grant('bob', 'marketing.email.weekly');				-- stays pending
	SELECT consent.deny('bob', 'analytics', evidence => '{"objection": "email of 2024-05-01"}');
	SELECT consent.grant('carol', 'marketing');
	SELECT consent.grant('carol', 'marketing.email');
	SELECT consent.withdraw('carol', 'marketing', 'no longer interested');	-- and the child
	SELECT consent.grant('dave', 'legacy.sms', notice => 'legacy-terms@1');
	SELECT consent.withdraw('erin', 'marketing');							-- nothing granted before

	-- bigint subjects
	SELECT consent.grant(1001, 'marketing.email', evidence => '{"crm": "import-17"}');
	SELECT consent.deny(1002, 'marketing');
	SELECT consent.grant(1003, 'marketing');
	SELECT consent.withdraw_all(1003, 'account closed');

	-- uuid subjects
	SELECT consent.grant('6f1c2a3e-8d4b-4f6a-9e2d-1b3c5d7e9f01'::uuid, 'marketing', notice => 'privacy@2');
	SELECT consent.grant('6f1c2a3e-8d4b-4f6a-9e2d-1b3c5d7e9f01'::uuid, 'marketing.email.weekly');
	SELECT consent.withdraw('0b9e6f62-6d3a-4c55-a3f2-2a1d9b7c4e11'::uuid, 'analytics');

	-- retire a branch that has history
	SELECT consent.retire_purpose('legacy');
});

my @subjects = (
	'alice', 'bob', 'carol', 'dave', 'erin', 'nobody', '1001', '1002', '1003',
	'6f1c2a3e-8d4b-4f6a-9e2d-1b3c5d7e9f01', '0b9e6f62-6d3a-4c55-a3f2-2a1d9b7c4e11');
my $subjects = "ARRAY['" . join("', '", @subjects) . "']";

# Everything that must survive the round trip, one string per aspect.
my %aspects = (
	'purposes rows' => q{
		SELECT string_agg(p::text, E'\n' ORDER BY p.id) FROM consent.purposes p},
	'notices rows (body_sha256 included)' => q{
		SELECT string_agg(n::text, E'\n' ORDER BY n.id) FROM consent.notices n},
	'records rows' => q{
		SELECT string_agg(r::text, E'\n' ORDER BY r.subject, r.purpose_id) FROM consent.records r},
	'sequence positions' => q{
		SELECT (SELECT last_value || ' ' || is_called FROM consent.purposes_id_seq) || ' / ' ||
			   (SELECT last_value || ' ' || is_called FROM consent.notices_id_seq)},
	'consent.has for every subject and purpose' => qq{
		SELECT string_agg(s || ' ' || p.key || ' ' || consent.has(s, p.key), E'\\n' ORDER BY s, p.key)
		  FROM unnest($subjects) AS s, consent.purposes p},
	'consent.has for bigint and uuid subjects' => q{
		SELECT string_agg(x::text, ' ') FROM (VALUES
			(consent.has(1001::bigint, 'marketing.email')),
			(consent.has(1002::bigint, 'marketing.email')),
			(consent.has('6f1c2a3e-8d4b-4f6a-9e2d-1b3c5d7e9f01'::uuid, 'marketing.email.weekly')),
			(consent.has('0b9e6f62-6d3a-4c55-a3f2-2a1d9b7c4e11'::uuid, 'analytics'))) AS v(x)},
	'consent.decisions for every subject' => qq{
		SELECT string_agg(s || ' ' || d::text, E'\\n' ORDER BY s, d.purpose)
		  FROM unnest($subjects) AS s, LATERAL consent.decisions(s) AS d},
	'consent.status for every subject and purpose' => qq{
		SELECT string_agg(s || ' ' || p.key || ' ' || coalesce(consent.status(s, p.key)::text, '-'),
						  E'\\n' ORDER BY s, p.key)
		  FROM unnest($subjects) AS s, consent.purposes p},
	'extension version and members' => q{
		SELECT e.extversion || E'\n' ||
			   string_agg(pg_describe_object(d.classid, d.objid, d.objsubid), E'\n'
						  ORDER BY pg_describe_object(d.classid, d.objid, d.objsubid))
		  FROM pg_extension e
		  JOIN pg_depend d ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
						  AND d.deptype = 'e'
		 WHERE e.extname = 'consent'
		 GROUP BY e.extversion},
	'privileges on functions, tables and the schema' => q{
		SELECT (SELECT string_agg(p.oid::regprocedure::text || ' ' || coalesce(p.proacl::text, '-'),
								  E'\n' ORDER BY p.oid::regprocedure::text)
				  FROM pg_proc p WHERE p.pronamespace = 'consent'::regnamespace) || E'\n' ||
			   (SELECT string_agg(c.relname || ' ' || coalesce(c.relacl::text, '-'), E'\n' ORDER BY c.relname)
				  FROM pg_class c WHERE c.relnamespace = 'consent'::regnamespace) || E'\n' ||
			   (SELECT nspacl::text FROM pg_namespace WHERE nspname = 'consent')},
	'extension configuration' => q{
		SELECT array_agg(c::regclass::text ORDER BY c::regclass::text)::text
		  FROM pg_extension e, unnest(e.extconfig) AS c WHERE e.extname = 'consent'},
);

my %src;
$src{$_} = $node->safe_psql('src', $aspects{$_}) for keys %aspects;

# The fixture means something: every kind of answer is represented.
like($src{'records rows'}, qr/^\(alice,.*,granted,.*192\.0\.2\.10.*Mozilla/m, 'src: evidence stored');
like($src{'consent.status for every subject and purpose'}, qr/^bob marketing\.email\.weekly pending$/m,
	'src: a pending double opt-in');
like($src{'consent.has for every subject and purpose'}, qr/^bob marketing false$/m,
	'src: a grant under a superseded notice version does not count');
like($src{'consent.has for every subject and purpose'}, qr/^alice marketing\.email\.weekly true$/m,
	'src: a confirmed double opt-in counts');
like($src{'consent.status for every subject and purpose'}, qr/^carol marketing\.email withdrawn$/m,
	'src: withdrawing a parent withdrew the child grant');
like($src{'consent.status for every subject and purpose'}, qr/^dave legacy\.sms granted$/m,
	'src: history of a retired purpose');
is($node->safe_psql('src', q{SELECT count(*) FROM consent.notices WHERE body_sha256 IS NOT NULL
							   AND body_sha256 = sha256(convert_to(body, current_setting('server_encoding')))}),
	'5', 'src: body_sha256 is the SHA-256 of every body');

my ($max_purpose, $max_notice) = split /\|/,
	$node->safe_psql('src', 'SELECT (SELECT max(id) FROM consent.purposes), (SELECT max(id) FROM consent.notices)');

# Compare a restored database with src, then prove it still works.
sub check_restored
{
	my ($db, $how) = @_;

	for my $aspect (sort keys %aspects)
	{
		my $got = $node->safe_psql($db, $aspects{$aspect});
		is($got, $src{$aspect}, "$how: $aspect identical");
	}

	is($node->safe_psql($db, q{SELECT e.extversion = a.default_version FROM pg_extension e
								JOIN pg_available_extensions a ON a.name = e.extname
								WHERE e.extname = 'consent'}),
		't', "$how: the extension is at the installed default version");

	is($node->safe_psql($db, q{SELECT count(*) FROM consent.notices WHERE body_sha256 IS NOT NULL
								AND body_sha256 = sha256(convert_to(body, current_setting('server_encoding')))}),
		'5', "$how: body_sha256 recomputed for every body");

	my $id = $node->safe_psql($db, q{SELECT consent.define_purpose('marketing.post', 'Marketing by post')});
	cmp_ok($id, '>', $max_purpose, "$how: purposes_id_seq continues after the restored ids");
	my $nid = $node->safe_psql($db,
		q{SELECT consent.publish_notice('privacy', 3, 'Version 3.', '{marketing}')});
	cmp_ok($nid, '>', $max_notice, "$how: notices_id_seq continues after the restored ids");

	# One statement each: consent.has is STABLE and sees the statement's
	# snapshot, so it must come after the write, not in the same query.
	is($node->safe_psql($db, q{
			SELECT consent.grant('frank', 'marketing.post', notice => 'privacy@3',
								 evidence => '{"ip": "198.51.100.7"}');
			SELECT consent.has('frank', 'marketing.post');
			SELECT consent.withdraw('frank', 'marketing.post', 'changed my mind');
			SELECT consent.has('frank', 'marketing.post');
			SELECT consent.grant(1001, 'marketing.post');
			SELECT consent.withdraw_all(1001);
			SELECT consent.has(1001, 'marketing.email');}),
		"granted\nt\nwithdrawn\nf\ngranted\n2\nf", "$how: recording works");

	my ($code, $stdout, $stderr) = $node->psql($db, q{SELECT consent.publish_notice('privacy', 2, 'x', '{marketing}')});
	like($stderr, qr/version 2 cannot be published|already exists/,
		"$how: restored notices still guard their versions");
	($code, $stdout, $stderr) = $node->psql($db, q{SELECT consent.grant('frank', 'legacy.sms')});
	like($stderr, qr/retired/, "$how: a restored retirement still refuses grants");
	return;
}

my $tmp = PostgreSQL::Test::Utils::tempdir;

# ---------------------------------------------------------------------
# Custom format, pg_restore
# ---------------------------------------------------------------------

my $custom = "$tmp/src.dump";
$node->command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('src'), '-f', $custom ],
	'pg_dump -Fc');
my ($dump_out, $dump_err) = run_command([ 'pg_dump', '-Fc', '-d', $node->connstr('src'), '-f', "$tmp/again.dump" ]);
unlike($dump_err, qr/error/i, 'pg_dump reports no error');
TODO:
{
	# consent.purposes.parent_key references consent.purposes.key.  For an
	# extension's configuration table the constraint exists before the rows
	# are loaded, so pg_dump orders table data by foreign keys and warns
	# about the self-reference.  The restore works (one COPY; the checks
	# run at its end), but every dump of a database using consent prints
	# the warning.
	local $TODO = 'self-referencing foreign key on consent.purposes makes pg_dump warn';
	is($dump_err, '', 'pg_dump prints no warning');
}

$node->command_ok([ 'createdb', '-h', $node->host, '-p', $node->port, 'dst' ], 'createdb dst');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('dst'), $custom ],
	'pg_restore into dst');
check_restored('dst', 'custom format');

# ---------------------------------------------------------------------
# Plain format, psql
# ---------------------------------------------------------------------

my $plain = "$tmp/src.sql";
$node->command_ok([ 'pg_dump', '-Fp', '-d', $node->connstr('src'), '-f', $plain ], 'pg_dump -Fp');
$node->command_ok([ 'createdb', '-h', $node->host, '-p', $node->port, 'dst_plain' ], 'createdb dst_plain');
$node->command_ok(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('dst_plain'), '-f', $plain ],
	'psql restores the plain dump into dst_plain');
check_restored('dst_plain', 'plain format');

# The source was only read.
for my $aspect ('purposes rows', 'notices rows (body_sha256 included)', 'records rows')
{
	is($node->safe_psql('src', $aspects{$aspect}), $src{$aspect}, "src: $aspect unchanged by pg_dump");
}

$node->stop;
done_testing();
