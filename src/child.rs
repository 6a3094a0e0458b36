//! A child process: its set-up, the state its threads share (`Runtime`),
//! the worker threads, and how it stops (gracefully or not).

use std::ffi::c_void;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::config::{self, MpmConfig};
use crate::connection::{self, Callback, Conn, Ready, Task, Waiting, Worker};
use crate::cpu::{self, ThreadState};
use crate::ffi::httpd::{self, Thread};
use crate::ffi::pool::{Pool, PoolRef};
use crate::ffi::socket::{self, Listener};
use crate::ffi::{guard, log, score, sys};
use crate::listener;
use crate::process::{self, Bucket};
use crate::poller::{BELL, ConnPoll, Event, Events, HALT, Interest, Poller};
use crate::queue::{Baton, Popped, Sleeper, WorkQueue};
use crate::retained;
use crate::stats;
use crate::suspend::Suspended;
use crate::timers::{Parked, Schedule, Token, Wait};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Mode {
    Running = 0,
    Graceful = 1,
    Ungraceful = 2,
}

/// Transaction pools kept for reuse beyond ThreadsPerChild, after which
/// they are destroyed: a pool keeps the memory of the largest connection it
/// served, and idle connections give theirs back (dehydration) only for it
/// to be reused or freed, not hoarded.
const SPARE_RECYCLED_POOLS: usize = 16;

/// How long the poller role may stay free while workers sleep before the
/// listener looks whether every busy worker is in a long task (then it
/// wakes one for the role): under load the workers that finish requests
/// serve what is ready and take the role themselves.
pub const POLLER_GRACE: Duration = Duration::from_millis(20);

/// One worker thread as the other threads of its child see it.
struct WorkerSlot {
    /// The socket it is serving, for an ungraceful stop (-1: none).
    fd: AtomicI32,
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

/// What the listener, the workers and the main thread of a child share.
pub struct Runtime {
    pub slot: usize,
    pub cfg: MpmConfig,
    pub generation: i32,
    pub pid: libc::pid_t,
    /// The listener's pollset.
    pub poller: Poller,
    /// The parked connections, which idle workers wait on.
    pub conns: ConnPoll,
    /// Which idle worker waits in `conns`.
    pub baton: Baton,
    pub queue: WorkQueue<Task>,
    pub parked: Mutex<Parked<Waiting>>,
    /// Connections a module suspended (CONN_STATE_SUSPENDED), and the
    /// timed callbacks running, which may be moving them on.
    suspended: Mutex<Suspended<Box<Conn>>>,
    /// How many connections are suspended (the listener looks without
    /// taking the lock).
    suspended_count: AtomicU32,
    /// Timed callbacks registered by modules.
    pub schedule: Mutex<Schedule<Callback>>,
    pub connections: AtomicU32,
    pub lingering: AtomicU32,
    /// The listener stopped accepting because of the AsyncRequestWorkerFactor
    /// limit; a worker going idle or a connection closing wakes it to check.
    pub accept_paused: AtomicBool,
    mode: AtomicU8,
    /// Rung when the mode changes or the listener has ended, for the main
    /// thread, which runs the child_stopping hooks (see `watch_stop`).
    stop_bell: (Mutex<()>, Condvar),
    listener_done: AtomicBool,
    /// When the listener will next wake by itself, as ns since `epoch`
    /// (u64::MAX before it first sleeps). A worker parking a connection with
    /// an earlier deadline wakes it.
    pub next_wakeup: AtomicU64,
    pub epoch: Instant,
    pools: Mutex<Vec<Pool>>,
    pconf: PoolRef<'static>,
    /// What each worker is doing, as the other threads see it.
    workers: Vec<WorkerSlot>,
    /// The CPUs the workers share.
    cpus: usize,
    /// MaxConnectionsPerChild countdown (i32::MAX when unlimited).
    pub conns_left: AtomicI32,
    /// Task::Shutdown items in the queue (they are not work clients wait on).
    pub shutdowns_queued: AtomicUsize,
    /// AsyncRequestHead, and how many bytes of a head to look at at most.
    pub async_head: bool,
    pub head_cap: usize,
    /// How long request heads may take, by server.
    pub heads: crate::head::HeadLimits,
}

// SAFETY: PoolRef (pconf) is used only to create subpools, which APR allows
// from any thread for a pool that is not being destroyed; everything else
// is Sync on its own.
unsafe impl Sync for Runtime {}
// SAFETY: as above.
unsafe impl Send for Runtime {}

impl Runtime {
    pub fn mode(&self) -> Mode {
        match self.mode.load(Ordering::Acquire) {
            0 => Mode::Running,
            1 => Mode::Graceful,
            _ => Mode::Ungraceful,
        }
    }

