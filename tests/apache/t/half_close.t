# A client that sends part of a request head and then closes its sending
# side (shutdown(SHUT_WR), a FIN) gets its answer at once, as with the stock
# event MPM: the server reads the end of the stream and stops waiting for
# the rest of the head. Depending on how far the head got, httpd answers
# 400 (request line complete, header section not) or closes without a
# response (request line incomplete), and it closes cleanly (FIN, no RST).
#
# REGRESSION TEST for a bug found with httpd-tests' t/apache/http_strict.t
# (its "GET / HTTP/1.0\r\r", "GET /#frag HTTP/1.0\r\n" and
# "Host: localhost:80 x\r\n\r" cases): mod_mpm_event_rs kept a partial head
# waiting in the listener until its deadline (mod_reqtimeout's 20 s header
# timeout, or Timeout) instead of seeing the client's FIN, then closed
# without the 400 (an earlier build reset the connection instead). Failed
# with builds before commit 01bdca0 ("a half-closed client goes to a worker
# at once"); passes from that commit on.
use strict;
use warnings FATAL => 'all';
use FindBin;
use lib "$FindBin::Bin/../lib";

use Apache::Test;
use Socket qw(SOL_SOCKET SO_RCVTIMEO SHUT_WR);
use Time::HiRes qw(time);
use IO::Socket::IP ();
use MpmTest qw(port check);

# [what is sent before the FIN, expected status line or 'close']
my @cases = (
    ['GET',                               'close'],
    ["GET / HTTP/1.0\r\r",                'close'],
    ["GET / HTTP/1.0\r\n",                'HTTP/1.1 400 Bad Request'],
    ["GET / HTTP/1.0\r\nHost: localhost\r\n", 'HTTP/1.1 400 Bad Request'],
    # control: a complete request before the FIN is answered
    ["GET /small.txt HTTP/1.0\r\n\r\n",   'HTTP/1.1 200 OK'],
);

plan tests => 2 * @cases;

# Long enough for a loaded machine, far below the 20 s header read timeout.
use constant LIMIT => 5;

for my $case (@cases) {
    my ($req, $want) = @$case;
    (my $shown = $req) =~ s/\r/\\r/g;
    $shown =~ s/\n/\\n/g;
    my $sock = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => port())
        or die "connect: $@";
    setsockopt $sock, SOL_SOCKET, SO_RCVTIMEO, pack('l!l!', LIMIT, 0) or die "SO_RCVTIMEO: $!";
    my $start = time;
    syswrite $sock, $req;
    shutdown $sock, SHUT_WR;
    my ($data, $end) = ('', 'EOF');
    while (1) {
        my $n = sysread $sock, my $buf, 65536;
        if (!defined $n) { $end = $!{ECONNRESET} ? 'reset' : "no EOF within " . LIMIT . " s"; last }
        last if $n == 0;
        $data .= $buf;
    }
    my $took = time - $start;
    my ($status) = $data =~ /^(HTTP\/\S+ \d{3}[^\r\n]*)/;
    my $got = $status // (length $data ? 'unparsable: ' . substr($data, 0, 60) : 'close');
    check($got, $want, sprintf "'%s' then FIN: the answer (after %.1f s, ended by %s)",
                               $shown, $took, $end);
    check($end, 'EOF', sprintf "'%s' then FIN: connection closed cleanly within %d s (took %.1f s)",
                               $shown, LIMIT, $took);
    close $sock;
}
