//! The late-head connection filter (see `register_late_head_filter`).

use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use crate::ffi::sys;

/// The connection filter that makes httpd meet a request head's deadline
/// as if it had waited for the head itself: the MPM waited in its pollset
/// instead, and at the deadline hands the connection to httpd with this
/// filter, which reads what is there and reports APR_TIMEUP where a read
/// would have to wait. httpd (and mod_reqtimeout above it) then answer as
/// they do when their own timer runs out: 408, logged. It sits just above
/// core's network filter.
pub(super) static LATE_HEAD: AtomicPtr<sys::ap_filter_rec_t> = AtomicPtr::new(ptr::null_mut());

/// Registers the filter (at every load of the module: the record lives in
/// httpd's filter registry, which is rebuilt with the configuration).
pub fn register_late_head_filter(func: sys::ap_in_filter_func) {
    // SAFETY: a static name and our guarded filter function.
    let rec = unsafe {
        sys::ap_register_input_filter(c"mpm_event_rs_late_head".as_ptr(), func, None, sys::ap_filter_type_AP_FTYPE_NETWORK - 1)
    };
    LATE_HEAD.store(rec, Ordering::Release);
}

/// The late-head filter's body: the next filter's data without waiting,
/// APR_TIMEUP when there is none yet, or only part of a line (a caller
/// reading lines, mod_reqtimeout for one, would wait for the rest by
/// itself; the line is of a request that ends here).
///
/// # Safety
/// httpd's arguments to an input filter: live filter and brigade.
pub unsafe fn read_without_waiting(f: *mut sys::ap_filter_t, bb: *mut sys::apr_bucket_brigade, mode: sys::ap_input_mode_t, readbytes: sys::apr_off_t) -> sys::apr_status_t {
    const TIMEUP: sys::apr_status_t = sys::APR_TIMEUP as sys::apr_status_t;
    // SAFETY: as the caller guarantees; the brigade's list head is a
    // sentinel whose next points back at it when the brigade is empty.
    unsafe {
        let rv = sys::ap_get_brigade((*f).next, bb, mode, sys::apr_read_type_e_APR_NONBLOCK_READ, readbytes);
        if rv == sys::APR_EAGAIN as sys::apr_status_t {
            return TIMEUP;
        }
        let sentinel = ptr::addr_of_mut!((*bb).list).cast::<sys::apr_bucket>();
        if rv != 0 {
            return rv;
        }
        if (*bb).list.next == sentinel {
            return TIMEUP;
        }
        if mode == sys::ap_input_mode_t_AP_MODE_GETLINE && !ends_a_line(bb) {
            sys::apr_brigade_cleanup(bb.cast());
            return TIMEUP;
        }
        rv
    }
}

/// Whether a brigade read by line ends with its line feed.
///
/// # Safety
/// `bb` is a live brigade of in-memory buckets (a line core has read).
unsafe fn ends_a_line(bb: *mut sys::apr_bucket_brigade) -> bool {
    // SAFETY: as the caller guarantees; the buffer holds `len` bytes.
    unsafe {
        let mut len: sys::apr_off_t = 0;
        if sys::apr_brigade_length(bb, 1, &mut len) != 0 || len <= 0 {
            return false;
        }
        let mut buf = vec![0u8; len as usize];
        let mut got = buf.len() as sys::apr_size_t;
        sys::apr_brigade_flatten(bb, buf.as_mut_ptr().cast(), &mut got) == 0 && got > 0 && buf[got as usize - 1] == b'\n'
    }
}
