//! Process management signals: stop, restart, graceful restart, graceful
//! stop. (A child that dies is e2e_restarts.rs.)

mod common;

use common::*;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Parent plus all its current children, recorded before a signal is sent.
fn all_processes(server: &Server) -> Vec<Process> {
    let mut procs = server.children();
    assert!(!procs.is_empty(), "apache has no child processes");
    procs.push(server.parent());
    procs
}

/// SIGTERM must end the parent and every child recorded before it within
/// 5 s, and the parent must remove its pid file.
fn assert_sigterm_stops_every_process(server: &Server) {
    let procs = all_processes(server);
    server.signal(libc::SIGTERM);
    let left = wait_all_exited(&procs, Duration::from_secs(5));
    assert!(
        left.is_empty(),
        "still running 5 s after SIGTERM: {left:?} of {procs:?}"
    );
    assert!(!server.pid_file().exists(), "pid file left behind");
}

#[test]
fn sigterm_with_idle_keep_alive_connections_stops_every_process() {
    let server = server().keep_alive_timeout(60).start();
    let _idle: Vec<Conn> = (0..5).map(|_| server.idle_connection()).collect();
    assert_sigterm_stops_every_process(&server);
}

/// Deliberately stricter than stock, expected to fail against it: stock
/// event does not interrupt a worker stuck writing to a stalled client; the
/// child only dies from its parent's escalation (SIGTERM again at 3, 5 and
/// 7 s, SIGKILL at 9 s, AH00045/AH00046), about 10.4 s after the signal.
#[test]
fn strict_sigterm_with_stalled_download_stops_every_process() {
    let server = server().keep_alive_timeout(60).start();
    let _idle: Vec<Conn> = (0..5).map(|_| server.idle_connection()).collect();

    // A download stuck mid-body: a tiny receive buffer that is never drained
    // keeps the server's worker writing the 10 MiB file.
    let stalled = std::net::TcpStream::connect(server.addr()).expect("connect the stalled client");
    let rcvbuf: libc::c_int = 4096;
    // SAFETY: valid socket fd and a c_int option value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            stalled.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&rcvbuf as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_RCVBUF");
    stalled.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    (&stalled)
        .write_all(get_request(MIB10_PATH).as_bytes())
        .unwrap();
    let mut first = [0u8; 1024];
    let n = (&stalled).read(&mut first).expect("start of the download");
    assert!(
        first[..n].starts_with(b"HTTP/1.1 200"),
        "download: {:?}",
        String::from_utf8_lossy(&first[..n])
    );

    assert_sigterm_stops_every_process(&server);
}

/// Restarts with `sig`, then expects a bumped generation and a serving server.
fn restart_bumps_generation(sig: libc::c_int) {
    let server = server().start();
    let before =
        server.config_generation().expect("ParentServerConfigGeneration before the restart");
    server.signal(sig);
    // The status request fails while the parent re-reads its configuration.
    let bumped = wait_until(Duration::from_secs(10), || {
        server.config_generation() == Some(before + 1)
    });
    assert!(
        bumped,
        "generation did not go from {before} to {}: now {:?}",
        before + 1,
        server.config_generation()
    );
    for _ in 0..5 {
        let resp = server.get(SMALL_PATH);
        assert_eq!(resp.status, 200);
        assert_body(&resp.body, SMALL_BODY, "after restart");
    }
}

#[test]
fn restart_on_sighup_bumps_generation_and_serves() {
    restart_bumps_generation(libc::SIGHUP);
}

#[test]
fn graceful_restart_on_sigusr1_bumps_generation_and_serves() {
    restart_bumps_generation(libc::SIGUSR1);
}

#[test]
fn graceful_stop_on_sigwinch_ends_every_process() {
    let server = server().start();
    let procs = all_processes(&server);
    server.signal(libc::SIGWINCH);
    let left = wait_all_exited(&procs, Duration::from_secs(10));
    assert!(
        left.is_empty(),
        "still running 10 s after SIGWINCH: {left:?} of {procs:?}"
    );
}

/// A client that keeps its end open after a `Connection: close` response
/// holds the connection in lingering close; a graceful stop gives it the
/// short linger time (2 s), as stock does once its child is dying, not the
/// 30 s of a running child.
#[test]
fn graceful_stop_gives_lingering_closes_the_short_time() {
    let server = server().start();
    let procs = all_processes(&server);
    let mut conn = server.connect();
    conn.send(b"GET /small.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let response = conn.read_response().expect("response");
    assert_eq!(response.status, 200);
    // The server's FIN: it has shut its side and lingers; ours stays open,
    // sending nothing.
    conn.wait_for_close(Duration::from_secs(5)).expect("the server's FIN after the response");
    let stop = std::time::Instant::now();
    server.signal(libc::SIGWINCH);
    let left = wait_all_exited(&procs, Duration::from_secs(15));
    assert!(left.is_empty(), "still running 15 s after SIGWINCH: {left:?}");
    let took = stop.elapsed();
    assert!(took <= Duration::from_secs(6), "the graceful stop took {took:?} with a connection lingering");
    drop(conn);
}
