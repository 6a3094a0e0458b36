//! The listener thread: accepts connections, watches the pipe of death,
//! enforces the parked connections' deadlines, fires timed callbacks. Parked
//! connections that become ready go straight to an idle worker (workers wait
//! in their pollset themselves); only while none is idle does the listener
//! collect them into the task queue, where their wait is seen (mod_status)
//! and bounded (shedding). It never waits for a worker, so timeouts and
//! timers keep running however busy the workers are.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::balance;
use crate::budget;
use crate::connection;
use crate::engine::{self, Limit, Mode, NewSocket, POLLER_GRACE, Runtime, Task, Waiting};
use crate::ffi::httpd::{self, Pod, PodSignal};
use crate::ffi::socket::{self, Accepted, Listener};
use crate::ffi::{log, retained, score, stats, sys};
use crate::poller::{Events, LISTENER_BASE, POD, WAKER};
use crate::timers::{Token, Wait};

/// Most connections accepted from one listener per pass of the loop.
const ACCEPT_BATCH: usize = 32;
/// How long accepting pauses after running out of descriptors or memory.
const SHORTAGE_BACKOFF: Duration = Duration::from_millis(500);
/// Least time between two rounds of shedding idle keep-alive connections.
const SHED_INTERVAL: Duration = Duration::from_millis(100);
/// Only connections idle at least this long are shed: a client that is
/// busy on its connection would likely be sending its next request just as
/// we close it.
const MIN_IDLE_TO_SHED: Duration = Duration::from_secs(1);
/// A plain keep-alive connection idle this long gives its pool back
/// (`Conn::dehydrate`): a client that comes back sooner is served
/// without the cost of a new conn_rec.
const DEHYDRATE_AFTER: Duration = Duration::from_millis(250);
/// The listener never sleeps longer than this, so that parking a connection
/// with a later deadline (every keep-alive one) never has to wake it.
const MAX_SLEEP: Duration = Duration::from_millis(250);
/// While no worker is idle, the listener looks this often for ready
/// connections to collect into the task queue.
const HARVEST_INTERVAL: Duration = Duration::from_millis(20);
/// While connections are suspended, how often the listener looks whether
/// a module moved one on outside a timed callback (httpd 2.4 has no call
/// for a module to say so; see `crate::suspend`).
const SUSPENDED_RECHECK: Duration = Duration::from_millis(20);
/// Least time between two returns of freed memory to the system.
const TRIM_INTERVAL: Duration = Duration::from_secs(1);
/// While accepting is paused for the connection limit, the limit is looked
/// at again at least this often, whatever wakes (or fails to wake) us.
const PAUSED_RECHECK: Duration = Duration::from_millis(50);

struct Accepting<'a> {
    listeners: &'a [Listener],
    /// Per listener: whether its connections are HTTP's (`speaks_http`),
    /// decided once from its protocol.
    http: Vec<bool>,
    /// Registered in the pollset.
    on: bool,
    /// Registered edge-triggered, while yielding (`yield_to_peers`).
    edges: bool,
    closed: bool,
    backoff_until: Option<Instant>,
    /// Leaving new connections to a less loaded child until then (`balance`).
    yield_until: Option<Instant>,
    /// When the last yield ended: a connection still waiting then is the
    /// one no peer took, and is taken whatever the balance. Connections
    /// that come later are weighed again: with clients reconnecting every
    /// few milliseconds (MaxKeepAliveRequests), taking the next one blindly
    /// let every other one through, and the connections piled up on
    /// whichever child happened to win them.
    yielded_at: Option<Instant>,
    shortage_logged: bool,
    /// Why accepting was last paused for the accept limit.
    paused_for: Limit,
    /// Connections closed to make room in the budget, for the log.
    evictions: budget::Report,
    /// No waiting connection is old enough to be closed for room before
    /// then (see `make_room`).
    room_after: Option<Instant>,
}

