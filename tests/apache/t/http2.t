# HTTP/2 (mod_http2 on this MPM), with the nghttp2 client tools:
#  - 100 concurrent streams on one connection (h2load -c 1 -m 100), over TLS
#    (ALPN h2) and cleartext with prior knowledge (h2c);
#  - a connection that starts as HTTP/1.1 and switches with "Upgrade: h2c"
#    (nghttp -u), its response (1 KiB) byte-exact;
#  - 10 MiB downloads over h2 (TLS) and h2c prior knowledge, byte-exact.
# More streams (or a body larger than the 64 KiB stream window) after the
# Upgrade are not tested: with the stock event MPM too, mod_http2 (2.0.42 in
# Debian's 2.4.71) ends an upgraded connection with GOAWAY "timeout" once the
# upgrade request's stream is done or waits for a WINDOW_UPDATE.
use strict;
use warnings FATAL => 'all';
use FindBin;
use lib "$FindBin::Bin/../lib";

use Apache::Test;
use Digest::SHA qw(sha256_hex);
use MpmTest qw(docroot slurp port run_command check);

plan tests => 2 * 4 + 4 + 2, need_module 'http2', 'ssl';

my $tls = 'https://127.0.0.1:' . port('tls');
my $h2c = 'http://127.0.0.1:' . port('h2c');

# h2load: 100 requests, 1 client, up to 100 streams at once.
for my $case (['TLS (h2)', $tls, 'h2'], ['cleartext, prior knowledge (h2c)', $h2c, 'h2c']) {
    my ($what, $base, $proto) = @$case;
    my ($rc, $out, $err) = run_command(qw(h2load -n 100 -c 1 -m 100), "$base/1k.bin");
    my $excerpt = join "\n", grep { /protocol|requests:|status codes|traffic|error|fail/i } split /\n/, $out;
    check($rc, 0, "$what: h2load exit status\n$out$err");
    check(($out =~ /^Application protocol: (\S+)/m)[0] // 'none', $proto, "$what: protocol\n$excerpt");
    check(($out =~ /^requests: (.*)$/m)[0] // 'none',
          '100 total, 100 started, 100 done, 100 succeeded, 0 failed, 0 errored, 0 timeout',
          "$what: 100 streams on one connection\n$excerpt");
    check(($out =~ /^traffic: .*\((\d+)\) data/m)[0] // 'none', 100 * 1024,
          "$what: response body bytes (100 x 1 KiB)\n$excerpt");
}

my $want = sha256_hex(slurp(docroot() . '/10m.bin'));
my $digest = sub {
    my ($body) = @_;
    length($body) == 10 << 20 ? sha256_hex($body) : 'got ' . length($body) . ' bytes';
};

# Upgrade from HTTP/1.1 (nghttp -v prints the exchange on stdout).
{
    my ($rc, $out, $err) = run_command(qw(nghttp -u -v -n), "$h2c/1k.bin");
    my $head = substr($out, 0, 3000);
    check($rc, 0, "upgrade: nghttp exit status\n$head\n$err");
    check($out =~ /HTTP Upgrade success/ ? 'upgraded' : 'not upgraded', 'upgraded',
          "upgrade: HTTP/1.1 request with Upgrade: h2c answered with 101\n$head");
    check(($out =~ /recv \(stream_id=1\) :status: (\d+)/)[0] // 'none', 200,
          "upgrade: the request is answered on stream 1 over HTTP/2\n$head");
    ($rc, $out, $err) = run_command(qw(nghttp -u), "$h2c/1k.bin");
    check(sha256_hex($out), sha256_hex(slurp(docroot() . '/1k.bin')),
          "upgrade: 1 KiB body byte-exact (got " . length($out) . " bytes)\n$err");
}

# 10 MiB on one stream, byte-exact (nghttp writes the body to stdout).
for my $case (['h2 over TLS', "$tls/10m.bin"], ['h2c prior knowledge', "$h2c/10m.bin"]) {
    my ($what, $uri) = @$case;
    my ($rc, $out, $err) = run_command('nghttp', $uri);
    $err =~ s/^\[WARNING\] Certificate verification failed: hostname mismatch\n//m;
    check($digest->($out), $want, "$what: 10 MiB body digest (exit status $rc)\n$err");
}
