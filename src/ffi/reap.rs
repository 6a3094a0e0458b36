//! Forking children, and seeing that one has exited without reaping it: reaping stays with
//! ap_wait_or_timeout (which logs crashes and hands other children, piped
//! loggers and cgid, to APR), but the parent can look more often than that
//! function's one-second sleep when a child's exit is awaited.

/// Forks a child process (`Ok(0)` in the child). Only httpd's parent,
/// which runs one thread, forks.
pub fn fork() -> std::io::Result<libc::pid_t> {
    // SAFETY: fork in httpd's single-threaded parent.
    let pid = unsafe { libc::fork() };
    if pid < 0 { Err(std::io::Error::last_os_error()) } else { Ok(pid) }
}

/// Whether some child of this process has exited and waits to be reaped.
pub fn child_exit_pending() -> bool {
    // SAFETY: siginfo_t is plain data, zeroed as waitid(2) requires for
    // WNOHANG to be told apart from an exit.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer; WNOWAIT leaves the child to be reaped.
    let rc = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) };
    // SAFETY: waitid filled in info (si_pid stays 0 when none exited).
    rc == 0 && unsafe { info.si_pid() } != 0
}

/// What ap_wait_or_timeout does besides waiting, for a second the parent
/// spent waiting by other means: it updates the global scoreboard status,
/// and every tenth time runs httpd's monitor hook (mod_systemd's status,
/// mod_session_dbd's cleanup), as that function does.
pub fn quiet_second(pconf: crate::ffi::pool::PoolRef) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SECONDS: AtomicU32 = AtomicU32::new(0);
    if SECONDS.fetch_add(1, Ordering::Relaxed) + 1 >= 10 {
        SECONDS.store(0, Ordering::Relaxed);
        // SAFETY: the parent's live pconf and server_rec, on its main thread.
        unsafe { crate::ffi::sys::ap_run_monitor(pconf.as_ptr(), crate::ffi::httpd::server()) };
    }
    // SAFETY: no arguments; httpd's scoreboard is attached in the parent.
    unsafe { crate::ffi::sys::ap_update_global_status() };
}
