//! The parent process: forks and supervises the children, keeps the number
//! of idle threads between MinSpareThreads and MaxSpareThreads, and carries
//! out stop, restart, graceful restart and graceful stop.

use crate::child;
use crate::config::{self, MpmConfig};
use crate::ffi::httpd::{self, Pod};
use crate::ffi::pool::PoolRef;
use crate::ffi::retained::{self, MAX_SPAWN_RATE};
use crate::ffi::{log, reap, score, stats, sys};
use crate::process::{Bucket, Generation, gen_number, generation, note_child_started, note_child_stopped, one_process, set_generation};

/// open_logs: opens the listeners, splits them into buckets, opens a pipe
/// of death per bucket. Returns false (after logging) on failure.
pub fn open_listeners(pconf: PoolRef<'static>, startup: bool) -> bool {
    let fail = |msg: &str| {
        if startup { log::startup(sys::APLOG_ALERT, msg) } else { log::error(sys::APLOG_ALERT, 0, msg) }
        false
    };
    if httpd::setup_listeners() < 1 {
        return fail("no listening sockets available, shutting down");
    }
    let one = one_process();
    let mpm = retained::mpm();
    let wanted = if one { 1 } else if mpm.was_graceful != 0 { mpm.num_buckets } else { 0 };
    let lists = match httpd::duplicate_listeners(pconf, wanted) {
        Ok(l) => l,
        Err(_) => return fail("could not duplicate listeners"),
    };
    let mut buckets = Vec::with_capacity(lists.len());
    for listeners in lists {
        let pod = if one {
            None
        } else {
            match Pod::open(pconf) {
                Ok(p) => Some(p),
                Err(_) => return fail("could not open pipe-of-death"),
            }
        };
        buckets.push(Bucket { pod, listeners });
    }
    retained::get().ensure_buckets(buckets.len());
    mpm.num_buckets = buckets.len() as i32;
    set_generation(Some(Generation { pconf, buckets, one_process: one }));
    true
}

/// Forks a child into `slot`. In one-process mode the child runs here and
/// this returns only when it is done.
fn make_child(slot: usize, bucket: usize) -> bool {
    let r = retained::get();
    r.max_daemon_used = r.max_daemon_used.max(slot as i32 + 1);
    if score::pid(slot) != 0 {
        log::error(sys::APLOG_ERR, 0, &format!(
            "AH03455: BUG: Scoreboard slot {slot} should be empty but is in use by pid {}", score::pid(slot)));
        return false;
    }
    if one_process() {
        note_child_started(slot, std::process::id() as i32);
        child::main(slot, 0);
    }
    let pid = match reap::fork() {
        Ok(pid) => pid,
        Err(e) => {
            log::error(sys::APLOG_ERR, e.raw_os_error().unwrap_or(0), "AH00481: fork: Unable to fork new process");
            // Don't spin trying to fork when the system is out of processes.
            std::thread::sleep(std::time::Duration::from_secs(10));
            return false;
        }
    };
    if pid == 0 {
        httpd::thread_current_after_fork();
        child::main(slot, bucket);
    }
    note_child_started(slot, pid);
    true
}

/// Forks up to `n` children into free scoreboard slots; returns how many.
fn startup_children(n: i32, cfg: &MpmConfig) -> i32 {
    let buckets = retained::mpm().num_buckets.max(1) as usize;
    let mut started = 0;
    for slot in 0..cfg.server_limit as usize {
        if started >= n {
            break;
        }
        if score::pid(slot) != 0 {
            continue;
        }
        if !make_child(slot, slot % buckets) {
            break;
        }
        started += 1;
    }
    started
}

/// Whether a child that is stopping (of an older generation, or retired)
/// still holds a scoreboard slot: its exit will free one.
fn stopping_children_hold_slots(cfg: &MpmConfig) -> bool {
    let my_gen = gen_number();
    (0..cfg.server_limit as usize)
        .any(|s| score::pid(s) != 0 && (score::generation(s) != my_gen || score::quiescing(s) != 0))
}

/// How often the parent looks for an exited child while one is awaited.
const EXIT_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// ap_wait_or_timeout, but returning as soon as (within EXIT_POLL) a child
/// exits instead of after a blind one-second sleep: used while children of
/// the current generation wait for the slots of stopping ones. A second
/// without an exit ends as ap_wait_or_timeout's does (None: time for
/// maintenance).
fn wait_for_exit(pconf: PoolRef) -> Option<(httpd::Exited, i32)> {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        if reap::child_exit_pending() {
            return httpd::wait_or_timeout(pconf);
        }
        let mpm = retained::mpm();
        if mpm.restart_pending != 0 || mpm.shutdown_pending != 0 {
            return None;
        }
        if std::time::Instant::now() >= until {
            reap::quiet_second(pconf);
            return None;
        }
        std::thread::sleep(EXIT_POLL);
    }
}

