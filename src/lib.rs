//! mod_mpm_event_rs: Apache httpd's event MPM in Rust.
//!
//! httpd loads this library as `mpm_event_module`. Modules, lowest layer
//! first; each uses only modules listed before it (tests/layout.rs
//! checks it), and docs/design.md follows a connection through them:
//!
//! - `ffi`: every call into httpd, APR and the kernel, and the memory they
//!   share with us (retained data, the scoreboard, our statistics table).
//! - Plain data: `config` (directives), `head` (is a request head
//!   complete), `timers` (deadlines of parked connections, timed
//!   callbacks), `poller` (the two epoll sets), `queue` (the task queue,
//!   the poller role), `cpu` (are the CPUs busy), `suspend` (when a
//!   suspended connection goes back to a worker), `balance` (spreading
//!   connections over the children), `budget` (a child's open connections,
//!   and which waiting ones to close when full), `process` (state parent and child
//!   both read: the generation, one-process mode, a child's bookkeeping).
//! - `engine`: what a child's threads share, and where a connection waits.
//! - `connection`: the connection state machine.
//! - `worker`, `listener`: the two loops a child's threads run.
//! - `child`, `parent`: the processes.
//! - `status`, `entry`: the MPM's section of mod_status; every function
//!   httpd calls, and the module record.

pub mod balance;
pub mod budget;
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
