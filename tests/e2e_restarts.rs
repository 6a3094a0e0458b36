//! Restarts and child life cycle under load: graceful restarts that lose no
//! request, downloads that outlive a restart, GracefulShutdownTimeout, dead
//! and retired children, running out of descriptors, one-process mode.
//!
//! Servers here leave mod_cgid out (`without_cgi`) unless a test needs it, so
//! that `Server::children()` are exactly the worker processes.

mod common;

use common::*;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// Sends SIGUSR1 and waits until the new generation answers server-status.
fn graceful_restart(server: &Server) {
    let before = server
        .config_generation()
        .expect("ParentServerConfigGeneration before the restart");
    server.signal(libc::SIGUSR1);
    assert!(
        wait_until(Duration::from_secs(10), || server.config_generation()
            > Some(before)),
        "generation still {before} 10 s after SIGUSR1"
    );
}

/// Deliberately stricter than stock, expected to fail against it: on a
/// graceful restart stock event closes every idle keep-alive connection of
/// the old children at once, racing the clients' next requests (measured:
/// 167 to 4,478 closes before the response on reused connections in this
/// test, out of some 150,000 requests). Here a
/// keep-alive connection must get its next response, with `Connection:
/// close`, and only then be closed; an idle one only at its own
/// KeepAliveTimeout (5 s, longer than the clients ever idle).
#[test]
fn strict_graceful_restarts_under_keep_alive_load_fail_no_request() {
    let server = server().without_cgi().start();
    let stop = AtomicBool::new(false);
    let ok = AtomicU64::new(0);
    let failures = Failures::default();
    let first_gen = server.config_generation().expect("generation at start");

    thread::scope(|s| {
        for _ in 0..32 {
            s.spawn(|| keep_alive_client(server.addr(), SMALL_PATH, SMALL_BODY, &stop, &ok, &failures));
        }
        thread::sleep(Duration::from_millis(500));
        for _ in 0..10 {
            server.signal(libc::SIGUSR1);
            thread::sleep(Duration::from_secs(1));
        }
        thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
    });

    let served = ok.load(Ordering::Relaxed);
    assert!(served > 1000, "only {served} requests served in 11 s");
    assert_eq!(
        failures.count(),
        0,
        "{served} served; {}",
        failures.summary()
    );
    let gen_now = server.config_generation().expect("generation at the end");
    assert!(
        gen_now > first_gen,
        "generation went from {first_gen} to {gen_now}: no restart happened"
    );
}

#[test]
fn graceful_restart_lets_a_download_in_flight_finish_on_the_old_child() {
    let server = server().without_cgi().with_50_mib_file().start();
    let old_children = server.children();

    let mut conn = server.connect();
    let len = conn.start_download(MIB50_PATH, 256 * 1024);
    assert_eq!(len, 50 * MIB);
    let owner = server
        .connection_owner(conn.local_addr())
        .expect("no apache process holds the download's connection");
    assert!(
        old_children.contains(&owner),
        "download served by {owner:?}, not a child: {old_children:?}"
    );

    let (body, elapsed) = thread::scope(|s| {
        let reader = s.spawn(|| {
            let start = Instant::now();
            // About 2.5 s at 20 MiB/s.
            let body = conn.read_bytes_paced(len, 20 * MIB as u64);
            (body, start.elapsed())
        });
        thread::sleep(Duration::from_millis(500));
        graceful_restart(&server);
        // The new generation took over while the old child still sends.
        let new_child = wait_until(Duration::from_secs(5), || {
            server.children().iter().any(|c| !old_children.contains(c))
        });
        assert!(new_child, "no new-generation child 5 s after SIGUSR1");
        assert!(
            !reader.is_finished(),
            "the download finished before the new generation was up; the test proves nothing"
        );
        assert!(
            owner.is_running(),
            "the download's child exited mid-download"
        );
        reader.join().unwrap()
    });
    let body = body.unwrap_or_else(|e| panic!("download across a graceful restart: {e}"));
    assert_body(
        &body,
        mib50_body(),
        "50 MiB download across a graceful restart",
    );
    assert!(
        elapsed > Duration::from_secs(1),
        "download took only {elapsed:?}"
    );

    // Its last connection done, the old child goes away.
    drop(conn);
    let left = wait_all_exited(&[owner], Duration::from_secs(5));
    assert!(
        left.is_empty(),
        "old child {owner:?} still running 5 s after its download ended"
    );
    assert_eq!(server.get(SMALL_PATH).status, 200);
}

