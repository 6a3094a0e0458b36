//! A child process: its set-up, its threads (the workers and the
//! listener), the signals the parent may send it, and its exit.

use std::sync::Arc;

use crate::config;
use crate::connection;
use crate::engine::{self, Mode, Runtime};
use crate::ffi::httpd::{self, Thread};
use crate::ffi::pool::Pool;
use crate::ffi::{log, retained, stats, sys};
use crate::listener;
use crate::poller::{ConnPoll, Poller};
use crate::process::{self, Bucket};
use crate::worker;

/// Starts one of the child's threads; `None` (logged) when it could not.
fn spawn_thread(pchild: &Pool, main: impl FnOnce(*mut sys::apr_thread_t) + Send + 'static) -> Option<Thread> {
    match httpd::spawn(pchild, main) {
        Ok(t) => Some(t),
        Err(rv) => {
            log::error(sys::APLOG_ALERT, rv, "AH00480: ap_thread_create: unable to create worker thread");
            None
        }
    }
}

/// SIGTERM (the parent giving up on a graceful stop): stop now.
extern "C" fn on_sigterm(_sig: i32) {
    engine::signalled(Mode::Ungraceful);
}

/// SIGUSR1 (the parent retiring this child, chosen for having the fewest
/// connections): stop gracefully.
extern "C" fn on_sigusr1(_sig: i32) {
    engine::signalled(Mode::Graceful);
}

extern "C" fn one_process_signal(sig: i32) -> i32 {
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
        httpd::die_on_signal(libc::SIGTERM);
    }
    httpd::fatal_signal_child_setup();
    let generation = process::generation();
    let pconf = generation.pconf;
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
    let pollsets = match pollsets {
        Ok(p) => p,
        Err(e) => {
            log::error(sys::APLOG_CRIT, e.raw_os_error().unwrap_or(0), "AH00495: Couldn't create the pollset");
            exit_child(pchild, sys::APEXIT_CHILDSICK as i32, false);
        }
    };
    stats::get(slot).reset(std::process::id() as i32);
    let rt = Arc::new(Runtime::new(slot, cfg, pollsets, pconf, connection::head_limits()));
    engine::set_runtime(Some(Arc::clone(&rt)));

    let mut threads = Vec::new();
    for index in 0..cfg.threads_per_child as usize {
        let rt = Arc::clone(&rt);
        match spawn_thread(&pchild, move |thd| worker::run(&rt, index, thd)) {
            Some(t) => threads.push(t),
            None => exit_child(pchild, sys::APEXIT_CHILDSICK as i32, false),
        }
    }
    engine::catch_signals(&rt);
    let listening = Arc::clone(&rt);
    let Some(listener) = spawn_thread(&pchild, move |_| {
        listener::run(&listening, &my.listeners, my.pod);
        listening.listener_finished();
    }) else {
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
    engine::watch_stop(&rt, &pchild);
    listener.join();
    for t in threads {
        t.join();
    }
    engine::set_runtime(None);
    exit_child(pchild, 0, true);
}