    pub fn stopping(&self) -> bool {
        self.mode() != Mode::Running
    }

    /// Starts stopping this child (only ever towards a harsher mode).
    pub fn stop(&self, mode: Mode) {
        let prev = self.mode.fetch_max(mode as u8, Ordering::AcqRel);
        if prev >= mode as u8 {
            return;
        }
        retained::mpm().mpm_state = sys::AP_MPMQ_STOPPING as i32;
        if mode == Mode::Ungraceful {
            // Unblock workers stuck in a read or write of a client socket.
            for w in &self.workers {
                let fd = w.fd.load(Ordering::Acquire);
                if fd >= 0 {
                    socket::shutdown(fd);
                }
            }
        }
        self.poller.wake();
        self.ring_stop_bell();
    }

    fn ring_stop_bell(&self) {
        let _g = self.stop_bell.0.lock().unwrap_or_else(|e| e.into_inner());
        self.stop_bell.1.notify_all();
    }

    /// The listener has returned: no stop can be asked for any more.
    fn listener_finished(&self) {
        self.listener_done.store(true, Ordering::SeqCst);
        self.ring_stop_bell();
    }

    /// A transaction pool for a new connection: a recycled one if any.
    pub fn pool(&self) -> Result<Pool, sys::apr_status_t> {
        if let Some(p) = self.pools.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(p);
        }
        self.pconf.child_with_allocator(httpd::max_mem_free())
    }

    /// Takes back a (cleared) transaction pool.
    pub fn recycle(&self, mut pool: Pool) {
        pool.clear();
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if pools.len() < self.cfg.threads_per_child as usize + SPARE_RECYCLED_POOLS {
            pools.push(pool);
        }
    }

