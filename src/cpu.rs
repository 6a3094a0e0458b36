//! Whether a child's workers already keep its CPUs busy.
//!
//! A worker woken to wait in the pollset often finds a connection ready at
//! once and serves it instead. When the workers already running are using
//! the CPUs, that only adds a thread: the CPU is then shared among more
//! threads in the middle of requests, each waits for the others' time
//! slices, and the slowest requests get slower for no gain in throughput
//! (measured with the server on one CPU and the clients on the other:
//! about five workers of each child ran at once, each waited 11 ms on
//! average for the CPU, wrk's p99 was 1.6x stock's). Whether a busy worker
//! runs or waits (in a proxied backend, a CGI, a disk read) only the kernel
//! knows: each worker keeps its own `/proc/thread-self/stat` open, and the
//! state letter there says which.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;

/// CPUs the process may run on (its affinity mask and CPU quota).
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether `cpus` of the `busy` workers are `runnable`. Most of the time
/// fewer are busy, and then no state is read.
pub fn all_in_use<T>(busy: impl Iterator<Item = T> + Clone, runnable: impl FnMut(T) -> bool, cpus: usize) -> bool {
    busy.clone().count() >= cpus && busy.map(runnable).filter(|&r| r).take(cpus).count() >= cpus
}

/// One worker thread's scheduler state, readable from other threads.
#[derive(Default)]
pub struct ThreadState(OnceLock<File>);

impl ThreadState {
    /// Called by the thread itself: the file names the calling thread.
    pub fn open_own(&self) {
        if let Ok(f) = File::open("/proc/thread-self/stat") {
            let _ = self.0.set(f);
        }
    }

    /// The thread is running or waiting for a CPU (not blocked). False
    /// when that cannot be read: a thread counted as blocked only lets
    /// another one serve, as without this check.
    pub fn runnable(&self) -> bool {
        let Some(f) = self.0.get() else { return false };
        let mut buf = [0u8; 512];
        match f.read_at(&mut buf, 0) {
            Ok(n) => state_of(&buf[..n]) == Some(b'R'),
            Err(_) => false,
        }
    }
}

/// The state letter of a `stat` line: `tid (comm) S ...`, where comm may
/// hold spaces and parentheses, hence the last `)`.
fn state_of(stat: &[u8]) -> Option<u8> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat[close + 1..].iter().copied().find(|b| !b.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_are_in_use_when_as_many_busy_workers_are_runnable() {
        use std::cell::Cell;
        let reads = Cell::new(0);
        let runnable = |r: &bool| {
            reads.set(reads.get() + 1);
            *r
        };
        assert!(!all_in_use([true].iter(), runnable, 2), "one busy worker, two CPUs");
        assert_eq!(reads.get(), 0, "fewer busy workers than CPUs: no state read");
        assert!(!all_in_use([true, false, false].iter(), runnable, 2), "the others are blocked");
        assert!(all_in_use([false, true, true].iter(), runnable, 2));
        reads.set(0);
        assert!(all_in_use([true, true, true, true].iter(), runnable, 2));
        assert_eq!(reads.get(), 2, "no more reads than needed");
        assert!(!all_in_use(std::iter::empty::<&bool>(), runnable, 1));
    }

    #[test]
    fn state_letter_after_the_command_name() {
        assert_eq!(state_of(b"4242 (apache2) R 1 2 3"), Some(b'R'));
        assert_eq!(state_of(b"4242 (a (b) c) S 1 2"), Some(b'S'));
        assert_eq!(state_of(b"4242 (truncated"), None);
    }

    #[test]
    fn a_thread_reads_as_runnable_while_it_runs_and_not_while_it_sleeps() {
        use std::sync::mpsc;
        use std::sync::Arc;
        let st = Arc::new(ThreadState::default());
        let (opened, wait_opened) = mpsc::channel();
        let (go, wait_go) = mpsc::channel::<()>();
        let t = {
            let st = Arc::clone(&st);
            std::thread::spawn(move || {
                st.open_own();
                opened.send(()).unwrap();
                // Blocked here until the test has looked.
                wait_go.recv().unwrap();
            })
        };
        wait_opened.recv().unwrap();
        // The thread blocks in recv right after sending: wait until it does.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while st.runnable() && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(!st.runnable(), "a thread blocked in recv is not runnable");
        go.send(()).unwrap();
        t.join().unwrap();

        let me = ThreadState::default();
        me.open_own();
        assert!(me.runnable(), "the calling thread is running");
        assert!(!ThreadState::default().runnable(), "unknown reads as blocked");
    }
}