/// Deliberately stricter than stock, expected to fail against it. Stock
/// applies GracefulShutdownTimeout only to a graceful stop (SIGWINCH): the
/// children of an older generation keep running until their last download
/// ends, while holding their scoreboard slots, so the new generation cannot
/// get the children it wants and stock logs "AH03490: scoreboard is full,
/// not at MaxRequestWorkers" at once. Here the old children must end within
/// GracefulShutdownTimeout (+1.5 s), and the error_log must not have AH03490.
#[test]
fn strict_graceful_restarts_with_long_downloads_end_old_children_in_time() {
    const GRACE_SECS: u64 = 3;
    const CLIENTS: usize = 20;
    // One generation needs both of its two children to reach MinSpareThreads;
    // ServerLimit leaves room for just one child more. The small send buffer
    // keeps the kernel from holding megabytes for a client whose child is
    // gone: a cut download shows within a second.
    let server = server()
        .without_cgi()
        .directives(&format!(
            "StartServers 2\nServerLimit 3\nThreadsPerChild 10\nMaxRequestWorkers 20\n\
             MinSpareThreads 15\nMaxSpareThreads 30\nGracefulShutdownTimeout {GRACE_SECS}\n\
             EnableSendfile On\nSendBufferSize 65536"
        ))
        .start();
    assert!(
        wait_until(Duration::from_secs(5), || server.children().len() == 2),
        "children: {:?}",
        server.children()
    );

    let stop = AtomicBool::new(false);
    // The client address of each client's download in flight.
    let downloads: Vec<Mutex<Option<std::net::SocketAddr>>> =
        (0..CLIENTS).map(|_| Mutex::new(None)).collect();
    let cut = AtomicU64::new(0);
    thread::scope(|s| {
        for slot in &downloads {
            let (server, stop, cut) = (&server, &stop, &cut);
            s.spawn(move || {
                // 10 MiB at 256 KiB/s: 40 s, longer than the whole test; a
                // download cut by an old child ending starts over.
                while !stop.load(Ordering::Relaxed) {
                    let result = (|| -> std::io::Result<()> {
                        let mut conn = Conn::connect(server.addr())?;
                        conn.set_recv_buffer(64 * 1024);
                        conn.send(get_request(MIB10_PATH).as_bytes())?;
                        let head = conn.read_head()?;
                        let mut left = head.content_length()?.unwrap_or(0);
                        *slot.lock().unwrap() = Some(conn.local_addr());
                        let r = (|| {
                            while left > 0 && !stop.load(Ordering::Relaxed) {
                                let n = left.min(64 * 1024);
                                conn.read_bytes_paced(n, 256 * 1024)?;
                                left -= n;
                            }
                            Ok(())
                        })();
                        *slot.lock().unwrap() = None;
                        r
                    })();
                    if result.is_err() {
                        cut.fetch_add(1, Ordering::Relaxed);
                        thread::sleep(Duration::from_millis(50));
                    }
                }
            });
        }

        // Downloads whose connection a current child holds.
        let on_children = |children: &[Process]| {
            downloads
                .iter()
                .filter_map(|d| *d.lock().unwrap())
                .filter(|a| {
                    server
                        .connection_owner(*a)
                        .is_some_and(|o| children.contains(&o))
                })
                .count()
        };
        let outcome = (|| {
            for round in 1..=5 {
                let mut old = Vec::new();
                let loaded = wait_until(Duration::from_secs(5), || {
                    old = server.children();
                    on_children(&old) >= CLIENTS - 2
                });
                if !loaded {
                    return Err(format!(
                        "round {round}: only {} of {CLIENTS} downloads in flight on children {old:?}",
                        on_children(&old)
                    ));
                }
                server.signal(libc::SIGUSR1);
                let start = Instant::now();
                let limit = Duration::from_millis(GRACE_SECS * 1000 + 1500);
                let left = wait_all_exited(&old, limit);
                if !left.is_empty() {
                    return Err(format!(
                        "round {round}: old children {left:?} of {old:?} still running {limit:?} \
                         after SIGUSR1 (GracefulShutdownTimeout {GRACE_SECS})"
                    ));
                }
                eprintln!(
                    "round {round}: old children gone after {:?}",
                    start.elapsed()
                );
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        if let Err(e) = outcome {
            panic!("{e}\nerror_log:\n{}", server.error_log_tail(20));
        }
    });

    assert!(
        !server.error_log().contains("AH03490"),
        "scoreboard full during graceful restarts:\n{}",
        server.error_log_tail(20)
    );
    // Each round's old children ended by cutting their downloads.
    // (The cuts of the last round come after the clients were stopped.)
    let cut = cut.load(Ordering::Relaxed);
    assert!(
        cut >= 4 * (CLIENTS as u64 - 2),
        "only {cut} downloads were cut in 5 rounds"
    );
    assert_eq!(server.get(SMALL_PATH).status, 200);
}

/// Opens keep-alive connections until each of `children` holds `per_child`
/// of them (bounded); returns them by child. Which child accepts a
/// connection is up to the children, so this just keeps trying.
fn connections_on_each(
    server: &Server,
    children: &[Process],
    per_child: usize,
) -> HashMap<Process, Vec<Conn>> {
    let mut by_child: HashMap<Process, Vec<Conn>> = HashMap::new();
    for _ in 0..200 {
        if children
            .iter()
            .all(|c| by_child.get(c).is_some_and(|v| v.len() >= per_child))
        {
            break;
        }
        let conn = server.idle_connection();
        let owner = server
            .connection_owner(conn.local_addr())
            .expect("no apache process holds a keep-alive connection");
        let held = by_child.entry(owner).or_default();
        if held.len() < per_child {
            held.push(conn);
        }
    }
    let counts: Vec<(i32, usize)> = by_child.iter().map(|(p, v)| (p.pid, v.len())).collect();
    assert!(
        children
            .iter()
            .all(|c| by_child.get(c).is_some_and(|v| v.len() >= per_child)),
        "could not get {per_child} connections onto each of {children:?}: {counts:?}"
    );
    by_child
}

#[test]
fn sigkill_of_a_child_under_load_fails_only_its_own_connections() {
    // Two children of 25 threads: 50 idle threads, within the spare bounds;
    // with one gone, 25 < MinSpareThreads 30 makes the parent replace it.
    let server = server()
        .without_cgi()
        .keep_alive_timeout(30)
        .directives("StartServers 2\nThreadsPerChild 25\nMinSpareThreads 30\nMaxSpareThreads 80")
        .start();
    assert!(
        wait_until(Duration::from_secs(5), || server.children().len() == 2),
        "children: {:?}",
        server.children()
    );
    let before = server.children();
    let by_child = connections_on_each(&server, &before, 4);
    let victim = before[0];

    struct Client {
        owner: Process,
        ok: AtomicU64,
        error: Mutex<Option<String>>,
    }
    let stop = AtomicBool::new(false);
    let mut pinned = Vec::new();
    let mut clients = Vec::new();
    for (owner, conns) in by_child {
        for conn in conns {
            pinned.push(conn);
            clients.push(Client {
                owner,
                ok: AtomicU64::new(0),
                error: Mutex::new(None),
            });
        }
    }

    let mut ok_at_kill = Vec::new();
    let mut replaced_after = None;
    thread::scope(|s| {
        for (conn, client) in pinned.iter_mut().zip(&clients) {
            let stop = &stop;
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match conn.get(SMALL_PATH) {
                        Ok(r) if r.status == 200 => {
                            client.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            *client.error.lock().unwrap() = Some(format!("status {}", r.status));
                            return;
                        }
                        Err(e) => {
                            *client.error.lock().unwrap() = Some(e.to_string());
                            return;
                        }
                    }
                    thread::sleep(Duration::from_millis(2));
                }
            });
        }
        thread::sleep(Duration::from_millis(300));
        ok_at_kill = clients
            .iter()
            .map(|c| c.ok.load(Ordering::Relaxed))
            .collect();
        // SAFETY: plain syscall on a verified child of our apache parent.
        unsafe { libc::kill(victim.pid, libc::SIGKILL) };
        let killed_at = Instant::now();
        if wait_until(Duration::from_secs(2), || {
            server.children().iter().any(|c| !before.contains(c))
        }) {
            replaced_after = Some(killed_at.elapsed());
        }
        // Let the survivors' clients run on the new set of children for a while.
        thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
    });

    assert!(
        replaced_after.is_some(),
        "no new child within 2 s of killing {victim:?}; children now {:?}",
        server.children()
    );
    for (n, c) in clients.iter().enumerate() {
        let error = c.error.lock().unwrap().clone();
        if c.owner == victim {
            assert!(
                error.is_some(),
                "connection {n} of the killed child kept being served"
            );
        } else {
            assert_eq!(
                error, None,
                "connection {n} on surviving child {:?}",
                c.owner
            );
            assert!(
                c.ok.load(Ordering::Relaxed) > ok_at_kill[n],
                "connection {n} on surviving child {:?} got no response after the kill",
                c.owner
            );
        }
    }
    for _ in 0..10 {
        assert_eq!(server.get(SMALL_PATH).status, 200);
    }
}

