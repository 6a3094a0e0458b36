//! Keep-alive handling: idle connections wait in the listener, not in a
//! worker thread; the per-child connection limit; KeepAliveTimeout.

mod common;

use common::*;
use std::thread;
use std::time::{Duration, Instant};

/// One child with 25 workers, so that connection counts are per child and exact.
const ONE_CHILD_OF_25: &str = "ServerLimit 1\nStartServers 1\nThreadsPerChild 25\nMaxRequestWorkers 25\n\
                               MinSpareThreads 1\nMaxSpareThreads 25";

#[test]
fn a_thousand_idle_keep_alive_connections_hold_no_worker() {
    let server = server()
        .keep_alive_timeout(60)
        .directives(ONE_CHILD_OF_25)
        // Connection limit 25 + 25 idle workers * 50 = 1275, above the 1,000 used here.
        .directives("AsyncRequestWorkerFactor 50")
        .start();
    let mut idle: Vec<Conn> = (0..1000).map(|_| server.idle_connection()).collect();

    // 1,000 connections on 25 threads: only possible if idle ones hold none.
    let start = Instant::now();
    let resp = server.get(SMALL_PATH);
    let elapsed = start.elapsed();
    assert_eq!(resp.status, 200);
    assert!(
        elapsed < Duration::from_secs(1),
        "new client waited {elapsed:?} behind 1,000 idle connections"
    );

    // The idle connections were kept, not dropped to make room. (Iterating
    // without closing the others matters: a burst of closes occupies all
    // workers, and stock event then closes idle keep-alive connections.)
    for (n, conn) in idle.iter_mut().enumerate().step_by(50) {
        let resp = conn
            .get(SMALL_PATH)
            .unwrap_or_else(|e| panic!("idle connection {n} reused: {e}"));
        assert_eq!(resp.status, 200, "idle connection {n} reused");
    }
}

#[test]
fn child_stops_accepting_at_async_connection_limit() {
    // Default AsyncRequestWorkerFactor 2: a child accepts while its connections
    // are fewer than ThreadsPerChild + idle workers * 2 = 25 + 25 * 2 = 75.
    // Stock event hits exactly 75; it then resumes only below
    // 25 + (25 - 1) * 2 = 73 (its "listeners_disabled()" hysteresis), which
    // closing 10 connections satisfies with margin.
    const LIMIT: usize = 75;
    let server = server()
        .keep_alive_timeout(60)
        .directives(ONE_CHILD_OF_25)
        .start();

    let mut idle = Vec::new();
    for _ in 0..LIMIT {
        idle.push(server.idle_connection());
        // Let the worker that just answered go back to the idle queue before
        // the next connection arrives: the limit depends on idle workers.
        thread::sleep(Duration::from_millis(10));
    }

    let mut blocked = server.connect();
    blocked.set_read_timeout(Duration::from_millis(1500));
    blocked
        .send(get_request(SMALL_PATH).as_bytes())
        .expect("send on the connection over the limit");
    match blocked.read_response() {
        Err(e) if is_timeout(&e) => {}
        other => panic!(
            "connection {} over the limit of {LIMIT} was served: {other:?}",
            LIMIT + 1
        ),
    }

    idle.truncate(LIMIT - 10);
    blocked.set_read_timeout(Duration::from_secs(5));
    let resp = blocked
        .read_response()
        .expect("blocked request answered after 10 idle connections closed");
    assert_eq!(resp.status, 200);
}

#[test]
fn idle_connection_closed_after_keep_alive_timeout() {
    let server = server().keep_alive_timeout(2).start();
    let mut conn = server.idle_connection();
    let waited = conn
        .wait_for_close(Duration::from_secs(6))
        .expect("server closes the idle connection");
    assert!(
        waited >= Duration::from_millis(1500) && waited <= Duration::from_secs(4),
        "closed after {waited:?}, KeepAliveTimeout is 2 s"
    );
}

/// A keep-alive connection idle for a while gives its memory back (its
/// conn_rec is rebuilt for the next request): requests still work across
/// that, and MaxKeepAliveRequests still counts the requests of the whole
/// connection (httpd keeps a connection alive for MaxKeepAliveRequests
/// requests after the first: the 4th answer of `MaxKeepAliveRequests 3`
/// closes it).
#[test]
fn idle_connection_keeps_its_request_count_across_long_pauses() {
    let server = server().directives("MaxKeepAliveRequests 3").start();
    let mut conn = server.idle_connection();
    for n in 2..=4 {
        thread::sleep(Duration::from_millis(600));
        let resp = conn.get(SMALL_PATH).unwrap_or_else(|e| panic!("request {n} after a pause: {e}"));
        assert_eq!(resp.status, 200);
        assert_body(&resp.body, SMALL_BODY, "small file after a pause");
        assert_eq!(resp.closes_connection(), n == 4, "request {n} with MaxKeepAliveRequests 3: {:?}", resp.headers);
    }
}
