//! The parent process's calls into httpd: start-up (detaching, listeners,
//! pipes of death, the pid file, the banner), reaping and signalling its
//! children, the hooks it runs for them.

use std::ffi::{CStr, c_void};
use std::os::fd::RawFd;
use std::ptr::{self, NonNull};

use crate::ffi::pool::PoolRef;
use crate::ffi::socket::Listener;
use crate::ffi::sys;

use super::server;

/// `-DNAME` on the command line.
pub fn config_define(name: &CStr) -> bool {
    // SAFETY: valid C string; read-only lookup.
    unsafe { sys::ap_exists_config_define(name.as_ptr()) != 0 }
}

/// Process-lifetime memory kept across restarts (`ap_retained_data_*`),
/// zeroed when first made.
pub fn retained_data(key: &'static CStr, size: usize) -> (*mut c_void, bool) {
    // SAFETY: key is a static C string; the block lives until the process ends.
    unsafe {
        let p = sys::ap_retained_data_get(key.as_ptr());
        if !p.is_null() {
            return (p, false);
        }
        (sys::ap_retained_data_create(key.as_ptr(), size), true)
    }
}

pub fn unixd_retained() -> *mut sys::ap_unixd_mpm_retained_data {
    // SAFETY: returns httpd's process-lifetime structure.
    unsafe { sys::ap_unixd_mpm_get_retained_data() }
}

pub fn detach(daemonize: bool) -> sys::apr_status_t {
    let how = if daemonize { sys::APR_PROC_DETACH_DAEMONIZE } else { sys::APR_PROC_DETACH_FOREGROUND };
    // SAFETY: forks/setsid per APR; no Rust threads exist in the parent.
    unsafe { sys::apr_proc_detach(how as i32) }
}

pub fn fatal_signal_setup(pconf: PoolRef) {
    // SAFETY: main server and pconf are live.
    unsafe { sys::ap_fatal_signal_setup(server(), pconf.as_ptr()) };
}

pub fn listen_pre_config() {
    // SAFETY: resets core's listener globals; no arguments.
    unsafe { sys::ap_listen_pre_config() };
}

/// Opens the Listen sockets; returns how many there are.
pub fn setup_listeners() -> i32 {
    // SAFETY: main server is live.
    unsafe { sys::ap_setup_listeners(server()) }
}

/// Splits the listeners into buckets (ListenCoresBucketsRatio), one list
/// each. `num` in: buckets wanted (0 = let httpd decide).
pub fn duplicate_listeners(pconf: PoolRef, num: i32) -> Result<Vec<Vec<Listener>>, sys::apr_status_t> {
    let mut buckets: *mut *mut sys::ap_listen_rec = ptr::null_mut();
    let mut n = num;
    // SAFETY: out-pointers are valid; the lists live in pconf.
    let rv = unsafe { sys::ap_duplicate_listeners(pconf.as_ptr(), server(), &mut buckets, &mut n) };
    if rv != 0 {
        return Err(rv);
    }
    // SAFETY: httpd returned `n` list heads.
    Ok((0..n as usize).map(|i| unsafe { Listener::list(*buckets.add(i)) }).collect())
}

/// Closes listeners in this process (all of them, or one bucket's).
pub fn close_listeners(bucket: Option<&[Listener]>) {
    match bucket {
        // SAFETY: the head of a live listener list.
        Some(l) if !l.is_empty() => unsafe { sys::ap_close_listeners_ex(l[0].as_ptr()) },
        Some(_) => {}
        // SAFETY: closes core's global list.
        None => unsafe { sys::ap_close_listeners() },
    }
}

/// A pipe of death: how the parent tells a bucket's children to go.
#[derive(Debug, Clone, Copy)]
pub struct Pod(pub(super) NonNull<sys::ap_pod_t>);