    pub fn lingering_started(&self) {
        self.lingering.fetch_add(1, Ordering::AcqRel);
    }

    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::AcqRel);
        self.publish_now();
    }

    pub fn connection_closed(&self, lingering: bool) {
        if lingering {
            self.lingering.fetch_sub(1, Ordering::AcqRel);
        }
        let left = self.connections.fetch_sub(1, Ordering::AcqRel) - 1;
        self.publish_now();
        if (left == 0 && self.stopping()) || self.accept_paused.load(Ordering::SeqCst) {
            self.poller.wake();
        }
    }

    /// Parks a connection in the pollset with a deadline. Arming happens
    /// under the parked-set lock so that a worker woken by its event (or
    /// the listener) can never take the connection before it is armed.
    pub fn park(&self, mut item: Waiting, wait: Wait, timeout: Duration, since: Instant, interest: Interest) {
        let fd = item.fd();
        let registered = item.mark_registered(wait);
        let deadline = since + timeout;
        let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        let token = parked.insert(item, wait, timeout, since);
        // Lingering closes wait in the listener's set: it drains them.
        let armed = if wait == Wait::Linger {
            self.poller.arm(fd, token, interest, registered)
        } else {
            self.conns.arm(fd, token, interest, registered)
        };
        if let Err(e) = armed {
            let item = parked.remove(token).map(|(c, _, _)| c);
            drop(parked);
            log::error(sys::APLOG_ERR, e.raw_os_error().unwrap_or(0), "AH03093: pollset add failure, closing connection");
            match item {
                Some(Waiting::Conn(c)) => c.close(self),
                Some(Waiting::New(n)) => n.close(self),
                None => {}
            }
            return;
        }
        self.publish(&parked);
        drop(parked);
        self.wake_for(deadline);
    }

    /// Wakes the listener if it sleeps past `deadline`.
    fn wake_for(&self, deadline: Instant) {
        let at = deadline.saturating_duration_since(self.epoch).as_nanos() as u64;
        if at < self.next_wakeup.load(Ordering::SeqCst) {
            self.poller.wake();
        }
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

    /// Queues a task and wakes an idle worker for it.
    pub fn push(&self, task: Task) {
        self.queue.push(task);
        self.conns.ring();
    }

    /// Takes a parked connection whose event fired, if it is still parked:
    /// the listener may have taken it first (timeout, shedding,
    /// dehydration), and then the event is stale.
    pub fn take_ready(&self, token: Token, closed: bool) -> Option<Ready> {
        let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        let (item, wait, since) = parked.remove(token)?;
        self.publish(&parked);
        Some(Ready { item, wait, since, closed })
    }

    /// The parked connection that has been ready longest, if any, taken
    /// without waiting.
    pub fn ready_now(&self) -> Option<Ready> {
        let mut events = Events::with_capacity(1);
        self.conns.wait(&mut events, Some(Duration::ZERO)).ok()?;
        let ev = events.iter().next()?;
        self.ready_from(ev)
    }

    /// The connection behind an event of the workers' pollset, for whoever
    /// collects events there for others (not to serve themselves).
    pub fn ready_from(&self, ev: Event) -> Option<Ready> {
        match ev.token {
            // Not ours: a worker may have just gone idle and wait for it.
            BELL => {
                self.conns.ring();
                None
            }
            HALT => None,
            t => self.take_ready(Token(t), ev.closed),
        }
    }

    /// Gives a parked connection to a worker for (short) lingering close.
    pub fn shutdown(&self, conn: Box<Conn>) {
        conn.trace(sys::APLOG_TRACE6, "deferring close");
        self.shutdowns_queued.fetch_add(1, Ordering::AcqRel);
        self.push(Task::Shutdown(conn));
    }

    /// A module suspended `conn`. A timed callback may already have moved
    /// it on while its worker was still getting here (suspend_connection
    /// hooks), with no later event to notice: that is looked at now.
    pub fn suspend(&self, conn: Box<Conn>) {
        self.with_suspended(|s| s.push(conn));
    }

    /// A timed callback starts: connections it moves on wait for its
    /// `callback_returned`.
    pub fn callback_started(&self) -> u64 {
        // No look at the suspended set here: a move seen now would have
        // to wait for this callback too, which cannot have made it.
        self.suspended.lock().unwrap_or_else(|e| e.into_inner()).callback_started()
    }

    /// Resumes what the callback numbered `n` (and any other mover that
    /// is done) moved on.
    pub fn callback_returned(&self, n: u64) {
        self.with_suspended(|s| s.callback_returned(n));
    }

    /// Resumes suspended connections moved on outside timed callbacks (a
    /// module's own thread, another connection's request): the listener
    /// looks every SUSPENDED_RECHECK while any is suspended.
    pub fn resume_moved(&self) {
        if self.has_suspended() {
            self.with_suspended(|_| ());
        }
    }

    pub fn has_suspended(&self) -> bool {
        self.suspended_count() > 0
    }

    pub fn suspended_count(&self) -> u32 {
        self.suspended_count.load(Ordering::Acquire)
    }

    /// Runs `f` on the suspended set, then queues every connection that
    /// may go back to a worker now (see `crate::suspend`).
    fn with_suspended(&self, f: impl FnOnce(&mut Suspended<Box<Conn>>)) {
        let moved = {
            let mut s = self.suspended.lock().unwrap_or_else(|e| e.into_inner());
            let before = s.len();
            f(&mut s);
            let moved = if s.is_empty() { Vec::new() } else { s.take_moved(|c| !c.still_suspended()) };
            if s.len() != before {
                self.suspended_count.store(s.len() as u32, Ordering::Release);
                score::set_suspended(self.slot, s.len() as u32);
            }
            moved
        };
        for conn in moved {
            self.push(Task::Resume(conn));
        }
    }

    /// `ap_mpm_register_timed_callback`: runs `cb` on a worker after `delay`.
    pub fn register_callback(&self, delay: Duration, cb: Callback) {
        let at = Instant::now() + delay;
        self.schedule.lock().unwrap_or_else(|e| e.into_inner()).push(at, cb);
        self.wake_for(at);
    }

    /// Publishes the per-process connection counters to the scoreboard, so
    /// that mod_status (and the parent's choice of a child to retire) always
    /// sees current numbers. Called with the parked set locked.
    pub fn publish(&self, parked: &Parked<Waiting>) {
        stats::get(self.slot).heads.store(parked.count(Wait::Head) as u32, Ordering::Relaxed);
        score::set_counters(self.slot, score::ProcessCounters {
            connections: self.connections.load(Ordering::Acquire),
            write_completion: parked.count(Wait::WriteCompletion) as u32,
            lingering_close: self.lingering.load(Ordering::Acquire),
            keep_alive: [Wait::KeepAlive, Wait::KeepAliveWhole, Wait::Idle, Wait::Head]
                .iter()
                .map(|&w| parked.count(w) as u32)
                .sum(),
            wait_io: parked.count(Wait::WaitIo) as u32,
        });
    }

    /// Publishes after a change that did not touch the parked set.
    pub fn publish_now(&self) {
        let parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        self.publish(&parked);
    }

    /// Stock's connections_above_limit: accept no more while open
    /// connections (less lingering ones) reach ThreadsPerChild plus
    /// AsyncRequestWorkerFactor per idle worker, or no worker is idle.
    ///
    /// `hysteresis`: count one idle worker less, as stock does while it is
    /// not accepting because of the connection count, so that accepting
    /// does not flip on and off around the limit. A pause for want of an
    /// idle worker ends as soon as one is idle again (each worker going
    /// idle wakes the listener for that), without hysteresis: else, with
    /// many connections on a child, new ones would wait for several idle
    /// workers at once, which a loaded child rarely has.
    pub fn above_limit(&self, hysteresis: bool) -> Limit {
        let idle = self.queue.idle() as u32;
        if idle == 0 {
            return Limit::Busy;
        }
        let conns = self.connections.load(Ordering::Acquire);
        let lingering = self.lingering.load(Ordering::Acquire);
        let limit = self.cfg.threads_per_child as u32
            + idle.saturating_sub(u32::from(hysteresis)) * (self.cfg.worker_factor / config::WORKER_FACTOR_SCALE);
        if conns > lingering && conns - lingering >= limit { Limit::Connections } else { Limit::Under }
    }

}

