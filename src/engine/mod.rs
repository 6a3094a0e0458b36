//! The engine a child's threads share, below the connection state machine:
//! the records of connections (`conn`) and of work (`task`), the shared
//! state (`runtime`), where connections wait and how they come back
//! (`park`), idle workers and the poller role (`idle`), and stopping
//! (`stop`). It knows what a connection is and where it waits, not what is
//! done with it: that is `crate::connection`, which uses the engine.

mod conn;
mod idle;
mod park;
mod runtime;
mod stop;
mod task;

pub use conn::{Conn, NewSocket, Origin, Waiting, lower_rcvlowat, usecs};
pub use idle::next_task;
pub use runtime::{Limit, POLLER_GRACE, Runtime, runtime, set_runtime};
pub use stop::{Mode, catch_signals, signalled, signalled_stop, watch_stop};
pub use task::{Callback, Ready, Task, Worker};