// SAFETY: a pod is a pipe pair in pconf; its operations are syscalls.
unsafe impl Send for Pod {}
// SAFETY: as above.
unsafe impl Sync for Pod {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodSignal {
    None,
    Graceful,
    Restart,
}

impl Pod {
    pub fn open(pconf: PoolRef) -> Result<Pod, sys::apr_status_t> {
        let mut pod = ptr::null_mut();
        // SAFETY: out-pointer valid; the pod lives in pconf.
        let rv = unsafe { sys::ap_mpm_podx_open(pconf.as_ptr(), &mut pod) };
        if rv != 0 {
            return Err(rv);
        }
        Ok(Pod(NonNull::new(pod).expect("ap_mpm_podx_open")))
    }

    pub fn read_fd(self) -> RawFd {
        let mut fd: sys::apr_os_file_t = -1;
        // SAFETY: live pod; pod_in is its read end.
        unsafe { sys::apr_os_file_get(&mut fd, (*self.0.as_ptr()).pod_in) };
        fd
    }

    /// Makes the read end pollable: the children of a bucket share it, so a
    /// read after readiness may find the byte taken by another child and
    /// must not block. Returns the descriptor to watch.
    pub fn pollable_fd(self) -> RawFd {
        let fd = self.read_fd();
        // SAFETY: fcntl on a pipe descriptor we hold.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        fd
    }

    /// Takes one message off the pod, if any (ap_mpm_podx_check's reading,
    /// without blocking).
    pub fn take(self) -> PodSignal {
        let mut c: u8 = 0;
        // SAFETY: reads one byte into a valid u8.
        let n = unsafe { libc::read(self.read_fd(), (&mut c as *mut u8).cast(), 1) };
        match (n, c) {
            (1, sys::AP_MPM_PODX_GRACEFUL_CHAR) => PodSignal::Graceful,
            (1, sys::AP_MPM_PODX_RESTART_CHAR) => PodSignal::Restart,
            _ => PodSignal::None,
        }
    }

    fn mode(graceful: bool) -> sys::ap_podx_restart_t {
        if graceful {
            sys::ap_podx_restart_t_AP_MPM_PODX_GRACEFUL
        } else {
            sys::ap_podx_restart_t_AP_MPM_PODX_RESTART
        }
    }

    /// Asks one (any) child of the bucket to stop.
    pub fn signal(self, graceful: bool) {
        // SAFETY: live pod.
        unsafe { sys::ap_mpm_podx_signal(self.0.as_ptr(), Self::mode(graceful)) };
    }

    /// Asks `n` children of the bucket to stop.
    pub fn signal_all(self, n: i32, graceful: bool) {
        // SAFETY: live pod.
        unsafe { sys::ap_mpm_podx_killpg(self.0.as_ptr(), n, Self::mode(graceful)) };
    }

    /// A child closes the pods of the other buckets.
    pub fn close(self) {
        // SAFETY: live pod; not used after.
        unsafe { sys::ap_mpm_podx_close(self.0.as_ptr()) };
    }
}

pub fn log_pid(pconf: PoolRef) {
    // SAFETY: ap_pid_fname is core's PidFile setting (or null).
    unsafe { sys::ap_log_pid(pconf.as_ptr(), sys::ap_pid_fname) };
}

pub fn remove_pid(pconf: PoolRef) {
    // SAFETY: as in log_pid.
    unsafe { sys::ap_remove_pid(pconf.as_ptr(), sys::ap_pid_fname) };
}

/// Runs pre_mpm (creates the scoreboard).
pub fn run_pre_mpm() -> bool {
    // SAFETY: main server and its process pool are live.
    unsafe { sys::ap_run_pre_mpm((*(*server()).process).pool, sys::ap_scoreboard_e_SB_SHARED) == 0 }
}

pub fn set_signals(pconf: PoolRef, one_process: bool) {
    // SAFETY: installs httpd's parent signal handlers.
    unsafe { sys::ap_unixd_mpm_set_signals(pconf.as_ptr(), one_process as i32) };
}

/// The start-up notices every MPM logs (AH00489, AH00490, command line, and
/// the MPM common lines).
pub fn log_startup_banner(plog: PoolRef) {
    // SAFETY: plain logging calls on live objects.
    unsafe {
        let desc = crate::ffi::cstr(sys::ap_get_server_description()).to_owned();
        let built = crate::ffi::cstr(sys::ap_get_server_built()).to_owned();
        crate::ffi::log::error(sys::APLOG_NOTICE, 0, &format!(
            "AH00489: {desc} (mod_mpm_event_rs {}) configured -- resuming normal operations",
            env!("CARGO_PKG_VERSION")));
        crate::ffi::log::error(sys::APLOG_INFO, 0, &format!("AH00490: Server built: {built}"));
        sys::ap_log_command_line(plog.as_ptr(), server());
        sys::ap_log_mpm_common(server());
    }
}

/// A reaped child process.
#[derive(Debug, Clone, Copy)]
pub struct Exited {
    pub pid: libc::pid_t,
    /// ap_process_child_status's verdict (APEXIT_* or 0).
    pub status: i32,
    pub signaled: bool,
    proc_: sys::apr_proc_t,
}

impl Exited {
    /// The scoreboard slot of the child, if it had one.
    pub fn slot(&self) -> Option<usize> {
        let mut p = self.proc_;
        // SAFETY: reads the scoreboard for the pid.
        let slot = unsafe { sys::ap_find_child_by_pid(&mut p) };
        usize::try_from(slot).ok()
    }

