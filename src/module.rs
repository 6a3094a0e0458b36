//! The module record httpd loads (`mpm_event_module`, named "event.c" like
//! stock so that `<IfModule mpm_event_module>` and mod_http2's check for
//! "event.c" work), and the hooks the MPM registers.

use std::ffi::c_ulong;
use std::ptr::{addr_of, null_mut};

use crate::entry;
use crate::ffi::sys;

/// httpd writes module_index, next, name and dynamic_load_handle into this
/// record, so it must be a writable static.
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static mut mpm_event_module: sys::module = sys::module {
    version: sys::MODULE_MAGIC_NUMBER_MAJOR as i32,
    minor_version: sys::MODULE_MAGIC_NUMBER_MINOR as i32,
    module_index: -1,
    name: c"event.c".as_ptr(),
    dynamic_load_handle: null_mut(),
    next: null_mut(),
    magic: sys::MODULE_MAGIC_COOKIE as c_ulong,
    rewrite_args: None,
    create_dir_config: None,
    merge_dir_config: None,
    create_server_config: None,
    merge_server_config: None,
    cmds: (&raw const sys::event_rs_cmds).cast::<sys::command_rec>(),
    register_hooks: Some(entry::register_hooks),
    flags: 0,
};

/// Our index in httpd's per-module configuration vectors.
pub fn index() -> i32 {
    // SAFETY: httpd writes module_index once, at load, before any hook; a
    // plain read of an int.
    unsafe { addr_of!(mpm_event_module.module_index).read() }
}
