//! Spreading new connections over the children that share listening sockets.
//!
//! Every child's listener is woken for a new connection and the first to
//! call accept wins: most often the child that was already running. So a
//! burst of connections (a client's connection pool, h2load's ten) tends to
//! land on one child while the other idles, and the connections stay where
//! they were accepted. That matters for long sessions: HTTP/2 connections
//! are served by mod_http2's threads of the child that holds them, and on
//! this project's 2-core benchmark machine one child serves ten of them at
//! 6,000-7,500 requests/s where two children serve 10,000-12,000.
//!
//! So a listener whose child carries clearly more load than the least
//! loaded child still accepting in its bucket leaves new connections to the
//! others for `YIELD_FOR`, then takes the next one whatever the balance: a
//! connection waits at most that long for the yield, even if the other
//! child is slow to take it. Only one child of a bucket yields at a time:
//! when two did, each over the other's load a moment apart, nobody accepted
//! for a while, and new connections per second (the benchmark's scenario 2)
//! fell by a third. Unless the one that yields now carries clearly less
//! than the child that would yield next (`outdated`): in a burst (wrk's 50
//! connections at once) the children take tens of connections a
//! millisecond, one yielded on a view of three against none, and the other
//! took the rest of the burst meanwhile, 40 to 10. So both may yield; but
//! the second keeps its listening sockets, edge-triggered, and weighs the
//! loads again at each connection that arrives: while connections keep
//! arriving it takes them as soon as it no longer carries clearly more, and
//! only connections already all waiting in the backlog wait, at most
//! `YIELD_FOR`. A child that yields alone stops watching the sockets: kept
//! edge-triggered, its listener was woken for every connection it left to
//! the others, and scenario 2 (new connections, where the children yield
//! about once per ten connections) lost a seventh of its requests/s.
//!
//! Load is the work a child has and is about to have: the connections it
//! serves, those waiting for a request head, and those that finished a
//! request less than the dehydration time ago, whose client is likely on its
//! way with the next one (`resting`). Counting those matters when clients
//! reconnect every few hundred milliseconds (MaxKeepAliveRequests) in front
//! of a slow backend: a child's ready connections waiting for a worker are
//! parked as idle, and without them its load looked like the two or three
//! requests in its workers, so connections piled up on whichever child
//! happened to take them, waiting there five times longer than on the
//! other child (issue 18, bench/results/analysis/backends.md). Connections
//! idle for longer (thousands of them cost nothing) and lingering closes
//! do not count.

use std::time::Duration;

use crate::ffi::score::ProcessCounters;

/// How much more load than the least loaded peer a child may carry before
/// it yields: small differences come and go with every request.
pub const SLACK: u32 = 2;

/// How long a child that yields leaves the listening sockets alone. The
/// peer was woken for the same connection; this bounds what yielding can
/// add to a connection's wait if the peer does not take it.
pub const YIELD_FOR: Duration = Duration::from_millis(1);

/// A child's load from its published counters: its connections less those
/// waiting (the scoreboard's keep-alive ones) other than the `busy_soon`
/// ones (waiting for a request head, or resting between requests; see the
/// module doc) and those closing.
pub fn load(c: ProcessCounters, busy_soon: u32) -> u32 {
    let idle = c.keep_alive.saturating_sub(busy_soon);
    c.connections.saturating_sub(idle).saturating_sub(c.lingering_close)
}

/// Whether a child carrying `mine` should leave the next connection to a
/// peer, given the least load of a peer that accepts from the same sockets
/// (`None`: no such peer). `least_peer` reads every other child's slot, once
/// per accepted connection: it is only asked when `mine` is over `SLACK`,
/// below which no peer's load can make a child yield.
pub fn should_yield(mine: u32, least_peer: impl FnOnce() -> Option<u32>) -> bool {
    mine > SLACK && least_peer().is_some_and(|least| mine > least.saturating_add(SLACK))
}

/// Whether a peer that yields while carrying `yielding` has no more reason
/// to than a child carrying `mine`, which then yields as well.
pub fn outdated(yielding: u32, mine: u32) -> bool {
    should_yield(mine, || Some(yielding))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_is_the_connections_being_served_or_starting() {
        let c = ProcessCounters { connections: 5000 + 7, keep_alive: 5000 + 3, lingering_close: 2, ..Default::default() };
        // 5,000 idle keep-alive connections and 2 closing: 3 about to be
        // served (heads, or resting) and 2 in workers.
        assert_eq!(load(c, 3), 5);
        // HTTP/2 sessions parked waiting for client data are load.
        let h2 = ProcessCounters { connections: 10, wait_io: 4, ..Default::default() };
        assert_eq!(load(h2, 0), 10);
        // Counters published at different moments never underflow.
        let odd = ProcessCounters { connections: 1, keep_alive: 3, lingering_close: 2, ..Default::default() };
        assert_eq!(load(odd, 0), 0);
    }

    #[test]
    fn the_peers_are_not_read_within_the_slack() {
        assert!(!should_yield(SLACK, || unreachable!("peers read")));
    }

    #[test]
    fn a_child_alone_never_yields() {
        assert!(!should_yield(1000, || None));
    }

    #[test]
    fn yields_only_beyond_the_slack() {
        assert!(!should_yield(0, || Some(0)));
        assert!(!should_yield(5, || Some(5)));
        assert!(!should_yield(4 + SLACK, || Some(4)));
        assert!(should_yield(5 + SLACK, || Some(4)));
        assert!(!should_yield(3, || Some(9)), "the less loaded child accepts");
        assert!(!should_yield(u32::MAX, || Some(u32::MAX)));
    }

    /// Of two children, at most one yields at any time, so a connection
    /// always has a child that takes it at once: with the same loads in
    /// view, at most one wants to, and a yield is overridden only by a child
    /// that does not yield then.
    #[test]
    fn two_children_never_both_yield() {
        for a in 0..50 {
            for b in 0..50 {
                assert!(!(should_yield(a, || Some(b)) && should_yield(b, || Some(a))), "{a} and {b}");
                assert!(!(outdated(a, b) && should_yield(a, || Some(b))), "{a} yields rightly over {b}");
            }
        }
    }

    #[test]
    fn a_yield_is_outdated_once_the_yielding_child_carries_clearly_less() {
        assert!(!outdated(5, 6), "within the slack: the yield stands");
        assert!(!outdated(3, 3 + SLACK));
        assert!(outdated(3, 4 + SLACK), "the burst went to the other child meanwhile");
        assert!(!outdated(40, 10));
    }
}
