//! The FFI boundary: the raw bindings (`sys`) and the small safe wrappers the
//! rest of the crate uses instead of touching httpd or APR directly.

pub mod epoll;
pub mod guard;
pub mod httpd;
pub mod log;
pub mod pool;
pub mod reap;
pub mod retained;
pub mod score;
pub mod socket;
pub mod stats;
pub mod sys;

use std::ffi::{CStr, c_char};
use std::sync::atomic::{AtomicI32, Ordering};

/// Borrows a C string from httpd as `&str`, or "" when it is null or not UTF-8.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string alive for `'a`.
pub unsafe fn cstr<'a>(p: *const c_char) -> &'a str {
    if p.is_null() {
        return "";
    }
    // SAFETY: non-null, and the caller vouches for termination and lifetime.
    unsafe { CStr::from_ptr(p) }.to_str().unwrap_or("")
}

/// A raw pointer that may cross threads: used for httpd objects whose
/// ownership moves wholesale from one thread to another (a pool handed to a
/// worker, the process-wide pconf), never shared mutably.
#[derive(Debug)]
pub struct SendPtr<T>(pub *mut T);
// SAFETY: see the type's doc: the pointee is used by one thread at a time.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: shared only for read-only httpd objects (pconf, server_rec).
unsafe impl<T> Sync for SendPtr<T> {}
impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}

/// This module's index in httpd's per-module vectors (configuration,
/// log levels), handed down once by the entry points when httpd registers
/// the module's hooks (at every load), so that nothing here reaches up.
static MODULE_INDEX: AtomicI32 = AtomicI32::new(-1);

pub fn set_module_index(index: i32) {
    MODULE_INDEX.store(index, Ordering::Release);
}

pub fn module_index() -> i32 {
    MODULE_INDEX.load(Ordering::Acquire)
}
