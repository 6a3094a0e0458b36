//! Timeout queues for connections parked in the workers' pollset (the
//! listener enforces them).
//!
//! A queue per (kind, timeout), made on demand, which gives per-vhost
//! KeepAliveTimeout/Timeout for free. Entries mostly come in deadline
//! order (parked now, with the queue's one timeout): those go to the end
//! of an index-linked list over a slab, O(1) and 8 bytes each. A
//! connection parked again keeps the deadline it had (a request head's
//! limit counts from its first byte), which can be earlier than those of
//! entries parked since: those few go to an ordered set beside the list
//! (O(log n)). Expiry looks at the earlier of the two heads, so every
//! entry expires at its own deadline; removal by token is O(1) from the
//! list, O(log n) from the set.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Why a connection waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Wait {
    /// Idle between requests, KeepAliveTimeout; dehydrated (see
    /// `Conn::dehydrate`) once idle long enough if only core keeps its state.
    KeepAlive,
    /// Idle between requests, kept whole: a module keeps state for it (TLS,
    /// HTTP/2, the PROXY protocol, ...).
    KeepAliveWhole,
    /// Idle between requests, dehydrated: a socket without a conn_rec.
    Idle,
    /// Flushing a response, Timeout.
    WriteCompletion,
    /// A module waits for I/O (CONN_STATE_ASYNC_WAITIO), Timeout.
    WaitIo,
    /// Draining the client after our shutdown(), 2 s or 30 s.
    Linger,
    /// Part of a request head has arrived; waiting for the rest, Timeout.
    Head,
}

/// Identifies a parked entry; stale tokens (entry gone, slot reused) are
/// recognised by their generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token(pub u64);

impl Token {
    fn new(index: u32, generation: u32) -> Self {
        Token(u64::from(generation) << 32 | u64::from(index))
    }
    fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
    /// Largest token value a slab entry can have; poller tokens above it
    /// are free for listeners and the waker.
    pub const MAX: u64 = (0x7fff_ffff_u64 << 32) | 0xffff_ffff;
}

const NIL: u32 = u32::MAX;
/// `prev` of an entry in the early set rather than the list.
const EARLY: u32 = u32::MAX - 1;

struct Queue {
    wait: Wait,
    timeout: Duration,
    /// The list, in deadline order.
    head: u32,
    tail: u32,
    listed: usize,
    /// Entries whose deadline was earlier than the list's tail's when
    /// parked: (deadline, slab index).
    early: BTreeSet<(Instant, u32)>,
}

impl Queue {
    fn len(&self) -> usize {
        self.listed + self.early.len()
    }
}

struct Entry<T> {
    item: T,
    queue: usize,
    deadline: Instant,
    /// Neighbours in the list (`prev` is EARLY for an entry in the early
    /// set, which keeps an entry at 64 bytes).
    prev: u32,
    next: u32,
}

struct Slot<T> {
    generation: u32,
    entry: Option<Entry<T>>,
}

pub struct Parked<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    queues: Vec<Queue>,
}

impl<T> Default for Parked<T> {
    fn default() -> Self {
        Parked { slots: Vec::new(), free: Vec::new(), queues: Vec::new() }
    }
}

impl<T> Parked<T> {
    fn queue_for(&mut self, wait: Wait, timeout: Duration) -> usize {
        if let Some(i) = self.queues.iter().position(|q| q.wait == wait && q.timeout == timeout) {
            return i;
        }
        self.queues.push(Queue { wait, timeout, head: NIL, tail: NIL, listed: 0, early: BTreeSet::new() });
        self.queues.len() - 1
    }

    fn entry(&self, index: u32) -> &Entry<T> {
        self.slots[index as usize].entry.as_ref().expect("linked entry exists")
    }

    fn entry_mut(&mut self, index: u32) -> &mut Entry<T> {
        self.slots[index as usize].entry.as_mut().expect("linked entry exists")
    }

