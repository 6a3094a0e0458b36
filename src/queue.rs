//! The worker queue: the listener pushes work and never waits; workers
//! block for it. It also counts idle workers, which drives the accept limit
//! (AsyncRequestWorkerFactor).
//!
//! An item for which a worker is waiting goes straight to the worker that
//! went idle last (LIFO): under a moderate load the same few threads,
//! cache-warm, do the work, and each sleeps on its own condition variable,
//! so a hand-off wakes exactly the thread it is for.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub struct WorkQueue<T> {
    inner: Mutex<Inner<T>>,
    /// Workers waiting, kept readable without the lock for the listener's
    /// limit check.
    idle: AtomicUsize,
    /// Items waiting for a worker, likewise.
    queued: AtomicUsize,
}

struct Inner<T> {
    /// Each item with the time it was queued, to measure dispatch latency.
    items: VecDeque<(Instant, T)>,
    /// Idle workers, the most recently idle last.
    sleepers: Vec<Arc<Mailbox<T>>>,
    closed: bool,
}

/// Where one worker sleeps and receives its next item.
pub struct Mailbox<T> {
    slot: Mutex<Delivery<T>>,
    wake: Condvar,
}

enum Delivery<T> {
    Empty,
    Item(Instant, T),
    Closed,
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Mailbox { slot: Mutex::new(Delivery::Empty), wake: Condvar::new() }
    }
}

impl<T> Mailbox<T> {
    fn deliver(&self, d: Delivery<T>) {
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = d;
        self.wake.notify_one();
    }
}

/// What a worker gets from `pop`.
#[derive(Debug, PartialEq, Eq)]
pub enum Popped<T> {
    /// An item and how long it waited for a worker.
    Item(T, Duration),
    /// The queue was closed and is empty: the worker exits.
    Closed,
}

impl<T> Default for WorkQueue<T> {
    fn default() -> Self {
        WorkQueue {
            inner: Mutex::new(Inner { items: VecDeque::new(), sleepers: Vec::new(), closed: false }),
            idle: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
        }
    }
}

