# 1,000 requests on one keep-alive connection: small and 1 KiB files in
# turn, each answered in full, none with "Connection: close". The client
# never reconnects, so a close by the server at any point fails the test.
use strict;
use warnings FATAL => 'all';
use FindBin;
use lib "$FindBin::Bin/../lib";

use Apache::Test;
use MpmTest qw(docroot slurp check kept_alive_gets);

plan tests => 2;

my $docroot = docroot();
my %body = map { $_ => slurp("$docroot$_") } '/small.txt', '/1k.bin';
my $conn = MpmTest::Conn->new;
my ($done, $error) = kept_alive_gets($conn, 1000, \%body, '');
check($error // 'none', 'none', 'every request answered in full on the kept-alive connection');
check($done, 1000, 'requests answered on one connection');
