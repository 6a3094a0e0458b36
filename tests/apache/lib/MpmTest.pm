package MpmTest;
# Helpers shared by the .t files: a raw HTTP/1.1 client connection (plain or
# TLS) that reads responses in order, so that keep-alive reuse and
# pipelining are exercised exactly as written, and small utilities.
#
# Every client socket connects to 127.0.0.1 (where the test server listens)
# and has 10 s send/receive timeouts, so a stuck server fails a test instead
# of hanging the suite.
use strict;
use warnings FATAL => 'all';

use Exporter 'import';
use Socket qw(SOL_SOCKET SO_RCVTIMEO SO_SNDTIMEO);
use IO::Socket::IP ();
use Apache::Test ();

our @EXPORT_OK = qw(port docroot slurp get_request first_difference
                    server_status wait_until run_command check kept_alive_gets);

use constant IO_TIMEOUT => 10;

# One subtest: passes if $got eq $want. On failure the test name, what was
# received and what was expected go to stderr, which the harness shows even
# without -verbose.
sub check {
    my ($got, $want, $name) = @_;
    local $Test::TestLevel = $Test::TestLevel + 1;
    my $pass = defined $got && $got eq $want;
    Test::ok($pass);
    unless ($pass) {
        my $g = defined $got ? $got : 'undef';
        print STDERR "# FAILED: $name\n#   got:      $g\n#   expected: $want\n";
    }
    return $pass;
}

# Port of the main server, or of the <VirtualHost NAME> of extra.conf.in.
sub port {
    my $vhost = shift;
    local $_;
    my $config = Apache::Test::config();
    return $config->{vars}->{port} unless $vhost;
    my $port = $config->{vhosts}->{$vhost}->{port}
        or die "no port for vhost '$vhost' in the generated configuration\n";
    return $port;
}

sub docroot { local $_; Apache::Test::vars('documentroot') }

sub slurp {
    my $path = shift;
    open my $fh, '<:raw', $path or die "$path: $!";
    local $/;
    my $data = <$fh>;
    return $data;
}

sub get_request {
    my ($path, @headers) = @_;
    return join '', "GET $path HTTP/1.1\r\nHost: localhost\r\n",
        (map { "$_\r\n" } @headers), "\r\n";
}

# undef if equal, else a short description of where $got differs.
sub first_difference {
    my ($got, $want) = @_;
    return undef if $got eq $want;
    my $len = length($got) < length($want) ? length($got) : length($want);
    my $i = 0;
    $i++ while $i < $len && substr($got, $i, 1) eq substr($want, $i, 1);
    return sprintf "got %d bytes, expected %d, first difference at byte %d",
        length($got), length($want), $i;
}

# $count GETs on $conn, of the paths in %$bodies in turn, each to be
# answered 200 in full without "Connection: close". Returns how many were,
# and the first failure (undef if none), prefixed with $label.
sub kept_alive_gets {
    my ($conn, $count, $bodies, $label) = @_;
    my @paths = sort keys %$bodies;
    my $done = 0;
    for my $i (0 .. $count - 1) {
        my $path = $paths[$i % @paths];
        my $at = "${label}request $i ($path)";
        my $resp = eval { $conn->get($path) };
        return ($done, "$at: $@") if !$resp;
        return ($done, "$at: status $resp->{status}") if $resp->{status} != 200;
        if (my $d = first_difference($resp->{body}, $bodies->{$path})) {
            return ($done, "$at: body $d");
        }
        if (lc($resp->{headers}{connection} // '') eq 'close') {
            return ($done, "$at: server sent Connection: close");
        }
        $done++;
    }
    return ($done, undef);
}

# GET /server-status?auto on a fresh connection, parsed into Key => value.
sub server_status {
    my $resp = MpmTest::Conn->new->get('/server-status?auto');
    die "server-status answered $resp->{status}\n" unless $resp->{status} == 200;
    my %status;
    for (split /\r?\n/, $resp->{body}) {
        $status{$1} = $2 if /^([^:]+):\s*(.*?)\s*$/;
    }
    return \%status;
}

# Polls $cond every 50 ms until it returns true or $timeout seconds pass.
sub wait_until {
    my ($timeout, $cond) = @_;
    my $deadline = time + $timeout;
    while (1) {
        my $r = $cond->();
        return $r if $r;
        return 0 if time > $deadline;
        select undef, undef, undef, 0.05;
    }
}

# Runs a command (list form, no shell); returns (exit status, stdout, stderr).
sub run_command {
    my @cmd = @_;
    require File::Temp;
    my $err = File::Temp->new;
    my $pid = open my $fh, '-|';
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        open STDERR, '>', $err->filename or die "stderr: $!";
        exec @cmd or do { print STDERR "exec $cmd[0]: $!\n"; exit 127 };
    }
    binmode $fh;
    my $out = do { local $/; <$fh> } // '';
    close $fh;
    my $rc = $? >> 8;
    return ($rc, $out, slurp($err->filename));
}

package MpmTest::Conn;
use strict;
use warnings FATAL => 'all';
use Socket qw(SOL_SOCKET SO_RCVTIMEO SO_SNDTIMEO);
use Errno qw(EAGAIN EWOULDBLOCK EINTR);

