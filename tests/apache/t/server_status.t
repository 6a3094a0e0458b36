# mod_status on this MPM: /server-status?auto names the event MPM and shows
# the worker counts, process count, scoreboard and async connection counts
# that follow from the MPM sizing in extra.conf.in (ServerLimit 4,
# ThreadLimit 40, StartServers 2, ThreadsPerChild 25, MaxRequestWorkers 75,
# MinSpareThreads 25, MaxSpareThreads 75).
use strict;
use warnings FATAL => 'all';
use FindBin;
use lib "$FindBin::Bin/../lib";

use Apache::Test;
use MpmTest qw(server_status wait_until check);

plan tests => 11, need_module 'status';

my $int = sub { my ($s, $k) = @_; defined $s->{$k} && $s->{$k} =~ /^\d+$/ ? $s->{$k} : undef };

# Children start their threads asynchronously, and the suite's earlier tests
# may have left a third process: wait until every live process has all its
# 25 threads counted.
my $status;
wait_until(10, sub {
    $status = eval { server_status() } or return 0;
    my ($idle, $busy, $procs) = map { $int->($status, $_) } qw(IdleWorkers BusyWorkers Processes);
    defined $idle && defined $busy && $procs && $idle + $busy == 25 * $procs;
});
$status ||= {};
my $dump = join ', ', map { "$_: $status->{$_}" } sort keys %$status;
my ($idle, $busy, $procs) = map { $int->($status, $_) // -1 } qw(IdleWorkers BusyWorkers Processes);

check($status->{ServerMPM}, 'event', 'ServerMPM');
check(($procs >= 2 && $procs <= 3) ? 'yes' : "Processes: $procs",
      'yes', 'Processes between StartServers (2) and MaxRequestWorkers/ThreadsPerChild (3)');
check($idle + $busy, 25 * $procs, "IdleWorkers + BusyWorkers = 25 threads x Processes ($dump)");
check($busy >= 1 ? 'yes' : "BusyWorkers: $busy", 'yes',
      'the worker serving the status request is busy');
check($int->($status, 'Stopping'), 0, 'no process stopping');

my $scoreboard = $status->{Scoreboard} // '';
# One slot per thread of MaxRequestWorkers/ThreadsPerChild processes.
check(length $scoreboard, 75, "scoreboard length ($scoreboard)");
check(($scoreboard =~ /^[_SRWKDCLGI.]*$/) ? 'valid' : $scoreboard, 'valid',
      'scoreboard characters');
check(scalar(() = $scoreboard =~ /[^.]/g), $idle + $busy,
      "live scoreboard slots = IdleWorkers + BusyWorkers ($scoreboard)");

# An async MPM (AP_MPMQ_IS_ASYNC) gets the connection counts shown. (Their
# values are not checked: stock event refreshes them only now and then.)
my @async = qw(ConnsTotal ConnsAsyncWriting ConnsAsyncKeepAlive ConnsAsyncClosing);
check(join(' ', map { "$_=" . ($int->($status, $_) // 'missing') } @async) =~ /missing/ ? $dump : 'present',
      'present', "async connection fields (@async)");

# Idle keep-alive connections wait in the MPM's listener, not in a worker.
my $accesses = $int->($status, 'Total Accesses') // 0;
my @idle = map { my $c = MpmTest::Conn->new; $c->get('/small.txt'); $c } 1 .. 5;
# A worker that wrote the last response may not have marked itself idle
# yet when the client has it: look again for a second before judging. The
# first look that finds them all idle decides: a look after it can catch a
# worker closing the connection of the look before (a CI run saw 48 of 50).
my $after = {};
my $idle_workers = -1;
my $all_idle = sub {
    $after = eval { server_status() } || {};
    $idle_workers = $int->($after, 'IdleWorkers') // -1;
    $idle_workers >= ($int->($after, 'Processes') // 0) * 25 - 1;
};
check(wait_until(1, $all_idle) ? 'yes' : "IdleWorkers: $idle_workers",
      'yes', '5 idle keep-alive connections hold no worker');
my $accesses_after = $int->($after, 'Total Accesses') // 0;
check($accesses_after >= $accesses + 6 ? 'yes' : "Total Accesses $accesses -> $accesses_after",
      'yes', 'Total Accesses grows by the requests made');
$_->close for @idle;