/// Where a child stands against its accept limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Under,
    /// No worker is idle.
    Busy,
    /// Too many connections for the idle workers (AsyncRequestWorkerFactor).
    Connections,
}

/// Per-thread start argument.
struct ThreadArg {
    rt: Arc<Runtime>,
    index: usize,
    listeners: Vec<Listener>,
    pod: Option<httpd::Pod>,
}

unsafe extern "C" fn worker_main(thd: *mut sys::apr_thread_t, arg: *mut c_void) -> *mut c_void {
    // SAFETY: arg is the Box<ThreadArg> leaked by spawn_thread for us.
    let arg = unsafe { Box::from_raw(arg.cast::<ThreadArg>()) };
    guard::guard_child_thread(|| worker_loop(&arg.rt, arg.index, thd));
    std::ptr::null_mut()
}

unsafe extern "C" fn listener_main(_thd: *mut sys::apr_thread_t, arg: *mut c_void) -> *mut c_void {
    // SAFETY: as in worker_main.
    let arg = unsafe { Box::from_raw(arg.cast::<ThreadArg>()) };
    guard::guard_child_thread(|| {
        listener::run(&arg.rt, &arg.listeners, arg.pod);
        arg.rt.listener_finished();
    });
    std::ptr::null_mut()
}

fn spawn_thread(pchild: &Pool, main: httpd::ThreadMain, arg: ThreadArg) -> Option<Thread> {
    let raw = Box::into_raw(Box::new(arg));
    // SAFETY: worker_main and listener_main take the box back; it is not
    // touched here again unless the thread was not created.
    match unsafe { httpd::spawn(pchild, main, raw.cast()) } {
        Ok(t) => Some(t),
        Err(rv) => {
            // SAFETY: the thread was not created, so the box is still ours.
            drop(unsafe { Box::from_raw(raw) });
            log::error(sys::APLOG_ALERT, rv, "AH00480: ap_thread_create: unable to create worker thread");
            None
        }
    }
}