    /// Offers the pid to APR's other-child registry (piped loggers, cgid);
    /// true when it was one of those.
    pub fn other_child(&self, raw_status: i32) -> bool {
        let mut p = self.proc_;
        // SAFETY: plain registry lookup.
        unsafe { sys::apr_proc_other_child_alert(&mut p, sys::APR_OC_REASON_DEATH as i32, raw_status) == 0 }
    }
}

/// Waits up to a second for a child to exit, running the monitor hook
/// (ap_wait_or_timeout). `None` when the second passed.
pub fn wait_or_timeout(pconf: PoolRef) -> Option<(Exited, i32)> {
    let mut why: sys::apr_exit_why_e = 0;
    let mut status = 0;
    let mut proc_ = sys::apr_proc_t::default();
    // SAFETY: valid out-pointers, live pool and server.
    unsafe { sys::ap_wait_or_timeout(&mut why, &mut status, &mut proc_, pconf.as_ptr(), server()) };
    if proc_.pid == -1 {
        return None;
    }
    // SAFETY: logs the exit reason (core dumps, signals) as httpd does.
    let verdict = unsafe { sys::ap_process_child_status(&mut proc_, why, status) };
    let signaled = why & sys::apr_exit_why_e_APR_PROC_SIGNAL != 0;
    Some((Exited { pid: proc_.pid, status: verdict, signaled, proc_ }, status))
}

pub type ReclaimCallback = unsafe extern "C" fn(slot: i32, pid: libc::pid_t, generation: i32);

/// Waits for all children to exit, escalating to SIGTERM and SIGKILL.
pub fn reclaim_children(cb: ReclaimCallback) {
    // SAFETY: the callback is a valid guarded extern fn of ours.
    unsafe { sys::ap_reclaim_child_processes(1, Some(cb)) };
}

/// Reaps the children that exited already, without waiting.
pub fn relieve_children(cb: ReclaimCallback) {
    // SAFETY: as in reclaim_children.
    unsafe { sys::ap_relieve_child_processes(Some(cb)) };
}

/// Signals one of our children (ap_mpm_safe_kill checks it is ours).
pub fn signal_process(pid: libc::pid_t, sig: i32) {
    // SAFETY: ap_mpm_safe_kill refuses pids that are not our children.
    unsafe { sys::ap_mpm_safe_kill(pid, sig) };
}

pub fn process_alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks existence.
    pid > 0 && unsafe { sys::ap_mpm_safe_kill(pid, 0) } == 0
}

pub fn run_child_status(pid: libc::pid_t, generation: i32, slot: i32, started: bool) {
    let state = if started { sys::mpm_child_status_MPM_CHILD_STARTED } else { sys::mpm_child_status_MPM_CHILD_EXITED };
    // SAFETY: runs httpd's child_status hooks with plain values.
    unsafe { sys::ap_run_child_status(server(), pid, generation, slot, state) };
}
