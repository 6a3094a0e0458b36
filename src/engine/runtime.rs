//! The state a child's threads share (`Runtime`): its pollsets, the parked
//! connections, the task queue, the pools, the counters it publishes, and
//! the limit on accepting. Its operations are spread by concern over the
//! engine's files: stopping (`stop`), parking and waking (`park`), idle
//! workers and the poller role (`idle`).

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::budget;
use crate::config::{self, MpmConfig};
use crate::cpu;
use crate::ffi::pool::{Pool, PoolRef};
use crate::ffi::{httpd, retained, score, socket, stats, sys};
use crate::head::HeadLimits;
use crate::poller::{ConnPoll, Poller};
use crate::queue::{Baton, WorkQueue};
use crate::suspend::Suspended;
use crate::timers::{Parked, Schedule, Wait};

use super::conn::{Conn, Waiting};
use super::idle::WorkerSlot;
use super::stop::Mode;
use super::task::{Callback, Task};

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
    pub(super) suspended: Mutex<Suspended<Box<Conn>>>,
    /// How many connections are suspended (the listener looks without
    /// taking the lock).
    pub(super) suspended_count: AtomicU32,
    /// Timed callbacks registered by modules.
    pub schedule: Mutex<Schedule<Callback>>,
    pub connections: AtomicU32,
    pub lingering: AtomicU32,
    /// Connections waiting for a request head or idle between requests,
    /// as last published: they hold no worker, so the accept limit leaves
    /// them out (the connection budget bounds them).
    waiting: AtomicU32,
    /// ConnectionBudget in force (see `crate::budget`).
    pub budget: u32,
    /// The listener stopped accepting because of the AsyncRequestWorkerFactor
    /// limit; a worker going idle or a connection closing wakes it to check.
    pub accept_paused: AtomicBool,
    pub(super) mode: AtomicU8,
    /// Rung when the mode changes or the listener has ended, for the main
    /// thread, which runs the child_stopping hooks (see `watch_stop`).
    pub(super) stop_bell: (Mutex<()>, Condvar),
    pub(super) listener_done: AtomicBool,
    /// When the listener will next wake by itself, as ns since `epoch`
    /// (u64::MAX before it first sleeps). A worker parking a connection with
    /// an earlier deadline wakes it.
    pub next_wakeup: AtomicU64,
    pub epoch: Instant,
    pools: Mutex<Vec<Pool>>,
    pconf: PoolRef<'static>,
    /// What each worker is doing, as the other threads see it.
    pub(super) workers: Vec<WorkerSlot>,
    /// The CPUs the workers share.
    pub(super) cpus: usize,
    /// MaxConnectionsPerChild countdown (i32::MAX when unlimited).
    pub conns_left: AtomicI32,
    /// Task::Shutdown items in the queue (they are not work clients wait on).
    pub shutdowns_queued: AtomicUsize,
    /// AsyncRequestHead, and how many bytes of a head to look at at most.
    pub async_head: bool,
    pub head_cap: usize,
    /// How long request heads may take, by server.
    pub heads: HeadLimits,
}

impl Runtime {
    /// The runtime of the child in scoreboard `slot`; `heads` are the
    /// servers' limits on request heads (`connection::head_limits`).
    pub fn new(slot: usize, cfg: MpmConfig, pollsets: (Poller, ConnPoll), pconf: PoolRef<'static>, heads: HeadLimits) -> Runtime {
        let (poller, conns) = pollsets;
        let max_conns = httpd::max_requests_per_child();
        Runtime {
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
            waiting: AtomicU32::new(0),
            budget: match cfg.connection_budget {
                0 => budget::from_descriptors(socket::open_files_limit().unwrap_or(1024), cfg.threads_per_child as u32),
                n => n,
            },
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
            heads,
        }
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

    /// Publishes the per-process connection counters to the scoreboard, so
    /// that mod_status (and the parent's choice of a child to retire) always
    /// sees current numbers. Called with the parked set locked.
    pub fn publish(&self, parked: &Parked<Waiting>) {
        let s = stats::get(self.slot);
        s.heads.store(parked.count(Wait::Head) as u32, Ordering::Relaxed);
        s.resting.store(parked.count(Wait::KeepAlive) as u32, Ordering::Relaxed);
        let waiting = budget::WAITS.iter().map(|&w| parked.count(w) as u32).sum();
        self.waiting.store(waiting, Ordering::Release);
        score::set_counters(self.slot, score::ProcessCounters {
            connections: self.connections.load(Ordering::Acquire),
            write_completion: parked.count(Wait::WriteCompletion) as u32,
            lingering_close: self.lingering.load(Ordering::Acquire),
            keep_alive: waiting,
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
    /// Unlike stock, connections waiting for a request head or idle between
    /// requests are left out: they cost no worker, and a slowloris attack
    /// made of them would otherwise stop every child accepting while its
    /// workers are idle. The connection budget bounds them (`budget`).
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
        if conns >= self.budget {
            return Limit::Budget;
        }
        let lingering = self.lingering.load(Ordering::Acquire) + self.waiting.load(Ordering::Acquire);
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
    /// The connection budget is full, and no waiting connection can be
    /// closed for room yet.
    Budget,
}

static RUNTIME: Mutex<Option<Arc<Runtime>>> = Mutex::new(None);

/// The running child's runtime, for hooks called from httpd.
pub fn runtime() -> Option<Arc<Runtime>> {
    RUNTIME.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Makes `rt` the one `runtime` returns (`None`: the child is done).
pub fn set_runtime(rt: Option<Arc<Runtime>>) {
    *RUNTIME.lock().unwrap_or_else(|e| e.into_inner()) = rt;
}
