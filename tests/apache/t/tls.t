# TLS 1.2 and TLS 1.3 (mod_ssl on this MPM): for each version, a verified
# handshake, then 1,000 requests on the one TLS connection, answered in full
# and without Connection: close.
use strict;
use warnings FATAL => 'all';
use FindBin;
use lib "$FindBin::Bin/../lib";

use Apache::Test;
use MpmTest qw(docroot slurp port check kept_alive_gets);

plan tests => 2 * 3, need_module 'ssl';

require IO::Socket::SSL;
my $cert = Apache::Test::vars('t_conf') . '/tls/cert.pem';
my $docroot = docroot();
my %body = map { $_ => slurp("$docroot$_") } '/small.txt', '/1k.bin';

for my $version (qw(TLSv1_2 TLSv1_3)) {
    my $conn = eval {
        MpmTest::Conn->new(port => port('tls'), tls => {
            SSL_version         => $version,
            SSL_ca_file         => $cert,
            SSL_verify_mode     => IO::Socket::SSL::SSL_VERIFY_PEER(),
            SSL_hostname        => 'localhost',
            SSL_verifycn_name   => 'localhost',
            SSL_verifycn_scheme => 'http',
        });
    };
    check($conn ? $conn->socket->get_sslversion : "no connection: $@", $version,
          "negotiated protocol version");
    my ($done, $error) = $conn ? kept_alive_gets($conn, 1000, \%body, "$version ") : (0, 'no connection');
    check($error // 'none', 'none', "$version: every request answered on the one connection");
    check($done, 1000, "$version: requests answered on one TLS connection");
}