impl Accepting<'_> {
    /// Starts or stops accepting, as the scoreboard shows it.
    fn set(&mut self, rt: &Runtime, on: bool) {
        if !self.closed {
            score::set_not_accepting(rt.slot, i8::from(!on));
        }
        self.watch(rt, on);
    }

    /// Adds or removes the listening sockets in the pollset. A child that
    /// only yields for a moment stays "accepting" in the scoreboard: the
    /// parent does not count the idle workers of a child that is not.
    fn watch(&mut self, rt: &Runtime, on: bool) {
        if on == self.on || self.closed {
            return;
        }
        for (i, l) in self.listeners.iter().enumerate() {
            let r = if on { rt.poller.add_listener(l.fd(), i) } else { rt.poller.remove(l.fd()) };
            if let Err(e) = r {
                log::error(sys::APLOG_ERR, e.raw_os_error().unwrap_or(0), "listener pollset update failed");
            }
        }
        self.on = on;
        self.edges = false;
    }

    /// Switches the watched listening sockets to edge-triggered or back.
    fn edges(&mut self, rt: &Runtime, edges: bool) {
        if edges == self.edges || !self.on || self.closed {
            return;
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if let Err(e) = rt.poller.listener_edges(l.fd(), i, edges) {
                log::error(sys::APLOG_ERR, e.raw_os_error().unwrap_or(0), "listener pollset update failed");
            }
        }
        self.edges = edges;
    }

    /// Leaves new connections to the other children for `balance::YIELD_FOR`,
    /// unless another child of the bucket yields already and still has
    /// reason to (`balance::outdated`). Alone, it stops watching the
    /// listening sockets: its listener is not woken for connections it
    /// leaves to the others. Beside a peer that yields on an outdated view,
    /// it keeps them, edge-triggered: then nobody else may be taking
    /// connections, and each one that arrives wakes it to weigh the loads
    /// again (`still_yielding`), without the ones left waiting waking it
    /// again and again.
    fn yield_to_peers(&mut self, rt: &Runtime, mine: u32) -> bool {
        let me = stats::get(rt.slot);
        me.yielding.store(true, Ordering::SeqCst);
        // Two children that decide to yield at once both see the other's
        // flag here (SeqCst), and at most one of them carries clearly more
        // than the other: neither yields, or that one does.
        let mut beside = false;
        for s in peers(rt).filter(|&s| stats::get(s).yielding.load(Ordering::SeqCst)) {
            if !balance::outdated(load(s), mine) {
                me.yielding.store(false, Ordering::SeqCst);
                return false;
            }
            beside = true;
        }
        if beside {
            self.edges(rt, true);
        } else {
            self.watch(rt, false);
        }
        self.yield_until = Some(Instant::now() + balance::YIELD_FOR);
        true
    }

    fn end_yield(&mut self, rt: &Runtime) {
        self.yield_until = None;
        self.yielded_at = Some(Instant::now());
        stats::get(rt.slot).yielding.store(false, Ordering::SeqCst);
        if self.edges {
            self.edges(rt, false);
        } else {
            self.watch(rt, true);
        }
    }

    /// A connection arrived while yielding: the yield goes on while this
    /// child still carries clearly more than a peer, else it ends now (see
    /// `balance`).
    fn still_yielding(&mut self, rt: &Runtime) -> bool {
        if self.yield_until.is_none() {
            return false;
        }
        if over_peers(rt, load(rt.slot)) {
            return true;
        }
        self.end_yield(rt);
        false
    }

    /// Stops accepting for good: closes this bucket's listening sockets.
    fn close(&mut self, rt: &Runtime) {
        self.set(rt, false);
        if !self.closed {
            self.closed = true;
            httpd::close_listeners(Some(self.listeners));
        }
    }
}