    /// Parks `item` until `since + timeout` and returns its token.
    pub fn insert(&mut self, item: T, wait: Wait, timeout: Duration, since: Instant) -> Token {
        let queue = self.queue_for(wait, timeout);
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot { generation: 0, entry: None });
                u32::try_from(self.slots.len() - 1).ok().filter(|&i| i < EARLY).expect("slab index below the markers")
            }
        };
        let deadline = since + timeout;
        let tail = self.queues[queue].tail;
        let early = tail != NIL && deadline < self.entry(tail).deadline;
        let q = &mut self.queues[queue];
        let prev = if early {
            q.early.insert((deadline, index));
            EARLY
        } else {
            q.tail = index;
            if q.head == NIL {
                q.head = index;
            }
            q.listed += 1;
            tail
        };
        if !early && prev != NIL {
            self.entry_mut(prev).next = index;
        }
        let slot = &mut self.slots[index as usize];
        slot.entry = Some(Entry { item, queue, deadline, prev, next: NIL });
        Token::new(index, slot.generation)
    }

    /// Takes the entry out if the token is still current; also returns
    /// when it was parked, so that it can be parked again with the same
    /// deadline.
    pub fn remove(&mut self, token: Token) -> Option<(T, Wait, Instant)> {
        let index = token.index();
        let slot = self.slots.get_mut(index)?;
        if slot.generation != token.generation() {
            return None;
        }
        let entry = slot.entry.take()?;
        slot.generation = (slot.generation + 1) & 0x7fff_ffff;
        self.free.push(index as u32);
        if entry.prev == EARLY {
            self.queues[entry.queue].early.remove(&(entry.deadline, index as u32));
        } else {
            if entry.prev != NIL {
                self.entry_mut(entry.prev).next = entry.next;
            }
            if entry.next != NIL {
                self.entry_mut(entry.next).prev = entry.prev;
            }
            let q = &mut self.queues[entry.queue];
            if q.head == index as u32 {
                q.head = entry.next;
            }
            if q.tail == index as u32 {
                q.tail = entry.prev;
            }
            q.listed -= 1;
        }
        let q = &self.queues[entry.queue];
        Some((entry.item, q.wait, entry.deadline - q.timeout))
    }

    /// The queue's earliest entry: the list's head or the earliest of the
    /// early ones.
    fn head_token(&self, q: &Queue) -> Option<(Token, Instant)> {
        let listed = (q.head != NIL).then(|| (self.entry(q.head).deadline, q.head));
        let (deadline, index) = match (listed, q.early.first().copied()) {
            (Some(l), Some(e)) => l.min(e),
            (l, e) => l.or(e)?,
        };
        Some((Token::new(index, self.slots[index as usize].generation), deadline))
    }

    /// The earliest deadline of any parked entry.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.queues.iter().filter_map(|q| self.head_token(q).map(|(_, d)| d)).min()
    }

    /// Removes every entry whose deadline has passed.
    pub fn expire(&mut self, now: Instant) -> Vec<(T, Wait)> {
        let mut out = Vec::new();
        for qi in 0..self.queues.len() {
            while let Some((token, deadline)) = self.head_token(&self.queues[qi]) {
                if deadline > now {
                    break;
                }
                out.extend(self.remove(token).map(|(item, wait, _)| (item, wait)));
            }
        }
        out
    }

    /// When the oldest entry of one kind was parked.
    pub fn oldest(&self, wait: Wait) -> Option<Instant> {
        self.queues
            .iter()
            .filter(|q| q.wait == wait)
            .filter_map(|q| self.head_token(q).map(|(_, d)| d - q.timeout))
            .min()
    }

    /// Removes up to `n` of the oldest entries of one kind, among those
    /// parked before `parked_before`, with when each was parked.
    pub fn take_oldest(&mut self, wait: Wait, n: usize, parked_before: Instant) -> Vec<(T, Instant)> {
        let mut out = Vec::new();
        while out.len() < n {
            // Each queue's head is its oldest; the oldest of all is the one
            // parked first (deadline minus the queue's timeout).
            let oldest = self
                .queues
                .iter()
                .filter(|q| q.wait == wait)
                .filter_map(|q| self.head_token(q).map(|(t, d)| (d - q.timeout, t)))
                .min_by_key(|&(since, _)| since);
            let Some((since, token)) = oldest else { break };
            if since >= parked_before {
                break;
            }
            out.extend(self.remove(token).map(|(item, _, since)| (item, since)));
        }
        out
    }

    /// The slab indexes of a queue's entries.
    fn indexes<'a>(&'a self, q: &'a Queue) -> impl Iterator<Item = u32> + 'a {
        let listed = std::iter::successors((q.head != NIL).then_some(q.head), |&i| {
            let next = self.entry(i).next;
            (next != NIL).then_some(next)
        });
        listed.chain(q.early.iter().map(|&(_, i)| i))
    }

    /// Removes the entries of one kind that `pick` picks, with when each
    /// was parked.
    pub fn take_where(&mut self, wait: Wait, pick: impl Fn(&T) -> bool) -> Vec<(T, Instant)> {
        let tokens: Vec<Token> = self.entries(wait).filter(|&(_, item, _)| pick(item)).map(|(t, _, _)| t).collect();
        tokens.into_iter().filter_map(|t| self.remove(t)).map(|(item, _, since)| (item, since)).collect()
    }

    /// The entries of one kind, each with its token and when it was parked.
    pub fn entries(&self, wait: Wait) -> impl Iterator<Item = (Token, &T, Instant)> + '_ {
        self.queues.iter().filter(move |q| q.wait == wait).flat_map(move |q| {
            self.indexes(q).map(move |i| {
                let e = self.entry(i);
                (Token::new(i, self.slots[i as usize].generation), &e.item, e.deadline - q.timeout)
            })
        })
    }

    pub fn count(&self, wait: Wait) -> usize {
        self.queues.iter().filter(|q| q.wait == wait).map(Queue::len).sum()
    }

    pub fn len(&self) -> usize {
        self.queues.iter().map(Queue::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Timed callbacks (`ap_mpm_register_timed_callback`), earliest first; equal
/// times run in registration order.
pub struct Schedule<T> {
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(Instant, u64, Unordered<T>)>>,
    seq: u64,
}

/// Wraps the payload so that ordering looks only at (time, sequence).
pub struct Unordered<T>(pub T);

impl<T> PartialEq for Unordered<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<T> Eq for Unordered<T> {}
impl<T> PartialOrd for Unordered<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Unordered<T> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl<T> Default for Schedule<T> {
    fn default() -> Self {
        Schedule { heap: std::collections::BinaryHeap::new(), seq: 0 }
    }
}

impl<T> Schedule<T> {
    pub fn push(&mut self, at: Instant, item: T) {
        self.seq += 1;
        self.heap.push(std::cmp::Reverse((at, self.seq, Unordered(item))));
    }

    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.0.0)
    }

    /// Removes everything due at `now`.
    pub fn due(&mut self, now: Instant) -> Vec<T> {
        let mut out = Vec::new();
        while self.next().is_some_and(|t| t <= now) {
            out.extend(self.heap.pop().map(|e| e.0.2.0));
        }
        out
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn expiry_is_per_queue_and_in_order() {
        let t0 = Instant::now();
        let mut p = Parked::default();
        p.insert("ka1", Wait::KeepAlive, 5 * S, t0);
        p.insert("wc", Wait::WriteCompletion, 60 * S, t0);
        p.insert("ka2", Wait::KeepAlive, 5 * S, t0 + S);
        p.insert("vhost-ka", Wait::KeepAlive, 2 * S, t0 + S);
        assert_eq!(p.next_expiry(), Some(t0 + 3 * S));
        assert_eq!(p.count(Wait::KeepAlive), 3);
        assert_eq!(p.expire(t0 + 3 * S), vec![("vhost-ka", Wait::KeepAlive)]);
        assert_eq!(p.next_expiry(), Some(t0 + 5 * S));
        let mut got = p.expire(t0 + 6 * S);
        got.sort();
        assert_eq!(got, vec![("ka1", Wait::KeepAlive), ("ka2", Wait::KeepAlive)]);
        assert_eq!(p.count(Wait::KeepAlive), 0);
        assert_eq!(p.count(Wait::WriteCompletion), 1);
    }

    #[test]
    fn entries_of_a_kind_come_with_their_tokens_and_parking_times() {
        let t0 = Instant::now();
        let mut p = Parked::default();
        p.insert("h1", Wait::Head, 20 * S, t0 + S);
        p.insert("ka", Wait::KeepAlive, 5 * S, t0);
        // Parked again with its first deadline: in the early set.
        p.insert("h0", Wait::Head, 20 * S, t0);
        p.insert("h2", Wait::Head, 30 * S, t0 + 2 * S);
        let mut got: Vec<(&str, Instant)> = p.entries(Wait::Head).map(|(_, &i, since)| (i, since)).collect();
        got.sort();
        assert_eq!(got, vec![("h0", t0), ("h1", t0 + S), ("h2", t0 + 2 * S)]);
        let token = p.entries(Wait::Head).find(|&(_, &i, _)| i == "h0").map(|(t, _, _)| t).unwrap();
        assert_eq!(p.remove(token), Some(("h0", Wait::Head, t0)));
        assert_eq!(p.entries(Wait::Head).count(), 2);
        assert_eq!(p.entries(Wait::Linger).count(), 0);
    }

    #[test]
    fn an_entry_parked_again_expires_at_its_own_deadline() {
        let t0 = Instant::now();
        let mut p = Parked::default();
        let trickler = p.insert("trickler", Wait::Head, 4 * S, t0);
        p.insert("fresh-1", Wait::Head, 4 * S, t0 + S);
        p.insert("fresh-2", Wait::Head, 4 * S, t0 + 2 * S);
        // More of its head came: parked again, deadline still t0 + 4 s,
        // behind entries whose deadlines are later.
        let (item, wait, since) = p.remove(trickler).unwrap();
        p.insert(item, wait, 4 * S, since);
        p.insert("fresh-3", Wait::Head, 4 * S, t0 + 3 * S);
        assert_eq!(p.next_expiry(), Some(t0 + 4 * S));
        assert_eq!(p.expire(t0 + 4 * S), vec![("trickler", Wait::Head)]);
        assert_eq!(p.expire(t0 + 5 * S), vec![("fresh-1", Wait::Head)]);
        assert_eq!(p.oldest(Wait::Head), Some(t0 + 2 * S));
        assert_eq!(p.count(Wait::Head), 2);
    }

    #[test]
    fn early_entries_are_counted_removed_and_taken_like_the_others() {
        let t0 = Instant::now();
        let mut p = Parked::default();
        p.insert("late", Wait::Head, 4 * S, t0 + 2 * S);
        let early = p.insert("early", Wait::Head, 4 * S, t0);
        let earlier = p.insert("earlier", Wait::Head, 4 * S, t0 - S);
        assert_eq!(p.count(Wait::Head), 3);
        assert_eq!(p.next_expiry(), Some(t0 + 3 * S));
        assert_eq!(p.remove(earlier), Some(("earlier", Wait::Head, t0 - S)));
        assert_eq!(p.next_expiry(), Some(t0 + 4 * S));
        assert_eq!(p.oldest(Wait::Head), Some(t0));
        p.insert("next", Wait::Head, 4 * S, t0 + 3 * S);
        let mut all = p.take_where(Wait::Head, |_| true);
        all.sort();
        assert_eq!(all, vec![("early", t0), ("late", t0 + 2 * S), ("next", t0 + 3 * S)]);
        assert_eq!(p.remove(early), None);
        assert!(p.is_empty());
    }

    #[test]
    fn remove_unlinks_anywhere_and_stale_tokens_miss() {
        let t0 = Instant::now();
        let mut p = Parked::default();
        let a = p.insert(1, Wait::KeepAlive, S, t0);
        let b = p.insert(2, Wait::KeepAlive, S, t0);
        let c = p.insert(3, Wait::KeepAlive, S, t0);
        assert_eq!(p.remove(b), Some((2, Wait::KeepAlive, t0)));
        assert_eq!(p.remove(b), None);
        let d = p.insert(4, Wait::Linger, S, t0);
        assert_ne!(d, b, "a reused slot gets a new generation");
        assert_eq!(p.remove(b), None);
        assert_eq!(p.remove(c), Some((3, Wait::KeepAlive, t0)));
        assert_eq!(p.remove(a), Some((1, Wait::KeepAlive, t0)));
        assert_eq!(p.count(Wait::KeepAlive), 0);
        assert_eq!(p.take_oldest(Wait::Linger, 9, t0 + S), vec![(4, t0)]);
        assert_eq!(p.next_expiry(), None);
        assert!(d.0 <= Token::MAX);
    }

    #[test]
    fn take_oldest_picks_across_queues_by_park_time() {
        let t0 = Instant::now();
        let mut p = Parked::default();
        p.insert("a-long", Wait::KeepAlive, 10 * S, t0);
        p.insert("b-short", Wait::KeepAlive, 2 * S, t0 + S);
        p.insert("c-long", Wait::KeepAlive, 10 * S, t0 + 2 * S);
        p.insert("linger", Wait::Linger, S, t0);
        assert_eq!(p.take_oldest(Wait::KeepAlive, 2, t0 + 10 * S), vec![("a-long", t0), ("b-short", t0 + S)]);
        assert_eq!(p.take_oldest(Wait::KeepAlive, 5, t0 + 2 * S), vec![], "too young");
        assert_eq!(p.take_oldest(Wait::KeepAlive, 5, t0 + 3 * S), vec![("c-long", t0 + 2 * S)]);
        assert_eq!(p.count(Wait::Linger), 1);
        p.insert("d", Wait::KeepAlive, 2 * S, t0);
        p.insert("e", Wait::KeepAlive, 10 * S, t0 + S);
        let mut all = p.take_where(Wait::KeepAlive, |_| true);
        all.sort();
        assert_eq!(all, vec![("d", t0), ("e", t0 + S)]);
        assert_eq!((p.count(Wait::KeepAlive), p.count(Wait::Linger)), (0, 1));
    }

    #[test]
    fn schedule_runs_due_items_in_time_then_registration_order() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.push(t0 + 2 * S, "late");
        s.push(t0 + S, "first");
        s.push(t0 + S, "second");
        assert_eq!(s.next(), Some(t0 + S));
        assert!(s.due(t0).is_empty());
        assert_eq!(s.due(t0 + S), vec!["first", "second"]);
        assert_eq!(s.len(), 1);
        assert_eq!(s.due(t0 + 3 * S), vec!["late"]);
        assert!(s.is_empty());
    }
}
