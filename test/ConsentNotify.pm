# Shared by the Perl TAP tests that listen on NOTIFY consent.
#
# Notifications go out just after commit (under shared_preload_libraries by
# the database's notify relay), so a test collects what a listening
# background psql session has heard until what it waits for has come.
package ConsentNotify;

use strict;
use warnings;
use Exporter 'import';
use Time::HiRes qw(time usleep);

our @EXPORT = qw(hear);

# hear($listener, \$heard, qr/.../): append what $listener has received
# to $heard until it matches, or 30 s pass; returns whether it matched.
sub hear
{
	my ($listener, $heard, $re) = @_;
	my $until = time() + 30;
	while (1)
	{
		$$heard .= $listener->query_safe('SELECT 1');
		return 1 if $$heard =~ $re;
		return 0 if time() > $until;
		usleep(20_000);
	}
}

1;