impl<T> WorkQueue<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, inner: &Inner<T>) {
        // SeqCst: pairs with the listener's pause flag (see child.rs).
        self.idle.store(inner.sleepers.len(), Ordering::SeqCst);
        self.queued.store(inner.items.len(), Ordering::Release);
    }

    pub fn push(&self, item: T) {
        let mut inner = self.lock();
        match inner.sleepers.pop() {
            Some(mailbox) => {
                self.publish(&inner);
                drop(inner);
                mailbox.deliver(Delivery::Item(Instant::now(), item));
            }
            None => {
                inner.items.push_back((Instant::now(), item));
                self.publish(&inner);
            }
        }
    }

    /// Blocks until there is an item, or the queue is closed and drained.
    /// `mailbox` is the calling worker's own. `on_idle` runs once the caller
    /// counts as idle and before it sleeps, so that whoever watches the idle
    /// count (the listener's accept limit) can be told at the moment it
    /// changes.
    pub fn pop(&self, mailbox: &Arc<Mailbox<T>>, on_idle: impl Fn()) -> Popped<T> {
        {
            let mut inner = self.lock();
            if let Some((at, item)) = inner.items.pop_front() {
                self.publish(&inner);
                return Popped::Item(item, at.elapsed());
            }
            if inner.closed {
                return Popped::Closed;
            }
            *mailbox.slot.lock().unwrap_or_else(|e| e.into_inner()) = Delivery::Empty;
            inner.sleepers.push(Arc::clone(mailbox));
            self.publish(&inner);
        }
        on_idle();
        let mut slot = mailbox.slot.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match std::mem::replace(&mut *slot, Delivery::Empty) {
                Delivery::Item(at, item) => return Popped::Item(item, at.elapsed()),
                Delivery::Closed => return Popped::Closed,
                Delivery::Empty => slot = mailbox.wake.wait(slot).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }

    /// Workers that would take an item at once.
    pub fn idle(&self) -> usize {
        self.idle.load(Ordering::SeqCst)
    }

    pub fn len(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// How long the oldest queued item has waited for a worker.
    pub fn oldest_wait(&self) -> Option<Duration> {
        self.lock().items.front().map(|(at, _)| at.elapsed())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lets every worker finish what is queued, then exit.
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        let sleepers = std::mem::take(&mut inner.sleepers);
        self.publish(&inner);
        drop(inner);
        for m in sleepers {
            m.deliver(Delivery::Closed);
        }
    }

    /// Removes everything queued (an ungraceful stop), for the caller to drop.
    pub fn drain(&self) -> Vec<T> {
        let mut inner = self.lock();
        let items = inner.items.drain(..).map(|(_, item)| item).collect();
        self.publish(&inner);
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    fn wait_for(cond: impl Fn() -> bool) {
        let end = Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(Instant::now() < end, "condition not reached");
            thread::yield_now();
        }
    }

    #[test]
    fn fifo_and_idle_count() {
        let q = Arc::new(WorkQueue::default());
        let me = Arc::new(Mailbox::default());
        q.push(1);
        q.push(2);
        assert_eq!(q.idle(), 0);
        assert_eq!(q.len(), 2);
        assert!(matches!(q.pop(&me, || ()), Popped::Item(1, _)));
        assert!(matches!(q.pop(&me, || ()), Popped::Item(2, _)));

        // Each worker takes one item then exits, so the idle count moves
        // only with the pushes.
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let q = Arc::clone(&q);
                thread::spawn(move || q.pop(&Arc::new(Mailbox::default()), || ()))
            })
            .collect();
        wait_for(|| q.idle() == 3);
        q.push(10);
        assert_eq!(q.idle(), 2, "a hand-off takes a worker off the idle list at once");
        assert_eq!(q.len(), 0, "handed over, not queued");
        q.close();
        let got: Vec<Popped<i32>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        assert_eq!(got.iter().filter(|p| matches!(p, Popped::Item(10, _))).count(), 1);
        assert_eq!(got.iter().filter(|p| matches!(p, Popped::Closed)).count(), 2);
        assert_eq!(q.pop(&me, || ()), Popped::Closed);
    }

    #[test]
    fn the_last_worker_to_go_idle_gets_the_next_item() {
        let q = Arc::new(WorkQueue::default());
        let first = {
            let q = Arc::clone(&q);
            thread::spawn(move || q.pop(&Arc::new(Mailbox::default()), || ()))
        };
        wait_for(|| q.idle() == 1);
        let second = {
            let q = Arc::clone(&q);
            thread::spawn(move || q.pop(&Arc::new(Mailbox::default()), || ()))
        };
        wait_for(|| q.idle() == 2);
        q.push("for the second");
        assert!(matches!(second.join().unwrap(), Popped::Item("for the second", _)));
        q.close();
        assert_eq!(first.join().unwrap(), Popped::Closed);
    }

    #[test]
    fn close_lets_queued_work_finish() {
        let q = WorkQueue::default();
        let me = Arc::new(Mailbox::default());
        q.push("a");
        q.close();
        assert!(matches!(q.pop(&me, || ()), Popped::Item("a", _)));
        assert_eq!(q.pop(&me, || ()), Popped::Closed);
    }

    #[test]
    fn on_idle_runs_once_the_worker_counts_as_idle() {
        let q = Arc::new(WorkQueue::<u8>::default());
        let q2 = Arc::clone(&q);
        let seen = Arc::new(AtomicUsize::new(usize::MAX));
        let seen2 = Arc::clone(&seen);
        let w = thread::spawn(move || q2.pop(&Arc::new(Mailbox::default()), || seen2.store(q2.idle(), Ordering::SeqCst)));
        wait_for(|| seen.load(Ordering::SeqCst) != usize::MAX);
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        q.push(7);
        assert!(matches!(w.join().unwrap(), Popped::Item(7, _)));
    }

    #[test]
    fn oldest_wait_is_that_of_the_first_queued_item() {
        let q = WorkQueue::default();
        assert_eq!(q.oldest_wait(), None);
        q.push(1);
        thread::sleep(Duration::from_millis(20));
        q.push(2);
        assert!(q.oldest_wait().unwrap() >= Duration::from_millis(20));
    }

    #[test]
    fn drain_empties() {
        let q = WorkQueue::default();
        q.push(1);
        q.push(2);
        assert_eq!(q.drain(), vec![1, 2]);
        assert!(q.is_empty());
    }
}