# MpmTest::Conn->new(port => P, tls => { IO::Socket::SSL options }).
# Dies if the connection (or the TLS handshake) fails.
sub new {
    my ($class, %opt) = @_;
    my $port = $opt{port} || MpmTest::port();
    my $sock = IO::Socket::IP->new(
        PeerHost => '127.0.0.1',
        PeerPort => $port,
        Timeout  => MpmTest::IO_TIMEOUT,
    ) or die "connect to 127.0.0.1:$port: $@\n";
    my $tv = pack 'l!l!', MpmTest::IO_TIMEOUT, 0;
    setsockopt $sock, SOL_SOCKET, SO_RCVTIMEO, $tv or die "SO_RCVTIMEO: $!";
    setsockopt $sock, SOL_SOCKET, SO_SNDTIMEO, $tv or die "SO_SNDTIMEO: $!";
    binmode $sock;
    if (my $tls = $opt{tls}) {
        require IO::Socket::SSL;
        IO::Socket::SSL->start_SSL($sock, %$tls)
            or die "TLS handshake with 127.0.0.1:$port: "
                 . IO::Socket::SSL::errstr() . "\n";
    }
    return bless { sock => $sock, buf => '', port => $port }, $class;
}

sub socket { $_[0]{sock} }

sub send {
    my ($self, $bytes) = @_;
    my $off = 0;
    while ($off < length $bytes) {
        my $n = syswrite $self->{sock}, $bytes, 1 << 20, $off;
        if (!defined $n) {
            next if $! == EINTR;
            die "write to the server failed after $off of "
              . length($bytes) . " bytes: $!\n";
        }
        $off += $n;
    }
    return 1;
}

# Reads more bytes into the buffer; dies on EOF or timeout.
sub _fill {
    my $self = shift;
    while (1) {
        my $n = sysread $self->{sock}, $self->{buf}, 65536, length $self->{buf};
        return $n if $n;
        die "connection closed by the server\n" if defined $n;
        next if $! == EINTR;
        if ($! == EAGAIN || $! == EWOULDBLOCK) {
            die "no data from the server for " . MpmTest::IO_TIMEOUT . " s\n";
        }
        # IO::Socket::SSL reports a timed-out read as an SSL WANT_READ.
        if (ref($self->{sock}) =~ /SSL/ && !$!) {
            die "no data from the TLS server for " . MpmTest::IO_TIMEOUT
              . " s (" . IO::Socket::SSL::errstr() . ")\n";
        }
        die "read from the server failed: $!\n";
    }
}

sub _take_line {
    my $self = shift;
    my $at;
    $self->_fill until ($at = index $self->{buf}, "\r\n") >= 0;
    return substr $self->{buf}, 0, $at + 2, '';
}

sub _take {
    my ($self, $len) = @_;
    $self->_fill while length $self->{buf} < $len;
    return substr $self->{buf}, 0, $len, '';
}

# Reads one response: { status, headers => { lc name => value }, body }.
# Body framing: Content-Length, chunked, or until the server closes.
sub read_response {
    my ($self, %opt) = @_;
    my $at;
    $self->_fill until ($at = index $self->{buf}, "\r\n\r\n") >= 0;
    my $head = substr $self->{buf}, 0, $at + 4, '';
    my ($status_line, @lines) = split /\r\n/, $head;
    my ($status) = $status_line =~ m{^HTTP/1\.[01] (\d{3})}
        or die "bad status line '$status_line'\n";
    my %headers;
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
        $headers{lc $k} = exists $headers{lc $k} ? "$headers{lc $k}, $v" : $v;
    }
    my $resp = { status => $status, headers => \%headers, body => '' };
    return $resp if $opt{head} || $status < 200 || $status == 204 || $status == 304;
    if (lc($headers{'transfer-encoding'} // '') eq 'chunked') {
        while (1) {
            my $line = $self->_take_line;
            my ($hex) = $line =~ /^([0-9a-fA-F]+)/
                or die "bad chunk size line '$line'\n";
            my $size = hex $hex;
            if ($size == 0) {
                1 while length($self->_take_line) > 2;   # trailers
                last;
            }
            $resp->{body} .= $self->_take($size);
            $self->_take(2);
        }
    }
    elsif (defined $headers{'content-length'}) {
        $resp->{body} = $self->_take($headers{'content-length'});
    }
    else {
        1 while eval { $self->_fill; 1 };
        $resp->{body} = $self->{buf};
        $self->{buf} = '';
    }
    return $resp;
}

sub get {
    my ($self, $path, @headers) = @_;
    $self->send(MpmTest::get_request($path, @headers));
    return $self->read_response;
}

sub post {
    my ($self, $path, $body, @headers) = @_;
    $self->send("POST $path HTTP/1.1\r\nHost: localhost\r\n"
        . "Content-Type: application/octet-stream\r\n"
        . "Content-Length: " . length($body) . "\r\n"
        . join('', map { "$_\r\n" } @headers) . "\r\n");
    $self->send($body);
    return $self->read_response;
}

sub close {
    my $self = shift;
    close $self->{sock};
}

1;
