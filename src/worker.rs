//! A worker thread's loop: it takes its next task from the engine
//! (`engine::next_task`: the queue, a ready connection, or a wait as an
//! idle worker) and runs it through the connection state machine.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::connection;
use crate::engine::{Mode, Runtime, Task, Worker, next_task};
use crate::ffi::{score, sys};
use crate::poller::Events;
use crate::queue::Sleeper;

/// Worker thread `index` of the child: takes tasks until the child is done.
pub fn run(rt: &Runtime, index: usize, thread: *mut sys::apr_thread_t) {
    let slot = rt.slot;
    score::set_worker_identity(slot, index, rt.pid, rt.generation);
    score::update_worker(slot, index, sys::SERVER_STARTING);
    let w = Worker { slot, index, thread, conn_id: (slot * rt.cfg.thread_limit as usize + index) as i64 };
    let mut events = Events::with_capacity(1);
    let me = Arc::new(Sleeper::default());
    rt.worker_started(index);
    let mut peek = vec![0u8; if rt.async_head { rt.head_cap } else { 0 }];
    loop {
        let status = if rt.stopping() { sys::SERVER_GRACEFUL } else { sys::SERVER_READY };
        score::update_worker(slot, index, status);
        let Some(task) = next_task(rt, &mut events, &me) else { break };
        if rt.mode() == Mode::Ungraceful {
            // Dropping the task destroys its pool and closes its socket.
            drop(task);
            continue;
        }
        if let Task::Shutdown(_) = task {
            rt.shutdowns_queued.fetch_sub(1, Ordering::AcqRel);
        }
        let fd: RawFd = match &task {
            Task::New(n) => n.fd(),
            Task::Resume(c) | Task::Shutdown(c) => c.fd(),
            Task::Ready(r) => r.item.fd(),
            Task::Callback(_) => -1,
        };
        rt.task_begun(index, fd);
        connection::serve(rt, &w, task, &mut peek);
        rt.task_done(index);
    }
    let status = if rt.mode() == Mode::Ungraceful { sys::SERVER_DEAD } else { sys::SERVER_GRACEFUL };
    score::update_worker(slot, index, status);
}
