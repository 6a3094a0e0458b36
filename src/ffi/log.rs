//! httpd's error log. Messages are formatted in Rust and passed as one `%s`
//! argument, so no format string from Rust ever reaches C.

use std::ffi::CString;
use std::panic::Location;
use std::ptr;

use super::sys;

fn emit(level: u32, status: sys::apr_status_t, s: *const sys::server_rec, msg: &str, at: &Location) {
    let file = CString::new(at.file()).unwrap_or_default();
    let text = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    // SAFETY: all pointers are valid NUL-terminated strings for the call;
    // `s` is null or httpd's server_rec; the format consumes one string.
    unsafe {
        sys::ap_log_error_(
            file.as_ptr(),
            at.line() as i32,
            super::module_index(),
            level as i32,
            status,
            s,
            c"%s".as_ptr(),
            text.as_ptr(),
        )
    };
}

/// Logs about a connection (its client's address in the line), as
/// `ap_log_cerror` does.
#[track_caller]
pub fn conn(level: u32, c: super::httpd::Connection, msg: &str) {
    let at = Location::caller();
    let file = CString::new(at.file()).unwrap_or_default();
    let text = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    // SAFETY: as in `emit`; a Connection is a live conn_rec.
    unsafe {
        sys::ap_log_cerror_(file.as_ptr(), at.line() as i32, super::module_index(), level as i32, 0, c.as_ptr(), c"%s".as_ptr(), text.as_ptr())
    };
}

/// Logs against the main server (`ap_server_conf`).
#[track_caller]
pub fn error(level: u32, status: sys::apr_status_t, msg: &str) {
    // SAFETY: ap_server_conf is set by httpd before any module hook runs
    // and stays valid for the generation; reading the pointer is a copy.
    let s = unsafe { sys::ap_server_conf };
    emit(level, status, s, msg, Location::caller());
}

/// Logs during start-up, when messages go to the console (`APLOG_STARTUP`,
/// no server_rec), as stock MPMs do for their configuration warnings.
#[track_caller]
pub fn startup(level: u32, msg: &str) {
    emit(level | sys::APLOG_STARTUP, 0, ptr::null(), msg, Location::caller());
}

/// Whether the main server logs this module's messages at `level` (its
/// per-module `LogLevel mpm_event:…` if set, else the server's), decided
/// as httpd's own `APLOG_MODULE_IS_LEVEL` does, to skip formatting
/// otherwise.
pub fn enabled(level: u32) -> bool {
    // SAFETY: see `error`; ap_get_server_module_loglevel only reads the
    // server_rec's log configuration.
    unsafe {
        let s = sys::ap_server_conf;
        s.is_null() || sys::ap_get_server_module_loglevel(s, super::module_index()) >= (level & sys::APLOG_LEVELMASK) as i32
    }
}
