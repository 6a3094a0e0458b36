//! Seeing that a child has exited without reaping it: reaping stays with
//! ap_wait_or_timeout (which logs crashes and hands other children, piped
//! loggers and cgid, to APR), but the parent can look more often than that
//! function's one-second sleep when a child's exit is awaited.

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