/// Counts idle threads of the current generation in one bucket's children
/// and forks or retires children to keep them within the spare bounds
/// (stock's perform_idle_server_maintenance).
///
/// `starved` is set when children were wanted but every free slot is held
/// by a stopping child: the caller then reaps promptly and forks into the
/// first slot freed.
fn idle_maintenance(
    bucket: usize,
    cfg: &MpmConfig,
    max_daemon_used: &mut i32,
    had_healthy_child: &mut bool,
    starved: &mut bool,
) -> bool {
    let r = retained::get();
    let num_buckets = retained::mpm().num_buckets.max(1) as usize;
    let my_gen = gen_number();
    let rate = r.spawn_rates()[bucket];
    let mut idle_threads = 0;
    let mut active_threads = 0;
    let mut free_slots = Vec::new();
    let mut last_non_dead: i32 = -1;
    for slot in 0..cfg.server_limit as usize {
        if num_buckets > 1 && slot % num_buckets != bucket {
            continue;
        }
        if slot as i32 >= r.max_daemon_used && free_slots.len() as i32 == rate {
            break;
        }
        if score::pid(slot) == 0 {
            if (free_slots.len() as i32) < rate {
                free_slots.push(slot);
            }
            continue;
        }
        if score::quiescing(slot) == 1 {
            score::set_quiescing(slot, 2);
            r.active_daemons -= 1;
        }
        let counts_idle = score::quiescing(slot) == 0
            && score::not_accepting(slot) == 0
            && score::generation(slot) == my_gen;
        let mut child_active = 0;
        for t in 0..cfg.threads_per_child as usize {
            let status = score::worker_status(slot, t);
            if status <= sys::SERVER_READY && counts_idle {
                idle_threads += 1;
            }
            if (sys::SERVER_READY..sys::SERVER_GRACEFUL).contains(&status) {
                child_active += 1;
            }
        }
        // Threads of stopping children (an old generation finishing its
        // requests, a retired child) do not count against MaxRequestWorkers
        // (stock counts them): they accept nothing, and counting them kept
        // the new generation from growing, with AH00484, while the old one
        // still served its last requests.
        if score::quiescing(slot) == 0 && score::generation(slot) == my_gen {
            active_threads += child_active;
        }
        if child_active == cfg.threads_per_child {
            *had_healthy_child = true;
        }
        last_non_dead = slot as i32;
    }
    *max_daemon_used = (*max_daemon_used).max(last_non_dead + 1);

    if r.sick_child_detected != 0 {
        if *had_healthy_child {
            r.sick_child_detected = 0;
        } else if bucket + 1 < num_buckets {
            return true;
        } else {
            retained::mpm().shutdown_pending = 1;
            log::error(sys::APLOG_ALERT, 0, "AH02324: A resource shortage or other unrecoverable failure \
                was encountered before any child process initialized successfully... httpd is exiting!");
            return false;
        }
    }

    let nb = num_buckets as i32;
    if idle_threads > cfg.max_spare_threads / nb {
        // Retire a child only when no other is already stopping, or when the
        // scoreboard has room for a whole generation besides those stopping.
        let may_kill = r.active_daemons == r.total_daemons
            || cfg.server_limit - r.total_daemons > cfg.active_daemons_limit;
        if log::enabled(sys::APLOG_TRACE5) {
            log::error(sys::APLOG_TRACE5, 0, &format!(
                "{}hutting down one child: active {}/{}, total {}/{}/{}, idle threads {idle_threads}, max workers {}",
                if may_kill { "S" } else { "Not s" }, r.active_daemons, cfg.active_daemons_limit,
                r.total_daemons, r.max_daemon_used, cfg.server_limit, cfg.max_workers));
        }
        if may_kill {
            retire_least_busy(bucket, num_buckets, cfg);
        }
        r.spawn_rates()[bucket] = 1;
    } else if idle_threads < cfg.min_spare_threads / nb {
        if active_threads >= cfg.max_workers / nb {
            if idle_threads == 0 {
                if r.maxclients_reported == 0 {
                    log::error(sys::APLOG_ERR, 0, "AH00484: server reached MaxRequestWorkers setting, \
                        consider raising the MaxRequestWorkers setting");
                    r.maxclients_reported = 1;
                }
            } else if r.near_maxclients_reported == 0 {
                log::error(sys::APLOG_ERR, 0, "AH10159: server is within MinSpareThreads of \
                    MaxRequestWorkers, consider raising the MaxRequestWorkers setting");
                r.near_maxclients_reported = 1;
            }
            r.spawn_rates()[bucket] = 1;
        } else if free_slots.is_empty() {
            // Slots held by children that are finishing their connections
            // come back (GracefulShutdownTimeout bounds them): only a full
            // scoreboard without such children calls for a bigger one.
            if r.total_daemons > r.active_daemons {
                if log::enabled(sys::APLOG_TRACE1) {
                    log::error(sys::APLOG_TRACE1, 0, &format!(
                        "scoreboard full: waiting for {} stopping children to free their slots",
                        r.total_daemons - r.active_daemons));
                }
                *starved = true;
            } else {
                log::error(sys::APLOG_ERR, 0, "AH03490: scoreboard is full, not at MaxRequestWorkers.Increase ServerLimit.");
            }
            r.spawn_rates()[bucket] = 1;
        } else {
            let mut n = free_slots.len().min(r.spawn_rates()[bucket] as usize) as i32;
            if n + r.active_daemons > cfg.active_daemons_limit {
                if r.active_daemons < cfg.active_daemons_limit {
                    n = cfg.active_daemons_limit - r.active_daemons;
                } else {
                    r.spawn_rates()[bucket] = 1;
                    r.hold_off_on_exponential_spawning += 1;
                    n = 0;
                }
            }
            if r.spawn_rates()[bucket] >= 8 {
                log::error(sys::APLOG_INFO, 0, &format!(
                    "AH00486: server seems busy, (you may need to increase StartServers, ThreadsPerChild \
                     or Min/MaxSpareThreads), spawning {n} children, there are around {idle_threads} idle \
                     threads, {} active children, and {} children that are shutting down",
                    r.active_daemons, r.total_daemons));
            }
            for &slot in free_slots.iter().take(n as usize) {
                if make_child(slot, bucket) {
                    *max_daemon_used = (*max_daemon_used).max(slot as i32 + 1);
                }
            }
            if r.hold_off_on_exponential_spawning > 0 {
                r.hold_off_on_exponential_spawning -= 1;
            } else if r.spawn_rates()[bucket] < MAX_SPAWN_RATE / nb {
                r.spawn_rates()[bucket] *= 2;
            }
        }
    } else {
        r.spawn_rates()[bucket] = 1;
    }
    true
}