pub fn run(rt: &Runtime, listeners: &[Listener], pod: Option<Pod>) {
    for l in listeners {
        l.set_nonblocking();
    }
    if let Some(pod) = pod
        && let Err(e) = rt.poller.add_pod(pod.pollable_fd())
    {
        log::error(sys::APLOG_CRIT, e.raw_os_error().unwrap_or(0), "cannot watch the pipe of death");
        rt.stop(Mode::Graceful);
    }
    let mut acc = Accepting {
        listeners,
        http: listeners.iter().map(|l| speaks_http(l.protocol().as_deref())).collect(),
        on: false,
        edges: false,
        closed: false,
        backoff_until: None,
        yield_until: None,
        yielded_at: None,
        shortage_logged: false,
        paused_for: Limit::Under,
        evictions: budget::Report::default(),
        room_after: None,
    };
    stats::get(rt.slot).budget.store(rt.budget, Ordering::Relaxed);
    acc.set(rt, true);
    let mut events = Events::with_capacity(256);
    let mut graceful_begun = false;
    let mut last_shed = Instant::now();
    let mut last_trim = Instant::now();
    // When to give freed memory back, after connections were dehydrated.
    let mut trim_after: Option<Instant> = None;

    loop {
        match rt.mode() {
            Mode::Ungraceful => break,
            Mode::Graceful => {
                if !graceful_begun {
                    graceful_begun = true;
                    begin_graceful(rt, &mut acc, pod);
                }
                if rt.connections.load(Ordering::Acquire) == 0 {
                    break;
                }
            }
            Mode::Running => {}
        }

        // Until the deadline is known, a worker parking a connection (or a
        // module registering a callback) wakes us: else one that read the
        // last, already passed, deadline would let us sleep past its own.
        rt.next_wakeup.store(u64::MAX, Ordering::SeqCst);
        let next = next_deadline(rt, &acc);
        let deadline = trim_after.map_or(next, |t| t.min(next));
        rt.next_wakeup.store(deadline.saturating_duration_since(rt.epoch).as_nanos() as u64, Ordering::SeqCst);
        let timeout = Some(deadline.saturating_duration_since(Instant::now()));
        if let Err(e) = rt.poller.wait(&mut events, timeout) {
            log::error(sys::APLOG_CRIT, e.raw_os_error().unwrap_or(0),
                "epoll_wait failed. Attempting to shutdown process gracefully");
            rt.stop(Mode::Graceful);
            continue;
        }

        for ev in events.iter() {
            match ev.token {
                WAKER => {
                    rt.poller.reset_waker();
                    if let Some(mode) = engine::signalled_stop() {
                        rt.stop(mode);
                    }
                }
                POD => {
                    let Some(p) = pod else { continue };
                    let mode = match p.take() {
                        PodSignal::Graceful => Mode::Graceful,
                        PodSignal::Restart => Mode::Ungraceful,
                        PodSignal::None => continue,
                    };
                    // One message per child: leave the rest to the others.
                    let _ = rt.poller.remove(p.read_fd());
                    rt.stop(mode);
                }
                t if t <= Token::MAX => drain(rt, Token(t), ev.closed),
                t => {
                    if let Some(i) = t.checked_sub(LISTENER_BASE).map(|i| i as usize).filter(|&i| i < listeners.len())
                        && !acc.still_yielding(rt)
                    {
                        // A burst of connections is taken in one go, not one
                        // per pass of this loop, which would let the listen
                        // backlog fill (then clients wait a second for
                        // their SYN to be sent again).
                        for _ in 0..ACCEPT_BATCH {
                            if !accept_one(rt, &mut acc, i) {
                                break;
                            }
                        }
                    }
                }
            }
        }

        if rt.queue.idle() == 0 {
            harvest(rt, &mut events);
        }
        rt.baton.fill_vacancy(POLLER_GRACE, || rt.workers_stuck(POLLER_GRACE));
        let now = Instant::now();
        expire(rt, now);
        run_due_callbacks(rt, now);
        rt.resume_moved();
        if connection::dehydrate_idle(rt, now - DEHYDRATE_AFTER) > 0 {
            trim_after.get_or_insert(last_trim + TRIM_INTERVAL);
        }
        if trim_after.is_some_and(|t| now >= t) {
            socket::trim_heap();
            last_trim = now;
            trim_after = None;
        }
        if !rt.stopping() && now.duration_since(last_shed) >= SHED_INTERVAL && shed_idle(rt) {
            last_shed = now;
        }
        if acc.backoff_until.is_some_and(|b| now >= b) {
            acc.backoff_until = None;
        }
        if acc.yield_until.is_some_and(|y| now >= y) {
            acc.end_yield(rt);
        }
        let paused = rt.accept_paused.load(Ordering::SeqCst);
        if paused && acc.paused_for == Limit::Budget {
            make_room(rt, &mut acc);
        }
        let hysteresis = acc.paused_for == Limit::Connections;
        if !rt.stopping() && acc.backoff_until.is_none() && paused && rt.above_limit(hysteresis) == Limit::Under {
            rt.accept_paused.store(false, Ordering::SeqCst);
            if log::enabled(sys::APLOG_TRACE1) {
                log::error(sys::APLOG_TRACE1, 0, &format!(
                    "Accepting new connections again: {} active conns ({} lingering/0 clogged/{} suspended), {} idle workers",
                    rt.connections.load(Ordering::Acquire), rt.lingering.load(Ordering::Acquire),
                    rt.suspended_count(), rt.queue.idle()));
            }
            acc.set(rt, true);
        }
    }

    rt.queue.close();
    rt.conns.halt();
    if rt.mode() == Mode::Ungraceful {
        drop(rt.queue.drain());
    }
}

