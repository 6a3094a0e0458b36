# A 10 MiB request body reaches a CGI intact (the CGI answers with the
# SHA-256 of what it read), sent with Content-Length and sent chunked.
use strict;
use warnings FATAL => 'all';
use FindBin;
use lib "$FindBin::Bin/../lib";

use Apache::Test;
use Digest::SHA qw(sha256_hex);
use MpmTest qw(docroot slurp check);

plan tests => 4, need_cgi;

my $body = slurp(docroot() . '/10m.bin');
my $want = sha256_hex($body);

my $resp = eval { MpmTest::Conn->new->post('/cgi-bin/sha256', $body) };
check($resp ? $resp->{status} : "error: $@", 200, 'POST with Content-Length: status');
my ($digest) = $resp ? $resp->{body} =~ /^([0-9a-f]{64})/ : ();
check($digest // "answer: " . ($resp ? $resp->{body} : ''), $want,
         'digest of the 10 MiB body the CGI received (Content-Length)');

# The same body in chunks of 64 KiB (Transfer-Encoding: chunked).
$resp = eval {
    my $conn = MpmTest::Conn->new;
    $conn->send("POST /cgi-bin/sha256 HTTP/1.1\r\nHost: localhost\r\n"
              . "Content-Type: application/octet-stream\r\n"
              . "Transfer-Encoding: chunked\r\n\r\n");
    for (my $off = 0; $off < length $body; $off += 65536) {
        my $chunk = substr $body, $off, 65536;
        $conn->send(sprintf("%x\r\n", length $chunk) . $chunk . "\r\n");
    }
    $conn->send("0\r\n\r\n");
    $conn->read_response;
};
check($resp ? $resp->{status} : "error: $@", 200, 'chunked POST: status');
($digest) = $resp ? $resp->{body} =~ /^([0-9a-f]{64})/ : ();
check($digest // "answer: " . ($resp ? $resp->{body} : ''), $want,
         'digest of the 10 MiB body the CGI received (chunked)');
