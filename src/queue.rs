//! The task queue: work that is not a connection becoming ready in the
//! workers' pollset (timeouts to close, timed callbacks, and, when every
//! worker is busy, ready connections the listener collected so that their
//! wait can be seen and bounded). Nobody blocks on it: pushing never waits,
//! and the queue's bell, in the workers' pollset, wakes the idle worker that
//! waits there (see `Baton`). It also counts idle workers, which drives the
//! accept limit (AsyncRequestWorkerFactor).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub struct WorkQueue<T> {
    inner: Mutex<Inner<T>>,
    /// Workers waiting for work, readable without the lock for the
    /// listener's limit check.
    idle: AtomicUsize,
    /// Items waiting for a worker, likewise.
    queued: AtomicUsize,
}

struct Inner<T> {
    /// Each item with the time it was queued, to measure dispatch latency.
    items: VecDeque<(Instant, T)>,
    closed: bool,
}

/// What a worker gets from `try_pop`.
#[derive(Debug, PartialEq, Eq)]
pub enum Popped<T> {
    /// An item and how long it waited for a worker.
    Item(T, Duration),
    /// Nothing queued: the worker waits for work.
    Empty,
    /// The queue was closed and is empty: the worker exits.
    Closed,
}

impl<T> Default for WorkQueue<T> {
    fn default() -> Self {
        WorkQueue {
            inner: Mutex::new(Inner { items: VecDeque::new(), closed: false }),
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
        self.queued.store(inner.items.len(), Ordering::Release);
    }

    /// Queues an item; the caller rings the workers' bell.
    pub fn push(&self, item: T) {
        let mut inner = self.lock();
        inner.items.push_back((Instant::now(), item));
        self.publish(&inner);
    }

    pub fn try_pop(&self) -> Popped<T> {
        let mut inner = self.lock();
        match inner.items.pop_front() {
            Some((at, item)) => {
                self.publish(&inner);
                Popped::Item(item, at.elapsed())
            }
            None if inner.closed => Popped::Closed,
            None => Popped::Empty,
        }
    }

    /// Runs `wait` (a worker waiting for work) with the caller counted as
    /// idle. SeqCst: pairs with the listener's pause flag (see
    /// `engine::idle`).
    pub fn idle_while<R>(&self, wait: impl FnOnce() -> R) -> R {
        self.idle.fetch_add(1, Ordering::SeqCst);
        let r = wait();
        self.idle.fetch_sub(1, Ordering::SeqCst);
        r
    }

    /// Workers waiting for work.
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

    /// Lets every worker finish what is queued, then exit (the caller
    /// halts the workers' pollset so that idle ones look).
    pub fn close(&self) {
        self.lock().closed = true;
    }

    /// Removes everything queued (an ungraceful stop), for the caller to drop.
    pub fn drain(&self) -> Vec<T> {
        let mut inner = self.lock();
        let items = inner.items.drain(..).map(|(_, item)| item).collect();
        self.publish(&inner);
        items
    }
}

/// Which idle worker waits in the workers' pollset: one at a time (the
/// poller); the other idle workers sleep, each on its own condition
/// variable. The poller that leaves with an event hands the role to the
/// worker that went to sleep last. So an arriving event wakes at most one
/// thread, and none while the workers are busy: a worker that finishes
/// takes the next ready connection without sleeping, and a busy child
/// serves its load with no wake-ups at all.
/// The worker so woken goes back to sleep (`doze`) if the workers already
/// running keep the CPUs busy: then they serve what is ready.
#[derive(Default)]
pub struct Baton {
    taken: AtomicBool,
    sleepers: Mutex<Vec<Arc<Sleeper>>>,
    /// The length of `sleepers`, readable without the lock.
    asleep: AtomicUsize,
    /// Since when the role has been free with workers asleep, after a
    /// worker woken for it left with other work (see `orphan`).
    vacant: AtomicBool,
    vacant_since: Mutex<Option<Instant>>,
    /// `wake_all` was called: nobody may doze any more.
    stopping: AtomicBool,
}

/// Where one idle worker sleeps.
#[derive(Default)]
pub struct Sleeper {
    woken: Mutex<bool>,
    wake: Condvar,
}

impl Sleeper {
    fn wake(&self) {
        *self.woken.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.notify_one();
    }
}

impl Baton {
    fn sleepers(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Sleeper>>> {
        self.sleepers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the last worker to fall asleep, if any.
    fn wake_one(&self) {
        let next = {
            let mut s = self.sleepers();
            let next = s.pop();
            self.asleep.store(s.len(), Ordering::SeqCst);
            next
        };
        if let Some(s) = next {
            s.wake();
        }
    }

    fn vacancy(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.vacant_since.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A worker waits in the pollset: what becomes ready is taken at once.
    pub fn held(&self) -> bool {
        self.taken.load(Ordering::SeqCst)
    }

    /// Becomes the poller if nobody is.
    pub fn try_take(&self) -> bool {
        let took = !self.taken.swap(true, Ordering::SeqCst);
        // Looked at before it is written: taking the role is on every
        // worker's way to idle, a vacancy is rare.
        if took && self.vacant.load(Ordering::SeqCst) && self.vacant.swap(false, Ordering::SeqCst) {
            *self.vacancy() = None;
        }
        took
    }

    /// The poller leaves the pollset: the last worker to fall asleep is
    /// woken to take the role.
    pub fn release(&self) {
        self.taken.store(false, Ordering::SeqCst);
        self.wake_one();
    }

    /// A worker that `release` woke to take the role leaves with work it
    /// found first (queued, or ready without waiting). Under load that is
    /// common and harmless: the next worker to finish takes the role, and
    /// meanwhile the workers already running serve what is ready. But if
    /// they are all in long requests, idle workers would sleep with nobody
    /// polling: the vacancy is noted for whoever watches (`fill_vacancy`). Waking the next sleeper at once
    /// instead would wake them all in a chain under load, each finding
    /// work, and more threads than cores in the middle of requests make the
    /// slowest requests much slower (measured: p99 tripled).
    pub fn orphan(&self) {
        if self.taken.load(Ordering::SeqCst) || self.asleep.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut v = self.vacancy();
        self.vacant.store(true, Ordering::SeqCst);
        v.get_or_insert_with(Instant::now);
    }

    /// Wakes the next sleeper for the role if it is free (the caller
    /// leaves with other work and nobody else will come back for it soon).
    pub fn call_next(&self) {
        if !self.taken.load(Ordering::SeqCst) && self.asleep.load(Ordering::SeqCst) > 0 {
            self.wake_one();
        }
    }

    /// When to look at a noted vacancy again, if it is still open.
    pub fn vacancy_check(&self, grace: Duration) -> Option<Instant> {
        self.vacant_since().map(|since| since + grace)
    }

    /// When a noted vacancy began, if it is still open.
    fn vacant_since(&self) -> Option<Instant> {
        if !self.vacant.load(Ordering::SeqCst) {
            return None;
        }
        *self.vacancy()
    }

    /// Looks at a vacancy `grace` after it was noted (or last looked at):
    /// if every busy worker is `stuck` (in a task for `grace` or more), a
    /// sleeper is woken for the role; else those workers finish tasks and
    /// serve what is ready, and the next one to run out of work takes the
    /// role, so it is looked at again `grace` later. (Looking more often
    /// costs the loaded child wake-ups of the listener, which measurably
    /// lengthened its slowest requests.)
    pub fn fill_vacancy(&self, grace: Duration, stuck: impl FnOnce() -> bool) {
        if !self.vacant.load(Ordering::SeqCst) {
            return;
        }
        let mut since = self.vacancy();
        let Some(at) = *since else { return };
        if at.elapsed() < grace {
            return;
        }
        if !stuck() {
            *since = Some(Instant::now());
            return;
        }
        *since = None;
        self.vacant.store(false, Ordering::SeqCst);
        drop(since);
        if !self.taken.load(Ordering::SeqCst) {
            self.wake_one();
        }
    }

    /// Sleeps until `release` (or `wake_all`) wakes `me`, and returns true;
    /// returns false at once if the role is free by the time `me` is on the
    /// list (SeqCst with `release`: either it sees `me` there, or `me` sees
    /// the role free).
    pub fn sleep(&self, me: &Arc<Sleeper>) -> bool {
        self.enlist(me);
        if !self.taken.load(Ordering::SeqCst) {
            self.delist(me);
            return false;
        }
        Self::wait_woken(me);
        true
    }

    /// Sleeps with the role free, leaving what is ready to the workers
    /// already running (see `crate::cpu`): the vacancy is noted, so that if
    /// they all end up in long tasks `fill_vacancy` wakes a sleeper, and the
    /// next of them to run out of work takes the role (its `release` wakes
    /// the last to sleep). Returns at once if the child is stopping
    /// (SeqCst with `wake_all`: either it sees `me` on the list, or `me`
    /// sees the stop).
    pub fn doze(&self, me: &Arc<Sleeper>) {
        self.enlist(me);
        if self.stopping.load(Ordering::SeqCst) {
            self.delist(me);
            return;
        }
        self.orphan();
        Self::wait_woken(me);
    }

    fn enlist(&self, me: &Arc<Sleeper>) {
        *me.woken.lock().unwrap_or_else(|e| e.into_inner()) = false;
        let mut s = self.sleepers();
        s.push(Arc::clone(me));
        self.asleep.store(s.len(), Ordering::SeqCst);
    }

    fn delist(&self, me: &Arc<Sleeper>) {
        let mut s = self.sleepers();
        s.retain(|s| !Arc::ptr_eq(s, me));
        self.asleep.store(s.len(), Ordering::SeqCst);
    }

    fn wait_woken(me: &Sleeper) {
        let mut woken = me.woken.lock().unwrap_or_else(|e| e.into_inner());
        while !*woken {
            woken = me.wake.wait(woken).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Wakes every sleeper (the child is stopping).
    pub fn wake_all(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let all = std::mem::take(&mut *self.sleepers());
        self.asleep.store(0, Ordering::SeqCst);
        for s in all {
            s.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn fifo_then_closed_after_the_last_item() {
        let q = WorkQueue::default();
        assert_eq!(q.try_pop(), Popped::Empty);
        q.push(1);
        q.push(2);
        assert_eq!(q.len(), 2);
        q.close();
        assert!(matches!(q.try_pop(), Popped::Item(1, _)));
        assert!(matches!(q.try_pop(), Popped::Item(2, _)));
        assert!(q.is_empty());
        assert_eq!(q.try_pop(), Popped::Closed);
    }

    #[test]
    fn a_worker_counts_as_idle_only_while_it_waits() {
        let q = Arc::new(WorkQueue::<u8>::default());
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let q2 = Arc::clone(&q);
        let w = thread::spawn(move || q2.idle_while(|| rx.recv().unwrap()));
        let end = Instant::now() + Duration::from_secs(5);
        while q.idle() != 1 {
            assert!(Instant::now() < end, "the waiting worker never counted as idle");
            thread::yield_now();
        }
        tx.send(()).unwrap();
        w.join().unwrap();
        assert_eq!(q.idle(), 0);
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

    #[test]
    fn one_poller_at_a_time_and_release_wakes_the_last_sleeper() {
        let b = Arc::new(Baton::default());
        assert!(b.try_take());
        assert!(!b.try_take(), "the role is taken");
        let woke = Arc::new(AtomicUsize::new(0));
        let outer = Arc::clone(&b);
        let sleepers: Vec<_> = (0..2)
            .map(|i| {
                let (b, woke) = (Arc::clone(&b), Arc::clone(&woke));
                let h = thread::spawn(move || {
                    b.sleep(&Arc::new(Sleeper::default()));
                    woke.fetch_add(1 << (8 * i), Ordering::SeqCst);
                });
                // Let each one fall asleep before the next.
                let end = Instant::now() + Duration::from_secs(5);
                while outer.sleepers().len() <= i {
                    assert!(Instant::now() < end, "sleeper {i} never slept");
                    thread::yield_now();
                }
                h
            })
            .collect();
        b.release();
        let end = Instant::now() + Duration::from_secs(5);
        while woke.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < end, "release woke nobody");
            thread::yield_now();
        }
        thread::sleep(Duration::from_millis(20));
        assert_eq!(woke.load(Ordering::SeqCst), 1 << 8, "the last to sleep is woken, and only it");
        assert!(b.try_take(), "the role is free after release");
        b.wake_all();
        for h in sleepers {
            h.join().unwrap();
        }
    }

    #[test]
    fn sleeping_while_the_role_is_free_returns_at_once() {
        let b = Baton::default();
        assert!(!b.sleep(&Arc::new(Sleeper::default())));
        assert!(b.sleepers().is_empty());
    }

    #[test]
    fn a_vacant_role_with_workers_asleep_is_filled_after_the_grace_time() {
        let b = Arc::new(Baton::default());
        assert!(b.try_take());
        let sleeper = {
            let b = Arc::clone(&b);
            thread::spawn(move || b.sleep(&Arc::new(Sleeper::default())))
        };
        let end = Instant::now() + Duration::from_secs(5);
        while b.asleep.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < end, "never slept");
            thread::yield_now();
        }
        b.orphan();
        assert_eq!(b.vacant_since(), None, "the role is held: no vacancy");
        // The role is free and the worker woken for it leaves with other
        // work: a vacancy, filled once it has lasted the grace time.
        b.taken.store(false, Ordering::SeqCst);
        b.orphan();
        let since = b.vacant_since().expect("a vacancy");
        b.orphan();
        assert_eq!(b.vacant_since(), Some(since), "the same vacancy");
        b.fill_vacancy(Duration::from_secs(60), || true);
        thread::sleep(Duration::from_millis(20));
        assert!(!sleeper.is_finished(), "woken before the grace time");
        b.fill_vacancy(Duration::from_millis(1), || false);
        thread::sleep(Duration::from_millis(20));
        assert!(!sleeper.is_finished(), "woken while a worker is not stuck");
        assert!(b.vacant_since().is_some(), "still vacant, looked at again later");
        thread::sleep(Duration::from_millis(2));
        b.fill_vacancy(Duration::from_millis(1), || true);
        sleeper.join().unwrap();
        assert_eq!(b.vacant_since(), None);
    }

    #[test]
    fn a_dozing_worker_leaves_the_role_vacant_and_wakes_with_a_release_or_the_stop() {
        let b = Arc::new(Baton::default());
        let doze = |b: &Arc<Baton>| {
            let b = Arc::clone(b);
            thread::spawn(move || b.doze(&Arc::new(Sleeper::default())))
        };
        let wait_asleep = |b: &Baton| {
            let end = Instant::now() + Duration::from_secs(5);
            while b.asleep.load(Ordering::SeqCst) == 0 {
                assert!(Instant::now() < end, "never dozed");
                thread::yield_now();
            }
        };
        // With the role free (unlike `sleep`), and the vacancy noted.
        let dozer = doze(&b);
        wait_asleep(&b);
        assert!(b.vacant_since().is_some(), "the free role is a vacancy");
        thread::sleep(Duration::from_millis(20));
        assert!(!dozer.is_finished());
        // The next worker to go idle takes the role, and leaves it with an event.
        assert!(b.try_take());
        assert_eq!(b.vacant_since(), None, "taking the role ends the vacancy");
        b.release();
        dozer.join().unwrap();
        // A stop wakes a dozer, and one dozing after it returns at once.
        let dozer = doze(&b);
        wait_asleep(&b);
        b.wake_all();
        dozer.join().unwrap();
        doze(&b).join().unwrap();
        assert!(b.sleepers().is_empty());
    }
}