/// The earliest of: a parked connection's deadline or time to dehydrate, a
/// timed callback, a look at suspended connections, the end of an accept back-off or yield, a look at a vacant poller
/// role, the next collection of ready connections while no worker is idle,
/// MAX_SLEEP from now. Under
/// the same locks, publishes this child's figures for mod_status (they are
/// those the last iteration left).
fn next_deadline(rt: &Runtime, acc: &Accepting) -> Instant {
    let s = stats::get(rt.slot);
    let (expiry, dehydrate) = {
        let parked = rt.parked.lock().unwrap_or_else(|e| e.into_inner());
        s.pollset.store(parked.len() as u32, Ordering::Relaxed);
        (parked.next_expiry(), parked.oldest(Wait::KeepAlive).map(|t| t + DEHYDRATE_AFTER))
    };
    let timer = {
        let schedule = rt.schedule.lock().unwrap_or_else(|e| e.into_inner());
        s.timers.store(schedule.len() as u32, Ordering::Relaxed);
        schedule.next()
    };
    s.queued.store(rt.queue.len() as u32, Ordering::Relaxed);
    let recheck = rt.accept_paused.load(Ordering::SeqCst).then(|| Instant::now() + PAUSED_RECHECK);
    let harvest = (rt.queue.idle() == 0).then(|| Instant::now() + HARVEST_INTERVAL);
    let vacancy = rt.baton.vacancy_check(POLLER_GRACE);
    let suspended = rt.has_suspended().then(|| Instant::now() + SUSPENDED_RECHECK);
    let cap = Instant::now() + MAX_SLEEP;
    [expiry, dehydrate, timer, acc.backoff_until, acc.yield_until, recheck, harvest, vacancy, suspended]
        .into_iter()
        .flatten()
        .fold(cap, Instant::min)
}

/// Graceful stop (restart or retirement): no new connections; the workers
/// show SERVER_GRACEFUL. Idle keep-alive connections are not cut: each is
/// closed at its own KeepAliveTimeout, or its next request is answered with
/// "Connection: close" (httpd sees the MPM stopping), so that no client
/// races a request against our FIN.
///
/// The pipe of death is no longer read: the parent writes one message per
/// running child (MaxRequestWorkers / ThreadsPerChild of them), and one
/// taken by a child already stopping (retired, or at
/// MaxConnectionsPerChild) left a running child of the old generation
/// accepting with the old configuration, and counted against the new
/// generation's children. A stopping child still stops at once on SIGTERM,
/// which the parent sends on a restart or stop.
fn begin_graceful(rt: &Runtime, acc: &mut Accepting, pod: Option<Pod>) {
    if log::enabled(sys::APLOG_TRACE6) {
        log::error(sys::APLOG_TRACE6, 0, &format!(
            "closing listeners (connection_count={})", rt.connections.load(Ordering::Acquire)));
    }
    acc.close(rt);
    if let Some(p) = pod {
        // Already gone when the pod is what stopped us.
        let _ = rt.poller.remove(p.read_fd());
    }
    score::set_quiescing(rt.slot, 1);
    for t in 0..rt.cfg.threads_per_child as usize {
        score::update_worker(rt.slot, t, sys::SERVER_GRACEFUL);
    }
    connection::end_idle_sessions(rt);
    connection::shorten_lingering(rt);
}

