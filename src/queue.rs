//! The worker queue: the listener pushes work and never waits; workers
//! block for it. It also counts idle workers, which drives the accept limit
//! (AsyncRequestWorkerFactor).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

pub struct WorkQueue<T> {
    inner: Mutex<Inner<T>>,
    ready: Condvar,
    /// Workers waiting minus items waiting for them, kept readable without
    /// the lock for the listener's limit check.
    idle: AtomicUsize,
    /// Items waiting, likewise.
    queued: AtomicUsize,
}

struct Inner<T> {
    /// Each item with the time it was queued, to measure dispatch latency.
    items: VecDeque<(Instant, T)>,
    waiting: usize,
    closed: bool,
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
            inner: Mutex::new(Inner { items: VecDeque::new(), waiting: 0, closed: false }),
            ready: Condvar::new(),
            idle: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
        }
    }
}

impl<T> WorkQueue<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish_idle(&self, inner: &Inner<T>) {
        // SeqCst: pairs with the listener's pause flag (see child.rs).
        self.idle.store(inner.waiting.saturating_sub(inner.items.len()), Ordering::SeqCst);
        self.queued.store(inner.items.len(), Ordering::Release);
    }

    pub fn push(&self, item: T) {
        let mut inner = self.lock();
        inner.items.push_back((Instant::now(), item));
        let wake = inner.waiting > 0;
        self.publish_idle(&inner);
        drop(inner);
        if wake {
            self.ready.notify_one();
        }
    }

    /// Blocks until there is an item, or the queue is closed and drained.
    /// `on_idle` runs once the caller counts as idle and before it sleeps,
    /// so that whoever watches the idle count (the listener's accept limit)
    /// can be told at the moment it changes.
    pub fn pop(&self, on_idle: impl Fn()) -> Popped<T> {
        let mut inner = self.lock();
        loop {
            if let Some((at, item)) = inner.items.pop_front() {
                self.publish_idle(&inner);
                return Popped::Item(item, at.elapsed());
            }
            if inner.closed {
                return Popped::Closed;
            }
            inner.waiting += 1;
            self.publish_idle(&inner);
            on_idle();
            inner = self.ready.wait(inner).unwrap_or_else(|e| e.into_inner());
            inner.waiting -= 1;
            self.publish_idle(&inner);
        }
    }

    /// Workers that would take an item at once.
    pub fn idle(&self) -> usize {
        self.idle.load(Ordering::SeqCst)
    }

    pub fn len(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lets every worker finish what is queued, then exit.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// Removes everything queued (an ungraceful stop), for the caller to drop.
    pub fn drain(&self) -> Vec<T> {
        let mut inner = self.lock();
        let items = inner.items.drain(..).map(|(_, item)| item).collect();
        self.publish_idle(&inner);
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;
    use std::time::{Duration, Instant};

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
        q.push(1);
        q.push(2);
        assert_eq!(q.idle(), 0);
        assert!(matches!(q.pop(|| ()), Popped::Item(1, _)));
        assert!(matches!(q.pop(|| ()), Popped::Item(2, _)));

        // Each worker takes one item then exits, so the idle count moves
        // only with the pushes.
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let q = Arc::clone(&q);
                thread::spawn(move || q.pop(|| ()))
            })
            .collect();
        wait_for(|| q.idle() == 3);
        q.push(10);
        wait_for(|| q.idle() == 2);
        q.close();
        let got: Vec<Popped<i32>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        assert_eq!(got.iter().filter(|p| matches!(p, Popped::Item(10, _))).count(), 1);
        assert_eq!(got.iter().filter(|p| **p == Popped::Closed).count(), 2);
        assert_eq!(q.pop(|| ()), Popped::Closed);
    }

    #[test]
    fn close_lets_queued_work_finish() {
        let q = WorkQueue::default();
        q.push("a");
        q.close();
        assert!(matches!(q.pop(|| ()), Popped::Item("a", _)));
        assert_eq!(q.pop(|| ()), Popped::Closed);
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
