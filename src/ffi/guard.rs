//! The one fence at every entry point from httpd: a Rust panic never unwinds
//! into C. In the parent a panic fails the hook (httpd then stops with our
//! log line); in a child thread it ends that child only.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use super::log;
use super::sys;

static HOOK: Once = Once::new();

/// Routes panic messages, with their location, to httpd's error log.
fn install_panic_hook() {
    HOOK.call_once(|| {
        panic::set_hook(Box::new(|info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(non-string panic payload)".to_owned());
            let at = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            log::error(
                sys::APLOG_CRIT,
                0,
                &format!("mod_mpm_event_rs: panic at {at}: {msg} (pid {})", std::process::id()),
            );
        }));
    });
}

/// Runs `f`, turning a panic into `fallback` (already logged by the hook).
pub fn guard<R>(fallback: R, f: impl FnOnce() -> R) -> R {
    install_panic_hook();
    panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// Runs a child thread's body; a panic there ends the child process (the
/// parent replaces it), since the child's shared state can no longer be
/// trusted.
pub fn guard_child_thread(f: impl FnOnce()) {
    install_panic_hook();
    if panic::catch_unwind(AssertUnwindSafe(f)).is_err() {
        // SAFETY: _exit ends the process at once; no Rust state is used after.
        unsafe { libc::_exit(sys::APEXIT_CHILDSICK as i32) };
    }
}