/// Whether connections on a listener of `protocol` are HTTP's: their
/// requests wait in the pollset for a complete head (AsyncRequestHead) and,
/// idle between them, may give their conn_rec back (dehydration). "https"
/// is: its TLS bytes go to a worker as they come (see head::scan), but
/// until then the connection waits without one, as HTTP's does. Any other
/// protocol is a module's (FTP, SMTP...), whose server may speak first and
/// whose state lives in the conn_rec: its connections go to a worker at
/// once, and come back to it whole, as in stock. A record without a
/// protocol gets httpd's default, "http".
pub fn speaks_http(protocol: Option<&str>) -> bool {
    protocol.is_none_or(|p| p.eq_ignore_ascii_case("http") || p.eq_ignore_ascii_case("https"))
}

/// Accepts a connection from listener `i` if the limits allow; says
/// whether it did.
fn accept_one(rt: &Runtime, acc: &mut Accepting, i: usize) -> bool {
    let (l, http) = (acc.listeners[i], acc.http[i]);
    if !acc.on || rt.stopping() {
        return false;
    }
    make_room(rt, acc);
    let limit = rt.above_limit(false);
    if limit != Limit::Under {
        // Pause, then look again: a worker that went idle in between saw no
        // pause and did not wake us (SeqCst on both sides).
        acc.paused_for = limit;
        rt.accept_paused.store(true, Ordering::SeqCst);
        if limit == Limit::Budget {
            // Its workers stay available in the scoreboard: the parent
            // starting children up to MaxRequestWorkers (and logging
            // AH00484) for want of descriptors would be the wrong cure.
            acc.watch(rt, false);
        } else {
            acc.set(rt, false);
        }
        if rt.above_limit(false) == Limit::Under {
            rt.accept_paused.store(false, Ordering::SeqCst);
            acc.set(rt, true);
            return false;
        }
        if log::enabled(sys::APLOG_DEBUG) {
            log::error(sys::APLOG_DEBUG, 0, &format!(
                "Too many open connections ({}), not accepting new conns in this process",
                rt.connections.load(Ordering::Acquire)));
        }
        return false;
    }
    if acc.yielded_at.take().is_none_or(|at| at.elapsed() >= balance::YIELD_FOR) {
        let mine = load(rt.slot);
        if over_peers(rt, mine) && acc.yield_to_peers(rt, mine) {
            return false;
        }
    }
    let pool = match rt.pool() {
        Ok(p) => p,
        Err(rv) => {
            log::error(sys::APLOG_CRIT, rv, "AH03097: Failed to create transaction pool");
            shortage(rt, acc);
            return false;
        }
    };
    match l.accept(&pool) {
        Accepted::Socket(sock) => {
            if acc.shortage_logged {
                log::error(sys::APLOG_NOTICE, 0, "accepting connections again after a resource shortage");
                acc.shortage_logged = false;
            }
            rt.connection_opened();
            connection::accepted(rt, NewSocket::accepted(sock, pool, http));
            if rt.conns_left.fetch_sub(1, Ordering::AcqRel) == 1 {
                log::error(sys::APLOG_TRACE1, 0, "Stopping process due to MaxConnectionsPerChild");
                rt.stop(Mode::Graceful);
            }
            true
        }
        Accepted::Nothing => {
            rt.recycle(pool);
            false
        }
        Accepted::Shortage(rv) => {
            rt.recycle(pool);
            if !acc.shortage_logged {
                log::error(sys::APLOG_ERR, rv, "out of descriptors or memory accepting connections: \
                    pausing accept, open connections are still served");
                acc.shortage_logged = true;
            }
            shortage(rt, acc);
            false
        }
    }
}