/// Retires the child of the bucket that holds the fewest connections (stock
/// writes to the pipe of death, and whichever child reads it goes, even one
/// with thousands of connections).
fn retire_least_busy(bucket: usize, num_buckets: usize, cfg: &MpmConfig) {
    let my_gen = gen_number();
    let candidate = (0..cfg.server_limit as usize)
        .filter(|&s| num_buckets <= 1 || s % num_buckets == bucket)
        .filter(|&s| score::pid(s) != 0 && score::generation(s) == my_gen && score::quiescing(s) == 0)
        .min_by_key(|&s| score::connections(s));
    if let Some(slot) = candidate {
        let pid = score::pid(slot);
        if log::enabled(sys::APLOG_TRACE1) {
            log::error(sys::APLOG_TRACE1, 0, &format!(
                "retiring child {slot} (pid {pid}, {} connections): too many idle threads",
                score::connections(slot)));
        }
        httpd::signal_process(pid, libc::SIGUSR1);
    }
}

/// GracefulShutdownTimeout after a graceful restart, children of older
/// generations still alive are told to stop now (SIGTERM), and killed a few
/// seconds later if they still have not; stock lets them live on, holding
/// their scoreboard slots.
fn bound_old_generations(cfg: &MpmConfig) {
    let timeout = httpd::graceful_shutdown_timeout();
    let since = retained::get().last_graceful_ns;
    if timeout <= 0 || since == 0 {
        return;
    }
    let late = retained::monotonic_ns() - since - i64::from(timeout) * 1_000_000_000;
    if late < 0 {
        return;
    }
    let my_gen = gen_number();
    let max = retained::get().max_daemon_used.clamp(0, cfg.server_limit) as usize;
    for slot in 0..max {
        let pid = score::pid(slot);
        if pid == 0 || score::generation(slot) == my_gen {
            continue;
        }
        let sig = if late > 3_000_000_000 { libc::SIGKILL } else { libc::SIGTERM };
        log::error(sys::APLOG_INFO, 0, &format!(
            "child {pid} of generation {} outlived GracefulShutdownTimeout ({timeout}s): sending {}",
            score::generation(slot), if sig == libc::SIGKILL { "SIGKILL" } else { "SIGTERM" }));
        httpd::signal_process(pid, sig);
    }
}