/// Deliberately stricter than stock, expected to fail against it: when
/// accept() fails with EMFILE, stock event treats it as a resource shortage
/// and retires the child (measured: the retiring child closes the next
/// connection without an answer, and a new pid replaces it). Here the child
/// must pause accepting, keep serving, and accept again once descriptors
/// are free.
#[test]
fn strict_running_out_of_descriptors_pauses_accepting_without_retiring_the_child() {
    // One child; about 12 descriptors are in use before the first
    // connection, so EMFILE comes after some 50 connections, well below the
    // child's connection limit (25 + 25 idle workers * 4 = 125). The
    // connection budget, by default below what the descriptors allow (25
    // here), is set above it, so that descriptors run out first.
    let server = server()
        .without_cgi()
        .keep_alive_timeout(30)
        .max_open_files(64)
        .directives(
            "ServerLimit 1\nStartServers 1\nThreadsPerChild 25\nMaxRequestWorkers 25\n\
             MinSpareThreads 1\nMaxSpareThreads 25\nAsyncRequestWorkerFactor 4\nConnectionBudget 1000",
        )
        .start();
    assert!(
        wait_until(Duration::from_secs(5), || server.children().len() == 1),
        "children: {:?}",
        server.children()
    );
    let child = server.children()[0];

    // Requests sent without waiting: connections the child cannot accept
    // stay in the listen backlog, unanswered.
    let mut conns: Vec<Conn> = (0..100).map(|_| server.connect()).collect();
    for c in &mut conns {
        c.send(get_request(SMALL_PATH).as_bytes()).unwrap();
    }
    thread::sleep(Duration::from_millis(1500));
    let mut answered = 0;
    for c in &mut conns {
        c.set_read_timeout(Duration::from_millis(20));
        if c.read_response().is_ok_and(|r| r.status == 200) {
            answered += 1;
        }
    }
    assert!(
        answered < conns.len(),
        "all {answered} connections answered: the child never ran out of descriptors"
    );
    drop(conns);

    let start = Instant::now();
    let mut conn = server.connect();
    conn.set_read_timeout(Duration::from_secs(5));
    let resp = conn
        .get(SMALL_PATH)
        .unwrap_or_else(|e| panic!("request after the connections were closed: {e}"));
    assert_eq!(resp.status, 200);
    eprintln!(
        "{answered} of 100 answered at EMFILE; served again after {:?}",
        start.elapsed()
    );
    assert!(
        child.is_running(),
        "child {child:?} was retired after EMFILE; children now {:?}",
        server.children()
    );
    assert_eq!(
        server.children(),
        vec![child],
        "a child was added or replaced"
    );
}