/// A child's load (`balance::load`) as it last published it.
fn load(slot: usize) -> u32 {
    let s = stats::get(slot);
    balance::load(score::counters(slot), s.heads.load(Ordering::Relaxed) + s.resting.load(Ordering::Relaxed))
}

/// Whether a child carrying `mine` should leave new connections to the
/// least loaded of its peers (`balance::should_yield`).
fn over_peers(rt: &Runtime, mine: u32) -> bool {
    balance::should_yield(mine, || peers(rt).map(load).min())
}

/// The other children of this generation that accept from the same
/// listening sockets (the same bucket), by scoreboard slot.
fn peers(rt: &Runtime) -> impl Iterator<Item = usize> + '_ {
    let buckets = retained::mpm().num_buckets.max(1) as usize;
    (0..rt.cfg.server_limit as usize)
        .filter(move |&s| s != rt.slot && s % buckets == rt.slot % buckets)
        .filter(|&s| {
            score::pid(s) != 0
                && score::generation(s) == rt.generation
                && score::quiescing(s) == 0
                && score::not_accepting(s) == 0
        })
}

/// Out of descriptors or memory: pause accepting for a moment and keep
/// serving the open connections, rather than retiring the child.
fn shortage(rt: &Runtime, acc: &mut Accepting) {
    acc.set(rt, false);
    acc.backoff_until = Some(Instant::now() + SHORTAGE_BACKOFF);
    rt.accept_paused.store(true, Ordering::SeqCst);
}

/// No worker is idle: ready connections are taken out of the workers'
/// pollset into the task queue, where the next free worker takes them in
/// order and their wait counts for shedding (see `shed_idle`).
fn harvest(rt: &Runtime, events: &mut Events) {
    if rt.conns.wait(events, Some(Duration::ZERO)).is_err() {
        return;
    }
    for ev in events.iter() {
        if let Some(r) = rt.ready_from(ev) {
            rt.push(Task::Ready(r));
        }
    }
}

/// The connection budget is full: closes the waiting connections that made
/// the least progress for the longest (see `budget`), and says so in the
/// log (rate-limited). Those that need a worker to close (whole ones) still
/// count until it has: accepting pauses meanwhile (Limit::Budget).
fn make_room(rt: &Runtime, acc: &mut Accepting) {
    let n = budget::room_to_make(rt.connections.load(Ordering::Acquire), rt.budget);
    if n == 0 {
        return;
    }
    let now = Instant::now();
    // While the budget stays full of connections too young to close, the
    // listener would look through all of them on every pass: a waiting
    // connection only ever gets younger (its wait starts again), so none
    // can qualify before the oldest one does.
    if acc.room_after.is_some_and(|t| now < t) {
        return;
    }
    let closing = {
        let mut parked = rt.parked.lock().unwrap_or_else(|e| e.into_inner());
        let candidates = budget::WAITS
            .iter()
            .flat_map(|&w| parked.entries(w))
            .map(|(key, item, since)| budget::Candidate { key, since, progress: item.head_progress() })
            .collect::<Vec<_>>();
        let oldest = candidates.iter().map(|c| c.since).min().unwrap_or(now);
        let chosen = budget::choose(candidates, n, now);
        acc.room_after = chosen.is_empty().then(|| oldest + budget::MIN_AGE);
        let closing: Vec<_> = chosen.into_iter().filter_map(|c| Some((parked.remove(c.key)?, c))).collect();
        rt.publish(&parked);
        closing
    };
    let closed = closing.len() as u64;
    stats::get(rt.slot).evicted.fetch_add(closed, Ordering::Relaxed);
    let trace = log::enabled(sys::APLOG_TRACE1);
    for ((item, wait, _), c) in closing {
        if trace {
            log::error(sys::APLOG_TRACE1, 0, &format!(
                "closed for room (ConnectionBudget): {}, waiting {} ms, {} bytes of its request head since its first",
                socket::peer(item.fd()), now.saturating_duration_since(c.since).as_millis(), c.progress));
        }
        connection::evict(rt, item, wait);
    }
    if let Some(k) = acc.evictions.closed(closed, now)
        && log::enabled(sys::APLOG_WARNING)
    {
        log::error(sys::APLOG_WARNING, 0, &format!(
            "connection budget full ({} open connections per child, ConnectionBudget): closed {k} waiting for \
             a request head or idle, least progress first, since the last such message",
            rt.budget));
    }
}