fn worker_loop(rt: &Runtime, index: usize, thread: *mut sys::apr_thread_t) {
    let slot = rt.slot;
    score::set_worker_identity(slot, index, rt.pid, rt.generation);
    score::update_worker(slot, index, sys::SERVER_STARTING);
    let w = Worker { slot, index, thread, conn_id: (slot * rt.cfg.thread_limit as usize + index) as i64 };
    let mut events = Events::with_capacity(1);
    let me = Arc::new(Sleeper::default());
    let mine = &rt.workers[index];
    mine.thread.open_own();
    let mut peek = vec![0u8; if rt.async_head { rt.head_cap } else { 0 }];
    loop {
        let status = if rt.stopping() { sys::SERVER_GRACEFUL } else { sys::SERVER_READY };
        score::update_worker(slot, index, status);
        let Some(task) = next_task(rt, &mut events, &me) else { break };
        if rt.mode() == Mode::Ungraceful {
            // Dropping the task destroys its pool and closes its socket.
            drop(task);
            continue;
        }
        if let Task::Shutdown(_) = task {
            rt.shutdowns_queued.fetch_sub(1, Ordering::AcqRel);
        }
        let fd: RawFd = match &task {
            Task::New(n) => n.fd(),
            Task::Resume(c) | Task::Shutdown(c) => c.fd(),
            Task::Ready(r) => r.item.fd(),
            Task::Callback(_) => -1,
        };
        mine.fd.store(fd, Ordering::Release);
        mine.task_since.store(rt.epoch.elapsed().as_nanos().max(1) as u64, Ordering::Relaxed);
        connection::serve(rt, &w, task, &mut peek);
        mine.task_since.store(0, Ordering::Relaxed);
        mine.fd.store(-1, Ordering::Release);
    }
    let status = if rt.mode() == Mode::Ungraceful { sys::SERVER_DEAD } else { sys::SERVER_GRACEFUL };
    score::update_worker(slot, index, status);
}