#[test]
fn max_connections_per_child_replaces_children_without_failing_requests() {
    let server = server()
        .without_cgi()
        .directives("MaxConnectionsPerChild 100")
        .start();
    let initial = server.children();
    let mut seen: HashSet<Process> = initial.iter().copied().collect();
    for n in 0..500 {
        let resp = Conn::connect(server.addr())
            .and_then(|mut c| c.get(SMALL_PATH))
            .unwrap_or_else(|e| panic!("request {n} on a new connection: {e}"));
        assert_eq!(resp.status, 200, "request {n}");
        if n % 10 == 0 {
            seen.extend(server.children());
        }
    }
    seen.extend(server.children());
    // 500 connections over children that take at most 100 each, with at
    // most 4 alive at the end (3 + one being replaced): at least two have
    // reached their limit and exited. (Which child accepts is up to them;
    // stock's often gives most connections to one.) A child lives for 100
    // requests at least, so sampling every 10 sees each one.
    let exited: Vec<&Process> = seen.iter().filter(|c| !c.is_running()).collect();
    assert!(
        exited.len() >= 2,
        "children exited: {exited:?}; initial {initial:?}, seen {seen:?}"
    );
}

#[test]
fn twenty_restarts_keep_parent_memory_and_descriptors_flat() {
    let server = server().start();
    let parent = server.parent();
    let restart = |n: usize| {
        let sig = if n.is_multiple_of(2) {
            libc::SIGHUP
        } else {
            libc::SIGUSR1
        };
        let before = server
            .config_generation()
            .expect("generation before a restart");
        server.signal(sig);
        assert!(
            wait_until(Duration::from_secs(10), || server.config_generation()
                > Some(before)),
            "restart {n}: generation still {before} 10 s after signal {sig}"
        );
        assert_eq!(server.get(SMALL_PATH).status, 200, "after restart {n}");
    };

    // Measured after a first restart: the first one allocates what every
    // later restart reuses.
    restart(0);
    thread::sleep(Duration::from_millis(300));
    let fds_first = parent.open_fds();
    let rss_first = parent.rss_kib().expect("parent RSS");
    for n in 1..=20 {
        restart(n);
    }
    // A descriptor may be open for a moment while a child is being forked.
    let flat = wait_until(Duration::from_secs(3), || {
        parent.open_fds().len() == fds_first.len()
    });
    let fds_last = parent.open_fds();
    assert!(
        flat,
        "parent descriptors: {} after the first restart, {} after 20 more\nfirst: {fds_first:?}\nlast: {fds_last:?}",
        fds_first.len(),
        fds_last.len()
    );
    let rss_last = parent.rss_kib().expect("parent RSS");
    assert!(
        rss_last < rss_first + 2048,
        "parent RSS grew from {rss_first} KiB to {rss_last} KiB over 20 restarts"
    );
    for _ in 0..5 {
        assert_eq!(server.get(SMALL_PATH).status, 200);
    }
}