/// A connection in lingering close sent more (or its FIN): drained here.
fn drain(rt: &Runtime, token: Token, closed: bool) {
    if let Some(r) = rt.take_ready(token, closed)
        && let Some(task) = connection::ready(rt, r.item, r.wait, r.since, None)
    {
        rt.push(task);
    }
}

/// Connections past their deadline.
fn expire(rt: &Runtime, now: Instant) {
    let expired = {
        let mut parked = rt.parked.lock().unwrap_or_else(|e| e.into_inner());
        let e = parked.expire(now);
        if !e.is_empty() {
            rt.publish(&parked);
        }
        e
    };
    for (item, wait) in expired {
        connection::expired(rt, item, wait);
    }
}

fn run_due_callbacks(rt: &Runtime, now: Instant) {
    let due = rt.schedule.lock().unwrap_or_else(|e| e.into_inner()).due(now);
    for cb in due {
        rt.push(Task::Callback(cb));
    }
}

/// When work waits for a worker, ends as many of the oldest idle keep-alive
/// connections as there are waiting tasks, so that their clients' next
/// requests go to a less busy child; never all at once, and never one whose
/// next request has arrived (those are not parked any more).
fn shed_idle(rt: &Runtime) -> bool {
    // Ends already queued count against the shortage: each round sheds only
    // for work that nothing has answered yet.
    let ending = rt.shutdowns_queued.load(Ordering::Acquire);
    let backlog = rt.queue.len().saturating_sub(2 * ending);
    if backlog == 0 || rt.queue.idle() > 0 {
        return false;
    }
    // A moment's backlog (a proxied request to this same server waiting for
    // a second worker, say) is no shortage: only work that has waited a
    // while sheds anything.
    if rt.queue.oldest_wait().is_none_or(|w| w < SHED_INTERVAL) {
        return false;
    }
    let shed = {
        let mut parked = rt.parked.lock().unwrap_or_else(|e| e.into_inner());
        let before = Instant::now() - MIN_IDLE_TO_SHED;
        let mut s = Vec::new();
        // Dehydrated ones first: they have been idle longest.
        for wait in [Wait::Idle, Wait::KeepAlive, Wait::KeepAliveWhole] {
            s.extend(parked.take_oldest(wait, backlog - s.len(), before));
        }
        rt.publish(&parked);
        s
    };
    if shed.is_empty() {
        return false;
    }
    if log::enabled(sys::APLOG_TRACE1) {
        log::error(sys::APLOG_TRACE1, 0, &format!(
            "all workers busy with {backlog} tasks waiting: closing {} idle keep-alive connections", shed.len()));
    }
    for (item, _) in shed {
        match item {
            Waiting::Conn(conn) => rt.shutdown(conn),
            Waiting::New(new) => connection::end_idle(rt, new),
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::speaks_http;

    #[test]
    fn only_http_listeners_wait_for_heads() {
        for p in [None, Some("http"), Some("https"), Some("HTTP")] {
            assert!(speaks_http(p), "{p:?}");
        }
        for p in [Some("banner"), Some("ftp"), Some("smtp"), Some(""), Some("http2")] {
            assert!(!speaks_http(p), "{p:?}");
        }
    }
}
