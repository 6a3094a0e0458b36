//! The configuration as the MPM reads it: servers and virtual hosts, their
//! limits and timeouts, directives, loaded modules.

use std::ffi::{CStr, CString};
use std::ptr::{self, NonNull};

use crate::ffi::socket::ClientSocket;
use crate::ffi::sys;

use super::server;

/// A server_rec (the main server or a virtual host): configuration, live
/// as long as the configuration generation.
#[derive(Debug, Clone, Copy)]
pub struct VirtualHost(pub(super) NonNull<sys::server_rec>);

impl VirtualHost {
    /// # Safety
    /// `s` is a live server_rec of the current configuration.
    pub unsafe fn from_raw(s: *mut sys::server_rec) -> Option<Self> {
        NonNull::new(s).map(VirtualHost)
    }

    /// KeepAliveTimeout and Timeout (µs).
    pub fn timeouts(self) -> (i64, i64) {
        // SAFETY: live server_rec (from_raw).
        unsafe { ((*self.0.as_ptr()).keep_alive_timeout, (*self.0.as_ptr()).timeout) }
    }

    /// Identifies the server (its address) for lookups.
    pub fn key(self) -> usize {
        self.0.as_ptr() as usize
    }

    /// The server a connection on `sock` belongs to until its request names
    /// a host: httpd's own lookup by the local address (the default
    /// virtual host of that address and port, else the main server), as
    /// it makes the connection's `base_server`.
    pub fn of_connection(sock: ClientSocket) -> VirtualHost {
        // SAFETY: ap_update_vhost_given_ip reads only local_addr of the
        // conn_rec and writes its vhost fields; a zeroed conn_rec on the
        // stack serves, with the socket's own address (in its pool).
        unsafe {
            let mut c = sys::conn_rec { base_server: server(), ..Default::default() };
            let mut local = ptr::null_mut();
            if sys::apr_socket_addr_get(&mut local, sys::apr_interface_e_APR_LOCAL, sock.as_ptr()) == 0 && !local.is_null() {
                c.local_addr = local;
                sys::ap_update_vhost_given_ip(&mut c);
            }
            VirtualHost(NonNull::new(c.base_server).expect("the main server"))
        }
    }
}

/// The main server's KeepAliveTimeout and Timeout (µs).
pub fn server_timeouts() -> (i64, i64) {
    // SAFETY: ap_server_conf is set before any hook that asks and lives
    // as long as the configuration.
    unsafe { VirtualHost::from_raw(server()) }.map_or((0, 0), VirtualHost::timeouts)
}

pub fn max_mem_free() -> usize {
    // SAFETY: copying core's MaxMemFree setting.
    unsafe { sys::ap_max_mem_free as usize }
}

pub fn max_requests_per_child() -> i32 {
    // SAFETY: copying core's MaxConnectionsPerChild setting.
    unsafe { sys::ap_max_requests_per_child }
}

pub fn graceful_shutdown_timeout() -> i32 {
    // SAFETY: copying core's GracefulShutdownTimeout setting.
    unsafe { sys::ap_graceful_shutdown_timeout }
}

/// A directive being read (cmd_parms), live while its setter runs.
#[derive(Debug, Clone, Copy)]
pub struct Directive(pub(super) NonNull<sys::cmd_parms>);

impl Directive {
    /// # Safety
    /// `cmd` is the live cmd_parms of the directive being read.
    pub unsafe fn from_raw(cmd: *mut sys::cmd_parms) -> Option<Self> {
        NonNull::new(cmd).map(Directive)
    }

    /// `ap_check_cmd_context(cmd, GLOBAL_ONLY)`: the error text, if any.
    pub fn global_only(self) -> Option<*const libc::c_char> {
        // SAFETY: live cmd_parms (from_raw).
        let err = unsafe { sys::ap_check_cmd_context(self.0.as_ptr(), sys::GLOBAL_ONLY) };
        (!err.is_null()).then_some(err)
    }