/// `apache2 -X`: the process we start serves itself, forks no child, and
/// ends on `sig`.
fn single_process_serves_and_stops_on(sig: libc::c_int) {
    let server = server().without_cgi().single_process().start();
    assert_eq!(
        server.children(),
        Vec::<Process>::new(),
        "-X forked children"
    );
    let mut idle = server.idle_connection();
    for _ in 0..5 {
        let resp = idle.get(SMALL_PATH).expect("keep-alive request in -X mode");
        assert_eq!(resp.status, 200);
    }
    let resp = server.get(KIB_PATH);
    assert_body(&resp.body, kib_body(), "1 KiB file in -X mode");
    server.signal(sig);
    assert!(
        wait_until(Duration::from_secs(5), || server.has_exited()),
        "-X process still running 5 s after signal {sig}"
    );
}

#[test]
fn single_process_mode_serves_and_stops_on_sigterm() {
    single_process_serves_and_stops_on(libc::SIGTERM);
}

#[test]
fn single_process_mode_serves_and_stops_on_sigint() {
    single_process_serves_and_stops_on(libc::SIGINT);
}

/// SIGWINCH with a download that would take 20 s more: the download goes on
/// after the signal (graceful), and at GracefulShutdownTimeout (3 s) every
/// process ends (+1.5 s margin).
///
/// Stock event fails this with or without sendfile (measured): the child
/// sending the download does not end at the timeout; the parent's SIGTERMs
/// (AH00045, 6, 8 and 10 s after SIGWINCH) and finally SIGKILL end it.
fn graceful_stop_ends_slow_download_at_timeout(sendfile: bool) {
    const GRACE_SECS: u64 = 3;
    // The small send buffer keeps the kernel from delivering megabytes after
    // the child is gone, which would make a cut download look like a long one.
    let server = server()
        .without_cgi()
        .directives(&format!(
            "GracefulShutdownTimeout {GRACE_SECS}\nEnableSendfile {}\nSendBufferSize 65536",
            if sendfile { "On" } else { "Off" }
        ))
        .start();
    let mut procs = server.children();
    procs.push(server.parent());

    let mut conn = server.connect();
    let len = conn.start_download(MIB10_PATH, 64 * 1024);

    let signalled = Mutex::new(None::<Instant>);
    let (ended_after, received, left) = thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut received = 0;
            while received < len {
                let n = (len - received).min(64 * 1024);
                // 512 KiB/s: 20 s for 10 MiB.
                if conn.read_bytes_paced(n, 512 * 1024).is_err() {
                    break;
                }
                received += n;
            }
            let at = signalled
                .lock()
                .unwrap()
                .expect("signalled before the download ended");
            (at.elapsed(), received)
        });
        thread::sleep(Duration::from_millis(500));
        *signalled.lock().unwrap() = Some(Instant::now());
        server.signal(libc::SIGWINCH);
        let left = wait_all_exited(&procs, Duration::from_millis(GRACE_SECS * 1000 + 1500));
        let (ended_after, received) = reader.join().unwrap();
        (ended_after, received, left)
    });
    assert!(
        left.is_empty(),
        "still running {}.5 s after SIGWINCH (GracefulShutdownTimeout {GRACE_SECS}): {left:?} of {procs:?}",
        GRACE_SECS + 1
    );
    assert!(
        received < len,
        "the 20 s download completed: nothing was tested"
    );
    assert!(
        ended_after >= Duration::from_millis(GRACE_SECS * 1000 - 1000),
        "download cut {ended_after:?} after SIGWINCH, GracefulShutdownTimeout is {GRACE_SECS} s"
    );
}

