//! The per-child connection budget. Connections waiting for a request head
//! and idle keep-alive ones hold no worker, so they do not count against
//! the accept limit that protects the workers (AsyncRequestWorkerFactor);
//! what bounds them is this budget of open connections per child (the
//! `ConnectionBudget` directive, by default what the child's descriptor
//! limit allows). When it is full, room is made by closing the waiting
//! connections that made the least progress (head bytes per second, after
//! the first ones) for the longest: a client trickling its head (slowloris)
//! goes before one that sends at a steady pace, and one that sent nothing
//! more (or an idle keep-alive connection) before either. Never one that has just
//! arrived, and never one whose request is complete: those do not wait
//! here (they are in a worker or on their way to one).

use std::time::{Duration, Instant};

use crate::timers::Wait;

/// The waits the budget bounds and may close for room: a request head on
/// its way, or nothing (idle between requests).
pub const WAITS: [Wait; 4] = [Wait::Head, Wait::KeepAlive, Wait::KeepAliveWhole, Wait::Idle];

/// A waiting connection younger than this is never closed for room: a
/// client whose head crosses a slow network is not told from an attacker
/// in its first moments.
pub const MIN_AGE: Duration = Duration::from_secs(1);

/// Descriptors a child needs besides its connections' sockets: listening
/// sockets, logs, pipes, pollsets, and per worker a file being sent and a
/// backend connection or two.
const RESERVED_FDS: u64 = 64;
const RESERVED_PER_WORKER: u64 = 3;

/// Least time between two log lines about connections closed for room.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);

/// `ConnectionBudget` when not set: what the child's soft descriptor limit
/// (RLIMIT_NOFILE) leaves once its own descriptors are set aside, and never
/// less than a connection per worker.
pub fn from_descriptors(nofile: u64, threads_per_child: u32) -> u32 {
    let threads = u64::from(threads_per_child);
    let left = nofile.saturating_sub(RESERVED_FDS + RESERVED_PER_WORKER * threads);
    u32::try_from(left.max(threads)).unwrap_or(u32::MAX)
}

/// How many waiting connections to close before accepting one more, with
/// `open` connections against `budget`: enough to get under it, plus a
/// margin (1/64 of the budget) so that an attack that keeps the budget
/// full does not make every accept look through all waiting connections.
pub fn room_to_make(open: u32, budget: u32) -> usize {
    if open < budget {
        return 0;
    }
    (open - budget) as usize + 1 + (budget / 64) as usize
}

/// A waiting connection that may be closed for room.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<K> {
    pub key: K,
    /// Since when it waits: accepted, or idle since its last response, or
    /// (a keep-alive connection) since the first byte of its next head.
    pub since: Instant,
    /// Head bytes received since then, less the first ones (a slowloris
    /// client sends most of its head at once).
    pub progress: usize,
}

/// Up to `n` of `candidates` to close, the least progress first: the
/// fewest head bytes per second of waiting, and among equals the one
/// waiting longest. Candidates younger than `MIN_AGE` are never chosen.
pub fn choose<K>(mut candidates: Vec<Candidate<K>>, n: usize, now: Instant) -> Vec<Candidate<K>> {
    candidates.retain(|c| now.saturating_duration_since(c.since) >= MIN_AGE);
    let age = |c: &Candidate<K>| now.saturating_duration_since(c.since).as_nanos();
    // progress_a / age_a < progress_b / age_b, in integers.
    let slower = |a: &Candidate<K>, b: &Candidate<K>| {
        (a.progress as u128 * age(b)).cmp(&(b.progress as u128 * age(a))).then(a.since.cmp(&b.since))
    };
    if n == 0 {
        return Vec::new();
    }
    if n < candidates.len() {
        candidates.select_nth_unstable_by(n - 1, slower);
        candidates.truncate(n);
    }
    candidates.sort_by(slower);
    candidates
}

/// Counts the connections closed for room, and says when to log them: at
/// the first, then at most once per `REPORT_EVERY`, with how many were
/// closed since the last line.
#[derive(Debug, Default)]
pub struct Report {
    last: Option<Instant>,
    unreported: u64,
}

impl Report {
    /// `n` more were closed; returns the count to log, if a line is due.
    pub fn closed(&mut self, n: u64, now: Instant) -> Option<u64> {
        self.unreported += n;
        if self.unreported == 0 || self.last.is_some_and(|l| now.duration_since(l) < REPORT_EVERY) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn c(key: &'static str, since: Instant, progress: usize) -> Candidate<&'static str> {
        Candidate { key, since, progress }
    }

    fn choose_keys(candidates: Vec<Candidate<&'static str>>, n: usize, now: Instant) -> Vec<&'static str> {
        choose(candidates, n, now).into_iter().map(|c| c.key).collect()
    }

    #[test]
    fn the_default_is_what_the_descriptors_leave() {
        assert_eq!(from_descriptors(20_000, 25), 20_000 - 64 - 75);
        assert_eq!(from_descriptors(1024, 25), 1024 - 64 - 75);
        // A tiny limit still leaves a connection per worker.
        assert_eq!(from_descriptors(100, 25), 25);
        assert_eq!(from_descriptors(u64::MAX, 25), u32::MAX);
    }

    #[test]
    fn room_is_made_in_batches_only_when_full() {
        assert_eq!(room_to_make(99, 100), 0);
        assert_eq!(room_to_make(100, 100), 2);
        assert_eq!(room_to_make(6400, 6400), 101);
        // Over the budget (it was lowered by a restart): back under it.
        assert_eq!(room_to_make(110, 100), 12);
    }

    #[test]
    fn the_slowest_heads_go_first() {
        let now = Instant::now();
        let t = now - 10 * S;
        let got = choose_keys(vec![
            c("normal", now - 2 * S, 600),
            c("trickler-new", now - 2 * S, 2),
            c("trickler-old", t, 10),
            c("stalled", now - 3 * S, 0),
        ], 3, now);
        // 0 B/s, then 1 B/s for 10 s before 1 B/s for 2 s, then not the normal one.
        assert_eq!(got, vec!["stalled", "trickler-old", "trickler-new"]);
    }

    #[test]
    fn among_equals_the_one_waiting_longest_goes_first() {
        let now = Instant::now();
        let got = choose_keys(vec![c("idle-2s", now - 2 * S, 0), c("idle-9s", now - 9 * S, 0), c("idle-5s", now - 5 * S, 0)], 2, now);
        assert_eq!(got, vec!["idle-9s", "idle-5s"]);
    }

    #[test]
    fn a_connection_that_just_arrived_is_never_chosen() {
        let now = Instant::now();
        let got = choose_keys(vec![c("new", now - MIN_AGE / 2, 0), c("now", now, 0), c("old", now - MIN_AGE, 1)], 3, now);
        assert_eq!(got, vec!["old"]);
        assert!(choose_keys(vec![c("new", now, 0)], 5, now).is_empty());
        assert!(choose_keys(vec![c("old", now - 9 * S, 0)], 0, now).is_empty());
    }

    #[test]
    fn the_log_line_is_rate_limited_and_loses_no_count() {
        let t0 = Instant::now();
        let mut r = Report::default();
        assert_eq!(r.closed(0, t0), None);
        assert_eq!(r.closed(5, t0), Some(5));
        assert_eq!(r.closed(3, t0 + S), None);
        assert_eq!(r.closed(4, t0 + REPORT_EVERY - S), None);
        assert_eq!(r.closed(1, t0 + REPORT_EVERY), Some(8));
        assert_eq!(r.closed(0, t0 + 3 * REPORT_EVERY), None);
    }
}
