//! Safe wrappers over the httpd core calls the MPM makes, by concern: the
//! parent process (`process`), a child process and its threads (`child`),
//! connections (`connection`, and `state`, what httpd reaches of ours),
//! requests handed to hooks (`request`), the configuration (`server`), and
//! the late-head filter (`filter`). Everything is re-exported here, so
//! callers name `httpd::X` whatever file X is in.

mod child;
mod connection;
mod filter;
mod process;
mod request;
mod server;
mod state;

pub use child::*;
pub use connection::*;
pub use filter::*;
pub use process::*;
pub use request::*;
pub use server::*;
pub use state::*;

use super::sys;

/// httpd's main server (`ap_server_conf`).
pub fn server() -> *mut sys::server_rec {
    // SAFETY: copying a global pointer set by httpd before any hook runs.
    unsafe { sys::ap_server_conf }
}