/// Deliberately stricter than stock, expected to fail against it (see above).
#[test]
fn strict_graceful_stop_ends_slow_sendfile_download_at_graceful_shutdown_timeout() {
    graceful_stop_ends_slow_download_at_timeout(true);
}

/// Deliberately stricter than stock, expected to fail against it (see
/// above). Without sendfile the download is written from the mmap'ed file,
/// which httpd's core output filter does with blocking writes in the worker.
#[test]
fn strict_graceful_stop_ends_slow_download_without_sendfile_at_graceful_shutdown_timeout() {
    graceful_stop_ends_slow_download_at_timeout(false);
}

/// A connection that has had one response within 3 s, and the child holding it.
fn served_connection(server: &Server) -> (Conn, Process) {
    let mut conn = server.connect();
    conn.set_read_timeout(Duration::from_secs(3));
    let result = conn.get(SMALL_PATH);
    let owner = server.connection_owner(conn.local_addr());
    match (result, owner) {
        (Ok(resp), Some(owner)) if resp.status == 200 => (conn, owner),
        (result, None) => panic!(
            "{result:?}: no child accepted the connection (it is still in the listen backlog); \
             BusyWorkers {:?} in {} children",
            busy_workers(server),
            server.children().len()
        ),
        (result, Some(owner)) => panic!("{result:?} on a connection accepted by {owner:?}"),
    }
}

/// BusyWorkers from server-status, the status request's own worker included.
fn busy_workers(server: &Server) -> Option<usize> {
    server
        .server_status_auto()
        .ok()?
        .get("BusyWorkers")?
        .parse()
        .ok()
}

/// A request that holds a worker until released: its body (1 byte,
/// announced by Content-Length) is sent only by `release`, and the default
/// handler reads the body before it answers.
struct PinnedWorker(Conn);

