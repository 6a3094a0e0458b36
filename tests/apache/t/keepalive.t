# 1,000 requests on one keep-alive connection: small and 1 KiB files in
# turn, each answered in full, none with "Connection: close". The client
# never reconnects, so a close by the server at any point fails the test.
use strict;
use warnings FATAL => 'all';
use FindBin;
use lib "$FindBin::Bin/../lib";

use Apache::Test;
use MpmTest qw(docroot slurp first_difference check);

plan tests => 2;

my $docroot = docroot();
my %body = map { $_ => slurp("$docroot$_") } '/small.txt', '/1k.bin';
my $conn = MpmTest::Conn->new;
my ($done, $error) = (0, undef);
for my $i (0 .. 999) {
    my $path = $i % 2 ? '/1k.bin' : '/small.txt';
    my $resp = eval { $conn->get($path) };
    if (!$resp) { $error = "request $i ($path): $@"; last }
    if ($resp->{status} != 200) { $error = "request $i ($path): status $resp->{status}"; last }
    if (my $d = first_difference($resp->{body}, $body{$path})) {
        $error = "request $i ($path): body $d"; last;
    }
    if (lc($resp->{headers}{connection} // '') eq 'close') {
        $error = "request $i ($path): server sent Connection: close"; last;
    }
    $done++;
}
check($error // 'none', 'none', 'every request answered in full on the kept-alive connection');
check($done, 1000, 'requests answered on one connection');