    pub fn name(self) -> String {
        // SAFETY: the cmd_parms and its command_rec are live (from_raw).
        unsafe { crate::ffi::cstr((*(*self.0.as_ptr()).cmd).name).to_owned() }
    }

    /// Copies an error message into the directive's pool, for httpd to print.
    pub fn error(self, msg: &str) -> *const libc::c_char {
        let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
        // SAFETY: live cmd_parms; apr_pstrdup copies into its pool, which
        // outlives the message.
        unsafe { sys::apr_pstrdup((*self.0.as_ptr()).pool, c.as_ptr()) }
    }
}

/// ExtendedStatus is re-read with the configuration; MPMs reset it first.
pub fn reset_extended_status() {
    // SAFETY: plain store to core's global, in the single-threaded parent.
    unsafe { sys::ap_extended_status = 0 };
}

/// The most of a request head worth looking at before handing the
/// connection to a worker: the request line plus LimitRequestFields fields
/// of LimitRequestFieldSize, but no more than 64 KiB (a head that large is
/// handed over when that much has arrived).
pub fn request_head_cap() -> usize {
    // SAFETY: reads plain ints of the main server.
    let (line, size, fields) = unsafe {
        let s = server();
        ((*s).limit_req_line, (*s).limit_req_fieldsize, (*s).limit_req_fields)
    };
    let limit = i64::from(line.max(0)) + i64::from(size.max(0)) * i64::from(fields.max(1));
    limit.clamp(1024, 64 << 10) as usize
}

/// Whether a module is loaded, by its source file name ("mod_reqtimeout.c").
pub fn module_loaded(name: &CStr) -> bool {
    // SAFETY: read-only lookup in httpd's module list.
    !unsafe { sys::ap_find_linked_module(name.as_ptr()) }.is_null()
}

/// Every server (the main one first, then each virtual host) with the
/// arguments of `directive` in its own section of the configuration (in
/// `<If...>` sections too, whatever their condition): a virtual host's
/// section is the `<VirtualHost>` block it was defined by.
pub fn directive_by_server(directive: &str) -> Vec<(VirtualHost, Vec<String>)> {
    /// (file, line) of each `<VirtualHost>` block, with what it holds.
    type Sections = Vec<((String, u32), Vec<String>)>;
    fn walk(mut d: *mut sys::ap_directive_t, name: &str, out: &mut Vec<String>, vhosts: &mut Sections) {
        while !d.is_null() {
            // SAFETY: ap_conftree is the parsed configuration, alive while
            // the configuration is; its nodes are read only.
            let (dname, args, child, next, file, line) = unsafe {
                ((crate::ffi::cstr((*d).directive)), crate::ffi::cstr((*d).args), (*d).first_child, (*d).next,
                 crate::ffi::cstr((*d).filename), (*d).line_num)
            };
            if dname.eq_ignore_ascii_case(name) {
                out.push(args.to_owned());
            } else if dname.eq_ignore_ascii_case("<VirtualHost") {
                let mut own = Vec::new();
                walk(child, name, &mut own, vhosts);
                vhosts.push(((file.to_owned(), line as u32), own));
            } else if dname.len() > 3 && dname[..3].eq_ignore_ascii_case("<If") {
                walk(child, name, out, vhosts);
            }
            d = next;
        }
    }
    let (mut main, mut vhosts) = (Vec::new(), Vec::new());
    // SAFETY: copying the global tree pointer.
    walk(unsafe { sys::ap_conftree }, directive, &mut main, &mut vhosts);
    let mut out = Vec::new();
    let mut s = server();
    while let Some(vh) = NonNull::new(s).map(VirtualHost) {
        // SAFETY: the server list lives as long as the configuration.
        let (file, line, next) = unsafe { (crate::ffi::cstr((*s).defn_name), (*s).defn_line_number, (*s).next) };
        let own = if out.is_empty() {
            std::mem::take(&mut main)
        } else {
            vhosts.iter().find(|(at, _)| at.0 == file && at.1 == line).map(|(_, own)| own.clone()).unwrap_or_default()
        };
        out.push((vh, own));
        s = next;
    }
    out
}