impl PinnedWorker {
    fn new(server: &Server) -> PinnedWorker {
        let mut conn = server.connect();
        conn.send(
            format!(
                "GET {SMALL_PATH} HTTP/1.1\r\nHost: e2e.test\r\nContent-Length: 1\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        PinnedWorker(conn)
    }

    fn owner(&self, server: &Server) -> Option<Process> {
        server.connection_owner(self.0.local_addr())
    }

    /// Sends the body, reads the answer, and closes at once, so that the
    /// connection does not linger on its child.
    fn release(mut self) {
        self.0.send(b"x").unwrap();
        let resp = self
            .0
            .read_response()
            .expect("answer to a released request");
        assert_eq!(resp.status, 200);
    }
}

/// Deliberately stricter than stock, expected to fail against it most of the
/// time: stock's parent retires a surplus child through the pipe of death,
/// read by whichever child's listener gets to it first, so it retires a
/// child holding many keep-alive connections (closing them all) as readily
/// as an empty one. Here it must retire the child with the fewest.
///
/// Setup: two children of 10 threads (MinSpareThreads 10, MaxSpareThreads
/// 20). 15 requests that hold their worker drop the idle threads to 5, so
/// the parent forks a third child. Then keep-alive connections are opened,
/// and all of one child's are closed: it is the emptiest. Releasing the 15
/// requests leaves 30 idle threads > 20: one child must go, and it must be
/// the emptiest (if two children are empty, either one).
#[test]
fn strict_idle_maintenance_retires_the_child_with_fewest_connections() {
    let server = server()
        .without_cgi()
        .keep_alive_timeout(60)
        .directives(
            "StartServers 2\nServerLimit 3\nThreadsPerChild 10\nMaxRequestWorkers 30\n\
             MinSpareThreads 10\nMaxSpareThreads 20",
        )
        .start();
    assert!(
        wait_until(Duration::from_secs(5), || server.children().len() == 2),
        "children: {:?}",
        server.children()
    );
    // One at a time, each on a worker before the next: a request queued
    // behind held workers would never be answered.
    let mut pins = Vec::new();
    for n in 1..=15 {
        pins.push(PinnedWorker::new(&server));
        // The status request itself is one more busy worker.
        assert!(
            wait_until(Duration::from_secs(3), || busy_workers(&server)
                == Some(n + 1)),
            "held request {n} got no worker: BusyWorkers {:?}",
            busy_workers(&server)
        );
    }
    assert!(
        wait_until(Duration::from_secs(5), || server.children().len() == 3),
        "no third child with 15 of 20 workers held; children: {:?}",
        server.children()
    );
    let children = server.children();
    // The new child needs a moment before its listener accepts.
    thread::sleep(Duration::from_millis(300));

    // Keep-alive connections until two children hold at least 3 each.
    let mut held: HashMap<Process, Vec<Conn>> = HashMap::new();
    for _ in 0..60 {
        if held.values().filter(|v| v.len() >= 3).count() >= 2 {
            break;
        }
        let (conn, owner) = served_connection(&server);
        held.entry(owner).or_default().push(conn);
    }
    let emptiest = *children
        .iter()
        .min_by_key(|c| held.get(c).map_or(0, Vec::len))
        .unwrap();
    held.remove(&emptiest);
    let counts: Vec<(i32, usize)> = children
        .iter()
        .map(|c| (c.pid, held.get(c).map_or(0, Vec::len)))
        .collect();
    assert!(
        held.values().filter(|v| v.len() >= 3).count() >= 2,
        "could not load two children with keep-alive connections: {counts:?}"
    );
    let pin_owners: Vec<Option<i32>> = pins
        .iter()
        .map(|p| p.owner(&server).map(|o| o.pid))
        .collect();
    for p in pins {
        p.release();
    }

    assert!(
        wait_until(Duration::from_secs(5), || children
            .iter()
            .any(|c| !c.is_running())),
        "no child retired 5 s after the load ended; (pid, connections): {counts:?}"
    );
    // Only one is surplus; give a wrong second retirement the time to show.
    thread::sleep(Duration::from_millis(1500));
    let retired: Vec<(i32, usize)> = counts
        .iter()
        .copied()
        .filter(|(pid, _)| children.iter().any(|c| c.pid == *pid && !c.is_running()))
        .collect();
    let fewest = counts.iter().map(|&(_, n)| n).min().unwrap();
    assert!(
        retired.iter().all(|&(_, n)| n == fewest),
        "retired (pid, connections) {retired:?}; all were {counts:?} (pinned requests were on {pin_owners:?})"
    );
    for (child, conns) in held.iter_mut() {
        for conn in conns {
            let resp = conn.get(SMALL_PATH).unwrap_or_else(|e| {
                panic!("keep-alive connection on {child:?} after the retirement: {e}; counts {counts:?}")
            });
            assert_eq!(resp.status, 200);
        }
    }
}

/// ListenCoresBucketsRatio splits the listener into buckets (a duplicated,
/// SO_REUSEPORT socket each, and a pipe of death each): with one bucket per
/// core every bucket's children accept, and a graceful restart reaches
/// them all.
#[test]
fn listener_buckets_serve_and_restart_gracefully() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let server = server()
        .without_cgi()
        .directives(&format!("ListenCoresBucketsRatio 1\nStartServers {cores}\nMinSpareThreads 1"))
        .start();
    let serve_all = |what: &str| {
        for n in 0..50 {
            let resp = server.get(SMALL_PATH);
            assert_eq!(resp.status, 200, "{what}: request {n}");
        }
    };
    serve_all("before the restart");
    let before = server.children();
    graceful_restart(&server);
    assert!(
        wait_until(Duration::from_secs(10), || before.iter().all(|c| !c.is_running())),
        "children of the first generation still running: {before:?}"
    );
    serve_all("after the restart");
    let errors: Vec<String> = server
        .error_log()
        .lines()
        .filter(|l| l.contains(":error]") || l.contains(":crit]") || l.contains(":emerg]"))
        .map(str::to_owned)
        .collect();
    assert!(errors.is_empty(), "errors in the log: {errors:?}");
}