/// A worker's next task: a queued one first, else a ready connection
/// taken without waiting, else it waits as an idle worker: in the
/// connections' pollset if no other worker does (see `Baton`), else asleep
/// until that one leaves with an event. A worker so woken while as many
/// as there are CPUs are running requests dozes instead (`crate::cpu`).
/// `None` when the child is done.
fn next_task(rt: &Runtime, events: &mut Events, me: &Arc<Sleeper>) -> Option<Task> {
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

static RUNTIME: Mutex<Option<Arc<Runtime>>> = Mutex::new(None);

/// The running child's runtime, for hooks called from httpd.
pub fn runtime() -> Option<Arc<Runtime>> {
    RUNTIME.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// A stop asked for by signal: 0 none, else a `Mode`. Signal handlers can
/// only store atomics and write to the listener's eventfd.
static SIGNALLED: AtomicU8 = AtomicU8::new(0);
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

fn signalled(mode: Mode) {
    SIGNALLED.fetch_max(mode as u8, Ordering::SeqCst);
    let fd = WAKE_FD.load(Ordering::SeqCst);
    let one: u64 = 1;
    // SAFETY: write(2) is async-signal-safe; 8 bytes from a valid u64.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// SIGTERM (the parent giving up on a graceful stop): stop now.
unsafe extern "C" fn on_sigterm(_sig: i32) {
    signalled(Mode::Ungraceful);
}

/// SIGUSR1 (the parent retiring this child, chosen for having the fewest
/// connections): stop gracefully.
unsafe extern "C" fn on_sigusr1(_sig: i32) {
    signalled(Mode::Graceful);
}

/// The stop a signal asked for, if any (read by the listener when woken).
pub fn signalled_stop() -> Option<Mode> {
    match SIGNALLED.load(Ordering::SeqCst) {
        1 => Some(Mode::Graceful),
        2 => Some(Mode::Ungraceful),
        _ => None,
    }
}

unsafe extern "C" fn just_die(_sig: i32) {
    // SAFETY: ends the process at once, as stock's just_die does.
    unsafe { libc::_exit(0) };
}

unsafe extern "C" fn one_process_signal(sig: i32) -> i32 {
    i32::from(sig == libc::SIGTERM || sig == libc::SIGINT)
}

/// Ends the child process. `stopping_told`: the child_stopping hooks
/// already ran (`watch_stop`); else they run now, as for a child that
/// never got to run (stock's clean_child_exit).
fn exit_child(pchild: Pool, code: i32, stopping_told: bool) -> ! {
    retained::mpm().mpm_state = sys::AP_MPMQ_STOPPING as i32;
    if !stopping_told {
        httpd::run_child_stopping(&pchild, false);
    }
    drop(pchild);
    if process::one_process() {
        process::note_child_stopped(0, 0, 0);
    }
    std::process::exit(code);
}

/// The body of a child process; never returns.
pub fn main(slot: usize, bucket: usize) -> ! {
    let one = process::one_process();
    retained::mpm().mpm_state = sys::AP_MPMQ_STARTING as i32;
    if !one {
        httpd::set_signal(libc::SIGTERM, just_die);
    }
    httpd::fatal_signal_child_setup();
    let generation = process::generation();
    // SAFETY: pconf lives until the process exits.
    let pconf = unsafe { PoolRef::from_raw(generation.pconf.0) }.expect("pconf");
    let pchild = pconf.child(c"pchild");
    if !one && httpd::thread_main_create(&pchild).is_err() {
        log::error(sys::APLOG_EMERG, 0, "AH10377: Couldn't initialize child main thread");
        exit_child(pchild, sys::APEXIT_CHILDFATAL as i32, false);
    }
    let my: Bucket = generation.buckets[bucket].clone();
    for (i, b) in generation.buckets.iter().enumerate() {
        if i != bucket {
            httpd::close_listeners(Some(&b.listeners));
            if let Some(pod) = b.pod {
                pod.close();
            }
        }
    }
    httpd::reopen_scoreboard(&pchild);
    if !httpd::drop_privileges(&pchild) {
        exit_child(pchild, sys::APEXIT_CHILDFATAL as i32, false);
    }
    if httpd::setup_signal_thread() != 0 {
        log::error(sys::APLOG_EMERG, 0, "AH00479: Couldn't initialize signal thread");
        exit_child(pchild, sys::APEXIT_CHILDFATAL as i32, false);
    }
    httpd::run_child_init(&pchild);

    let cfg = config::current();
    let pollsets = Poller::new().and_then(|p| Ok((p, ConnPoll::new()?)));
    let (poller, conns) = match pollsets {
        Ok(p) => p,
        Err(e) => {
            log::error(sys::APLOG_CRIT, e.raw_os_error().unwrap_or(0), "AH00495: Couldn't create the pollset");
            exit_child(pchild, sys::APEXIT_CHILDSICK as i32, false);
        }
    };
    stats::get(slot).reset(std::process::id() as i32);
    let max_conns = httpd::max_requests_per_child();
    let rt = Arc::new(Runtime {
        slot,
        cfg,
        generation: retained::mpm().my_generation,
        pid: std::process::id() as i32,
        poller,
        conns,
        baton: Baton::default(),
        queue: WorkQueue::default(),
        parked: Mutex::new(Parked::default()),
        suspended: Mutex::new(Suspended::default()),
        suspended_count: AtomicU32::new(0),
        schedule: Mutex::new(Schedule::default()),
        connections: AtomicU32::new(0),
        lingering: AtomicU32::new(0),
        accept_paused: AtomicBool::new(false),
        mode: AtomicU8::new(Mode::Running as u8),
        stop_bell: (Mutex::new(()), Condvar::new()),
        listener_done: AtomicBool::new(false),
        next_wakeup: AtomicU64::new(u64::MAX),
        epoch: Instant::now(),
        pools: Mutex::new(Vec::new()),
        pconf,
        workers: (0..cfg.threads_per_child).map(|_| WorkerSlot::default()).collect(),
        cpus: cpu::cpus(),
        conns_left: AtomicI32::new(if max_conns > 0 { max_conns } else { i32::MAX }),
        shutdowns_queued: AtomicUsize::new(0),
        async_head: cfg.async_request_head,
        head_cap: httpd::request_head_cap(),
        heads: connection::head_limits(),
    });
    *RUNTIME.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&rt));

    let mut threads = Vec::new();
    for index in 0..cfg.threads_per_child as usize {
        let arg = ThreadArg { rt: Arc::clone(&rt), index, listeners: Vec::new(), pod: None };
        match spawn_thread(&pchild, worker_main, arg) {
            Some(t) => threads.push(t),
            None => exit_child(pchild, sys::APEXIT_CHILDSICK as i32, false),
        }
    }
    SIGNALLED.store(0, Ordering::SeqCst);
    WAKE_FD.store(rt.poller.waker_fd(), Ordering::SeqCst);
    let arg = ThreadArg { rt: Arc::clone(&rt), index: 0, listeners: my.listeners.clone(), pod: my.pod };
    let Some(listener) = spawn_thread(&pchild, listener_main, arg) else {
        rt.stop(Mode::Ungraceful);
        exit_child(pchild, sys::APEXIT_CHILDSICK as i32, false);
    };
    retained::mpm().mpm_state = sys::AP_MPMQ_RUNNING as i32;

    if one {
        httpd::wait_for_stop_signal(one_process_signal);
        rt.stop(Mode::Ungraceful);
    } else {
        // The listener watches the pipe of death; this thread only takes
        // the signals the parent may send.
        httpd::set_signal(libc::SIGTERM, on_sigterm);
        httpd::set_signal(libc::SIGUSR1, on_sigusr1);
        httpd::unblock_signal(libc::SIGTERM);
        httpd::unblock_signal(libc::SIGUSR1);
    }
    watch_stop(&rt, &pchild);
    listener.join();
    for t in threads {
        t.join();
    }
    *RUNTIME.lock().unwrap_or_else(|e| e.into_inner()) = None;
    exit_child(pchild, 0, true);
}

/// Runs the child_stopping hooks as soon as the child starts to stop, and
/// again if a graceful stop turns ungraceful, as stock's signal_threads
/// does: modules (mod_http2) wake or abort their sessions then, not after
/// every connection has drained. On the main thread, as in stock for a
/// stop from the parent: whichever thread asked for the stop (the listener,
/// mostly) carries on with it meanwhile. Returns once the listener has
/// ended, when no stop can come any more.
fn watch_stop(rt: &Runtime, pchild: &Pool) {
    let mut told = Mode::Running;
    let mut g = rt.stop_bell.0.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let mode = rt.mode();
        if mode > told {
            drop(g);
            httpd::run_child_stopping(pchild, mode == Mode::Graceful);
            told = mode;
            g = rt.stop_bell.0.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        if rt.listener_done.load(Ordering::SeqCst) {
            return;
        }
        g = rt.stop_bell.1.wait(g).unwrap_or_else(|e| e.into_inner());
    }
}