fn main_loop(mut remaining: i32, cfg: &MpmConfig, pconf: PoolRef) {
    let num_buckets = retained::mpm().num_buckets.max(1) as usize;
    let mut successive_kills = 0;
    let mut had_healthy_child = false;
    // The last maintenance wanted children and found no free slot.
    let mut starved = false;
    loop {
        let mpm = retained::mpm();
        if mpm.restart_pending != 0 || mpm.shutdown_pending != 0 {
            return;
        }
        let waited = if remaining > 0 || starved { wait_for_exit(pconf) } else { httpd::wait_or_timeout(pconf) };
        if let Some((exited, raw)) = waited {
            let slot = exited.slot();
            if exited.status == sys::APEXIT_CHILDFATAL as i32 {
                // A fatal child of the current generation stops the server;
                // one of an older generation raced a graceful restart.
                let current = slot.is_none_or(|s| score::generation(s) == gen_number());
                if current {
                    mpm.shutdown_pending = 1;
                    return;
                }
                log::error(sys::APLOG_WARNING, 0, &format!(
                    "AH00487: Ignoring fatal error in child of previous generation (pid {}).", exited.pid));
                retained::get().sick_child_detected = 1;
            } else if exited.status == sys::APEXIT_CHILDSICK as i32 {
                retained::get().sick_child_detected = 1;
            }
            // The maintenance that found no slot runs again at once.
            let mut maintain_now = false;
            if let Some(slot) = slot {
                note_child_stopped(slot as i32, 0, 0);
                if exited.status == sys::APEXIT_CHILDSICK as i32 {
                    retained::get().spawn_rates()[slot % num_buckets] = 1;
                } else if remaining > 0 {
                    make_child(slot, slot % num_buckets);
                    remaining -= 1;
                } else if starved {
                    maintain_now = true;
                }
            } else if exited.other_child(raw) {
                // a piped logger or the cgid daemon: APR handled it
            } else if mpm.was_graceful != 0 {
                log::error(sys::APLOG_WARNING, 0, &format!(
                    "AH00488: long lost child came home! (pid {})", exited.pid));
            }
            // A child killed by a signal is replaced at once, but not more
            // than three in a row, to avoid a fork storm of crashing children.
            if slot.is_none() || !exited.signaled {
                if !maintain_now {
                    continue;
                }
            } else {
                successive_kills += 1;
                if successive_kills >= 3 {
                    if successive_kills % 10 == 3 {
                        log::error(sys::APLOG_WARNING, 0, "AH10392: children are killed successively!");
                    }
                    continue;
                }
                remaining += 1;
            }
        } else {
            successive_kills = 0;
        }

        bound_old_generations(cfg);
        if remaining > 0 {
            let started = startup_children(remaining, cfg);
            remaining -= started;
            // The rest wait for slots that stopping children free (one for
            // one as they exit), unless no such child is left.
            if remaining > 0 && !stopping_children_hold_slots(cfg) {
                remaining = 0;
            }
            // As in stock, no maintenance in a round that forked children
            // (they have not started their threads yet); but a round that
            // forked none goes on to it, so that an old child that never
            // exits cannot hold the maintenance off.
            if started > 0 {
                continue;
            }
        }
        let mut max_used = 0;
        starved = false;
        for b in 0..num_buckets {
            if !idle_maintenance(b, cfg, &mut max_used, &mut had_healthy_child, &mut starved) {
                return;
            }
        }
        retained::get().max_daemon_used = max_used;
    }
}

fn signal_all_children(graceful: bool, cfg: &MpmConfig) {
    for b in generation().buckets {
        if let Some(pod) = b.pod {
            pod.signal_all(cfg.active_daemons_limit, graceful);
        }
    }
}

/// SIGUSR1 (a graceful stop) to every child still running: besides the
/// pipe of death, whose messages are counted for MaxRequestWorkers /
/// ThreadsPerChild running children and which any child of the bucket may
/// read, so that none of the old generation is left running.
fn signal_running_children(cfg: &MpmConfig) {
    for slot in 0..cfg.server_limit as usize {
        let pid = score::pid(slot);
        if pid != 0 && score::quiescing(slot) == 0 {
            httpd::signal_process(pid, libc::SIGUSR1);
        }
    }
}

