# 50 requests sent in one write on one connection are answered in order,
# each with the body of its own request.
use strict;
use warnings FATAL => 'all';
use FindBin;
use lib "$FindBin::Bin/../lib";

use Apache::Test;
use MpmTest qw(docroot slurp first_difference get_request check);

plan tests => 2;

my @paths = map { ('/small.txt', '/1k.bin', '/')[$_ % 3] } 0 .. 49;
my $docroot = docroot();
my %body = map { my $p = $_; $p => slurp($docroot . ($p eq '/' ? '/index.html' : $p)) } @paths;

my $conn = MpmTest::Conn->new;
$conn->send(join '', map { get_request($_) } @paths);
my ($done, $error) = (0, undef);
for my $i (0 .. $#paths) {
    my $path = $paths[$i];
    my $resp = eval { $conn->read_response };
    if (!$resp) { $error = "pipelined response $i ($path): $@"; last }
    if ($resp->{status} != 200) { $error = "pipelined response $i ($path): status $resp->{status}"; last }
    if (my $d = first_difference($resp->{body}, $body{$path})) {
        $error = "pipelined response $i ($path): body $d"; last;
    }
    $done++;
}
check($error // 'none', 'none', 'pipelined responses in order and complete');
check($done, 50, 'pipelined responses');
