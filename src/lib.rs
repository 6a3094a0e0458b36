//! mod_mpm_event_rs: Apache httpd's event MPM in Rust.
//!
//! httpd loads this library as `mpm_event_module`. `entry` holds every
//! function httpd calls; `ffi` every call the other way. Between them, plain
//! Rust: `parent` (process management), `child` (a child's threads),
//! `listener` (accept and pollset loop), `balance` (spreading connections over the children), `connection` (the connection state
//! machine), `poller` (epoll), `head` (is a request head complete), `queue` (worker dispatch), `cpu` (are the CPUs busy), `suspend` (when a suspended connection goes back to a worker), `timers` (timeout
//! queues), `config` (directives), `retained` (state across restarts), `stats` and `status` (the
//! MPM's section of mod_status).

pub mod balance;
pub mod child;
pub mod config;
pub mod connection;
pub mod cpu;
pub mod engine;
pub mod entry;
pub mod ffi;
pub mod head;
pub mod listener;
pub mod parent;
pub mod poller;
pub mod process;
pub mod queue;
pub mod status;
pub mod suspend;
pub mod timers;
pub mod worker;
