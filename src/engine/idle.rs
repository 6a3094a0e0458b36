//! Idle workers and the poller role: how a worker finds its next task (the
//! queue, then a ready connection, then a wait in the workers' pollset,
//! which one idle worker at a time holds), and what the other threads see
//! of each worker (its socket, since when it is busy, whether it runs).

use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

use crate::cpu::{self, ThreadState};
use crate::ffi::{log, stats, sys};
use crate::poller::{BELL, Events, HALT};
use crate::queue::{Popped, Sleeper};
use crate::timers::Token;

use super::runtime::{POLLER_GRACE, Runtime};
use super::stop::Mode;
use super::task::Task;

/// One worker thread as the other threads of its child see it.
pub(super) struct WorkerSlot {
    /// The socket it is serving, for an ungraceful stop (-1: none).
    pub(super) fd: AtomicI32,
    /// When it started its task, as ns since `Runtime::epoch` (0: idle).
    task_since: AtomicU64,
    /// Whether it runs or is blocked (see `crate::cpu`).
    thread: ThreadState,
}

impl Default for WorkerSlot {
    fn default() -> Self {
        WorkerSlot { fd: AtomicI32::new(-1), task_since: AtomicU64::new(0), thread: ThreadState::default() }
    }
}

impl Runtime {
    /// Called by worker `index` itself when it starts.
    pub fn worker_started(&self, index: usize) {
        self.workers[index].thread.open_own();
    }

    /// Worker `index` begins a task on socket `fd` (-1: none).
    pub fn task_begun(&self, index: usize, fd: RawFd) {
        let mine = &self.workers[index];
        mine.fd.store(fd, Ordering::Release);
        mine.task_since.store(self.epoch.elapsed().as_nanos().max(1) as u64, Ordering::Relaxed);
    }

    /// Worker `index` is done with its task.
    pub fn task_done(&self, index: usize) {
        let mine = &self.workers[index];
        mine.task_since.store(0, Ordering::Relaxed);
        mine.fd.store(-1, Ordering::Release);
    }

    /// A worker woken to take the poller role leaves with other work. If
    /// the other busy workers are all in long tasks (HTTP/2 sessions, say),
    /// none of them will come back for the role soon: the next sleeper is
    /// called now. Else the role may stay free (see `Baton::orphan`).
    fn leave_poller_role(&self) {
        if self.workers_stuck(POLLER_GRACE) {
            self.baton.call_next();
        } else {
            self.baton.orphan();
        }
    }

    /// As many workers as there are CPUs are running (or waiting for a CPU)
    /// in tasks that began less than `grace` ago. Tasks older than that
    /// do not count: a request that keeps a CPU for long is shared with
    /// others by the kernel, as under any MPM, rather than waited for.
    pub fn cpus_taken(&self, grace: Duration) -> bool {
        let busy = self.young_tasks(grace).map(|w| &w.thread);
        cpu::all_in_use(busy, ThreadState::runnable, self.cpus)
    }

    /// Every busy worker has been in its task for `grace` or more.
    pub fn workers_stuck(&self, grace: Duration) -> bool {
        self.young_tasks(grace).next().is_none()
    }

    /// The workers in tasks that began less than `grace` ago.
    fn young_tasks(&self, grace: Duration) -> impl Iterator<Item = &WorkerSlot> + Clone + '_ {
        let now = self.epoch.elapsed().as_nanos() as u64;
        let grace = grace.as_nanos() as u64;
        self.workers.iter().filter(move |w| {
            let since = w.task_since.load(Ordering::Relaxed);
            since != 0 && now.saturating_sub(since) < grace
        })
    }
}

/// A worker's next task: a queued one first, else a ready connection
/// taken without waiting, else it waits as an idle worker: in the
/// connections' pollset if no other worker does (see `Baton`), else asleep
/// until that one leaves with an event. A worker so woken while as many
/// as there are CPUs are running requests dozes instead (`crate::cpu`).
/// `None` when the child is done.
pub fn next_task(rt: &Runtime, events: &mut Events, me: &Arc<Sleeper>) -> Option<Task> {
    // Woken by `release` to take the poller role, and not taken it yet.
    let mut called = false;
    let task = take_task(rt, events, me, &mut called)?;
    if called {
        rt.leave_poller_role();
    }
    Some(task)
}

fn take_task(rt: &Runtime, events: &mut Events, me: &Arc<Sleeper>, called: &mut bool) -> Option<Task> {
    let mut timeout = Some(Duration::ZERO);
    loop {
        match rt.queue.try_pop() {
            Popped::Item(t, waited) => {
                // One ring wakes one worker: pass it on while work is left.
                if !rt.queue.is_empty() {
                    rt.conns.ring();
                }
                let s = stats::get(rt.slot);
                s.dispatched(waited);
                s.queued.store(rt.queue.len() as u32, Ordering::Relaxed);
                return Some(t);
            }
            Popped::Closed => {
                // Whoever sleeps now would wait for a poller that is gone.
                rt.baton.wake_all();
                return None;
            }
            Popped::Empty => {}
        }
        let blocking = timeout.is_none();
        if *called && !blocking && rt.cpus_taken(POLLER_GRACE) {
            // Woken to poll, but what is ready is better left to the
            // workers already keeping the CPUs busy (see `crate::cpu`).
            idle(rt, || rt.baton.doze(me));
            continue;
        }
        if blocking && !rt.baton.try_take() {
            // The role is held: a call this worker carried is spent.
            *called = idle(rt, || rt.baton.sleep(me));
            timeout = Some(Duration::ZERO);
            continue;
        }
        let waited = if blocking {
            *called = false;
            let r = idle(rt, || rt.conns.wait(events, None));
            rt.baton.release();
            r
        } else {
            rt.conns.wait(events, timeout)
        };
        if let Err(e) = waited {
            log::error(sys::APLOG_CRIT, e.raw_os_error().unwrap_or(0),
                "epoll_wait failed. Attempting to shutdown process gracefully");
            rt.stop(Mode::Graceful);
            rt.baton.wake_all();
            return None;
        }
        timeout = None;
        for ev in events.iter() {
            match ev.token {
                BELL => {
                    rt.conns.answer();
                    timeout = Some(Duration::ZERO);
                }
                HALT => rt.baton.wake_all(),
                t => {
                    if let Some(r) = rt.take_ready(Token(t), ev.closed) {
                        return Some(Task::Ready(r));
                    }
                }
            }
        }
    }
}

/// Runs `wait` with the caller counted as an idle worker; a worker becoming
/// idle may lift the accept limit's pause, so the listener is told.
fn idle<R>(rt: &Runtime, wait: impl FnOnce() -> R) -> R {
    rt.queue.idle_while(|| {
        if rt.accept_paused.load(Ordering::SeqCst) {
            rt.poller.wake();
        }
        wait()
    })
}
