# Static files arrive byte-exact: small text, 1 KiB and 10 MiB of random
# bytes, each on a new connection, compared with the files on disk.
use strict;
use warnings FATAL => 'all';
use FindBin;
use lib "$FindBin::Bin/../lib";

use Apache::Test;
use MpmTest qw(docroot slurp first_difference check);

my @files = qw(/index.html /small.txt /1k.bin /10m.bin);
plan tests => 2 * @files;

for my $path (@files) {
    my $want = slurp(docroot() . $path);
    my $resp = eval { MpmTest::Conn->new->get($path) };
    check($resp ? $resp->{status} : "error: $@", 200, "GET $path: status");
    check($resp ? first_difference($resp->{body}, $want) // 'same' : 'no response',
          'same', "GET $path: body equals the file");
}
