//! Requests httpd hands to the MPM's hooks: one being read
//! (post_read_request), one mod_status answers (the MPM's section).

use std::ptr::{self, NonNull};

use crate::ffi::sys;

use super::connection::Connection;
use super::server::{VirtualHost, server_timeouts};

/// A request httpd passes to a hook, live while the hook runs.
#[derive(Debug, Clone, Copy)]
pub struct Request(pub(super) NonNull<sys::request_rec>);

impl Request {
    /// # Safety
    /// `r` is a live request_rec for as long as the value is used.
    pub unsafe fn from_raw(r: *mut sys::request_rec) -> Option<Self> {
        NonNull::new(r).map(Request)
    }

    pub fn connection(self) -> Option<Connection> {
        // SAFETY: live request (from_raw).
        NonNull::new(unsafe { (*self.0.as_ptr()).connection }).map(Connection)
    }

    /// The request's keep-alive and I/O timeouts (µs): the request's virtual
    /// host when it sets KeepAliveTimeout, else the connection's base
    /// server, as stock's post_read_request does.
    pub fn timeouts(self) -> (i64, i64) {
        let r = self.0.as_ptr();
        // SAFETY: live request (from_raw); its server and connection live
        // at least as long.
        let s = unsafe {
            if sys::server_rec::keep_alive_timeout_set_raw((*r).server) != 0 {
                (*r).server
            } else {
                (*(*r).connection).base_server
            }
        };
        // SAFETY: as above.
        unsafe { VirtualHost::from_raw(s) }.map_or_else(server_timeouts, VirtualHost::timeouts)
    }
}

/// The request mod_status is answering, to append our section to.
#[derive(Clone, Copy)]
pub struct StatusRequest(pub(super) NonNull<sys::request_rec>);

impl StatusRequest {
    /// # Safety
    /// `r` is the live request of mod_status's handler.
    pub unsafe fn from_raw(r: *mut sys::request_rec) -> Option<Self> {
        NonNull::new(r).map(StatusRequest)
    }

    pub fn puts(self, s: &str) {
        let len = i32::try_from(s.len()).unwrap_or(i32::MAX);
        // SAFETY: live request; ap_rwrite copies `len` bytes of `s`.
        unsafe { sys::ap_rwrite(s.as_ptr().cast(), len, self.0.as_ptr()) };
    }
}

/// Adds our status_hook to mod_status (an optional hook, so nothing
/// happens when mod_status is not loaded).
pub fn register_status_hook(f: unsafe extern "C" fn(*mut sys::request_rec, i32) -> i32) {
    // SAFETY: the hook name is mod_status's; the function matches its
    // signature int (request_rec *, int).
    unsafe {
        let pfn: unsafe extern "C" fn() = std::mem::transmute(f as *const ());
        sys::apr_optional_hook_add(c"status_hook".as_ptr(), Some(pfn), ptr::null(), ptr::null(), sys::APR_HOOK_MIDDLE as i32);
    }
}