extern "C" fn reclaim_cb(slot: i32, pid: libc::pid_t, generation: i32) {
    crate::ffi::guard::guard((), || note_child_stopped(slot, pid, generation));
}

/// The mpm hook: runs the server until stop or restart. Returns OK to
/// restart, DONE to exit.
pub fn run(pconf: PoolRef<'static>, plog: PoolRef<'static>) -> i32 {
    let one = one_process();
    let r = retained::get();
    r.stats = stats::attach(r.stats, r.first.server_limit.max(1) as usize);
    httpd::log_pid(pconf);
    if retained::mpm().was_graceful == 0 {
        if !httpd::run_pre_mpm() {
            retained::mpm().mpm_state = sys::AP_MPMQ_STOPPING as i32;
            return sys::DONE;
        }
        score::set_running_generation(gen_number());
    }
    httpd::set_signals(pconf, one);

    let num_buckets = retained::mpm().num_buckets.max(1);
    config::update(|c| c.fit_buckets(num_buckets));
    let cfg = config::current();

    let mut remaining = cfg.start_servers.min(cfg.active_daemons_limit);
    httpd::log_startup_banner(plog);
    retained::mpm().mpm_state = sys::AP_MPMQ_RUNNING as i32;
    if retained::mpm().was_graceful != 0 {
        // Let the old generation drain before spawning exponentially.
        retained::get().hold_off_on_exponential_spawning = 10;
    }
    // After a graceful restart too, the new generation starts now, in the
    // slots that are free: the old children stopped accepting already, so
    // until new ones run, new connections wait in the listen backlog.
    // Stock forks them only for old children reaped in its main loop (one
    // for one) or after a second without any exit; ours stop later than
    // stock's (each keep-alive connection ends after its next response),
    // so that was a second's wait for every client reconnecting. Only
    // children that find no free slot wait for the old ones to exit.
    remaining -= startup_children(remaining, &cfg);

    main_loop(remaining, &cfg, pconf);
    let mpm = retained::mpm();
    mpm.mpm_state = sys::AP_MPMQ_STOPPING as i32;

    if mpm.shutdown_pending != 0 && mpm.is_ungraceful != 0 {
        signal_all_children(false, &cfg);
        httpd::reclaim_children(reclaim_cb);
        httpd::remove_pid(pconf);
        log::error(sys::APLOG_NOTICE, 0, "AH00491: caught SIGTERM, shutting down");
        return sys::DONE;
    }

    if mpm.shutdown_pending != 0 {
        graceful_stop(pconf, &cfg);
        return sys::DONE;
    }

    if one {
        return sys::DONE;
    }

    mpm.my_generation += 1;
    score::set_running_generation(mpm.my_generation);
    if mpm.is_ungraceful == 0 {
        log::error(sys::APLOG_NOTICE, 0, "AH00493: SIGUSR1 received.  Doing graceful restart");
        retained::get().last_graceful_ns = retained::monotonic_ns();
        signal_all_children(true, &cfg);
        signal_running_children(&cfg);
    } else {
        log::error(sys::APLOG_NOTICE, 0, "AH00494: SIGHUP received.  Attempting to restart");
        signal_all_children(false, &cfg);
        httpd::reclaim_children(reclaim_cb);
    }
    sys::OK as i32
}

/// SIGWINCH: stop accepting, let children finish within
/// GracefulShutdownTimeout (unbounded when 0), then stop the rest.
fn graceful_stop(pconf: PoolRef, cfg: &MpmConfig) {
    let mpm = retained::mpm();
    httpd::close_listeners(None);
    signal_all_children(true, cfg);
    signal_running_children(cfg);
    httpd::relieve_children(reclaim_cb);
    httpd::remove_pid(pconf);
    log::error(sys::APLOG_NOTICE, 0, "AH00492: caught SIGWINCH, shutting down gracefully");
    let timeout = httpd::graceful_shutdown_timeout();
    let cutoff = std::time::Instant::now() + std::time::Duration::from_secs(timeout.max(0) as u64);
    mpm.shutdown_pending = 0;
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        httpd::relieve_children(reclaim_cb);
        let max = retained::get().max_daemon_used.max(0) as usize;
        let alive = (0..max).any(|s| httpd::process_alive(score::pid(s)));
        if retained::mpm().shutdown_pending != 0 || !alive || (timeout > 0 && std::time::Instant::now() >= cutoff) {
            break;
        }
    }
    signal_all_children(false, cfg);
    httpd::reclaim_children(reclaim_cb);
}
