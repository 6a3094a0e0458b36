//! What both the parent and a child process read: the generation being
//! served (its pool, listener buckets and pipes of death), whether httpd
//! runs as one process, and the bookkeeping of a child's start and stop
//! (a child in one-process mode records its own stop).

use std::sync::Mutex;

use crate::config;
use crate::ffi::httpd::{self, Pod};
use crate::ffi::pool::PoolRef;
use crate::ffi::socket::Listener;
use crate::ffi::{log, retained, score, sys};

/// One listener bucket: its sockets and the pipe of death of its children.
#[derive(Clone)]
pub struct Bucket {
    pub pod: Option<Pod>,
    pub listeners: Vec<Listener>,
}

/// What open_logs sets up for the generation being started.
#[derive(Clone)]
pub struct Generation {
    pub pconf: PoolRef<'static>,
    pub buckets: Vec<Bucket>,
    pub one_process: bool,
}

static GENERATION: Mutex<Option<Generation>> = Mutex::new(None);
static ONE_PROCESS: Mutex<bool> = Mutex::new(false);

pub fn set_one_process(v: bool) {
    *ONE_PROCESS.lock().unwrap_or_else(|e| e.into_inner()) = v;
}

pub fn one_process() -> bool {
    *ONE_PROCESS.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn set_generation(g: Option<Generation>) {
    *GENERATION.lock().unwrap_or_else(|e| e.into_inner()) = g;
}

pub fn generation() -> Generation {
    GENERATION.lock().unwrap_or_else(|e| e.into_inner()).clone().expect("open_logs ran")
}

pub fn gen_number() -> i32 {
    retained::mpm().my_generation
}

/// A child was reaped or is given up on: free its slot (reclaim callback).
pub fn note_child_stopped(slot: i32, pid: libc::pid_t, generation: i32) {
    let cfg = config::current();
    let Ok(slot) = usize::try_from(slot) else {
        httpd::run_child_status(pid, generation, -1, false);
        return;
    };
    let r = retained::get();
    let (pid, generation) = (score::pid(slot), score::generation(slot));
    for t in 0..cfg.threads_per_child as usize {
        score::update_worker(slot, t, sys::SERVER_DEAD);
    }
    httpd::run_child_status(pid, generation, slot as i32, false);
    if score::quiescing(slot) != 2 {
        r.active_daemons -= 1;
    }
    r.total_daemons -= 1;
    if log::enabled(sys::APLOG_DEBUG) {
        log::error(sys::APLOG_DEBUG, 0, &format!(
            "Child {slot} stopped: pid {pid}, gen {generation}, active {}/{}, total {}/{}/{}, quiescing {}",
            r.active_daemons, cfg.active_daemons_limit, r.total_daemons, r.max_daemon_used,
            cfg.server_limit, score::quiescing(slot)));
    }
    score::set_not_accepting(slot, 0);
    score::set_quiescing(slot, 0);
    score::set_pid(slot, 0);
}

pub fn note_child_started(slot: usize, pid: libc::pid_t) {
    let r = retained::get();
    let generation = gen_number();
    r.total_daemons += 1;
    r.active_daemons += 1;
    score::set_pid(slot, pid);
    score::set_generation(slot, generation);
    httpd::run_child_status(pid, generation, slot as i32, true);
    if log::enabled(sys::APLOG_DEBUG) {
        let cfg = config::current();
        log::error(sys::APLOG_DEBUG, 0, &format!(
            "Child {slot} started: pid {pid}, gen {generation}, active {}/{}, total {}/{}/{}",
            r.active_daemons, cfg.active_daemons_limit, r.total_daemons, r.max_daemon_used, cfg.server_limit));
    }
}

