//! Harness shared by the end-to-end tests: starts httpd (`$HTTPD`, Debian's
//! apache2 by default, its modules where `$APXS -q LIBEXECDIR` says) with
//! the MPM under test loaded into a throw-away server root, and talks raw
//! HTTP/1.1 to it over loopback.
//!
//! The MPM is `$MPM_MODULE` if set, else `build/mod_mpm_event_rs.so`; running
//! with `MPM_MODULE=/usr/lib/apache2/modules/mod_mpm_event.so` tests the stock
//! event MPM, which is the reference behaviour.

// Every tests/e2e_*.rs binary compiles this module but uses only part of it.
#![allow(dead_code)]

pub mod h2;

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The httpd binary: `$HTTPD` (`make test HTTPD=...`), else Debian's.
fn apache() -> &'static str {
    static HTTPD: OnceLock<String> = OnceLock::new();
    HTTPD.get_or_init(|| std::env::var("HTTPD").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "/usr/sbin/apache2".into()))
}

/// apxs of the httpd under test: `$APXS`, else the one on PATH.
pub fn apxs() -> String {
    std::env::var("APXS").ok().filter(|a| !a.is_empty()).unwrap_or_else(|| "apxs".into())
}

/// That httpd's module directory, as its apxs (`$APXS`, else the one on
/// PATH) tells it: where the stock modules the tests load are.
fn module_dir() -> &'static str {
    static DIR: OnceLock<String> = OnceLock::new();
    DIR.get_or_init(|| {
        let apxs = apxs();
        let out = Command::new(&apxs).args(["-q", "LIBEXECDIR"]).output().unwrap_or_else(|e| panic!("{apxs}: {e}"));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    })
}

/// Read/write timeout of every client socket unless a test sets another.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Files generated into every DocumentRoot, with their URL paths.
pub const SMALL_PATH: &str = "/small.txt";
pub const SMALL_BODY: &[u8] = b"hello from the mpm e2e tests\n";
pub const INDEX_BODY: &[u8] = b"<html><body>index</body></html>\n";
pub const KIB_PATH: &str = "/1k.bin";
pub const MIB10_PATH: &str = "/10m.bin";
/// CGI that sleeps for the number of seconds in its query string (default 1),
/// then answers `slept`: holds a worker thread for a known time.
pub const SLEEP_CGI_PATH: &str = "/cgi-bin/sleep";
/// Only in servers built with `with_50_mib_file()`: writing 50 MiB into every
/// server root would slow down every test.
pub const MIB50_PATH: &str = "/50m.bin";

pub fn kib_body() -> &'static [u8] {
    static BODY: OnceLock<Vec<u8>> = OnceLock::new();
    BODY.get_or_init(|| pseudo_random_bytes(1024, 1))
}

pub fn mib10_body() -> &'static [u8] {
    static BODY: OnceLock<Vec<u8>> = OnceLock::new();
    BODY.get_or_init(|| pseudo_random_bytes(10 << 20, 2))
}

pub fn mib50_body() -> &'static [u8] {
    static BODY: OnceLock<Vec<u8>> = OnceLock::new();
    BODY.get_or_init(|| pseudo_random_bytes(50 << 20, 3))
}

/// xorshift64: deterministic, so that what a test generated can be
/// generated again.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Deterministic incompressible content, so a byte-exact comparison
/// catches truncation, reordering and duplication alike.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Compares a body without dumping megabytes into the failure message.
#[track_caller]
pub fn assert_body(actual: &[u8], expected: &[u8], what: &str) {
    if actual != expected {
        let first_diff = actual.iter().zip(expected).position(|(a, b)| a != b);
        panic!(
            "{what}: body differs: got {} bytes, expected {}, first differing byte at {:?}",
            actual.len(),
            expected.len(),
            first_diff.unwrap_or(actual.len().min(expected.len()))
        );
    }
}

/// The MPM shared object under test.
pub fn mpm_module() -> PathBuf {
    let path = match std::env::var_os("MPM_MODULE") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("build/mod_mpm_event_rs.so"),
    };
    assert!(
        path.is_file(),
        "MPM module {} not found: run `make` first (or set MPM_MODULE to a built module)",
        path.display()
    );
    path
}

/// Stock modules the generated configuration loads. mod_unixd is only
/// loaded when this apache2 build does not have it compiled in.
fn stock_modules(cgi: bool) -> Vec<(&'static str, &'static str)> {
    let mut modules = vec![
        ("authz_core_module", "mod_authz_core.so"),
        ("mime_module", "mod_mime.so"),
        ("dir_module", "mod_dir.so"),
        ("status_module", "mod_status.so"),
        ("alias_module", "mod_alias.so"),
    ];
    if cgi {
        modules.push(("cgid_module", "mod_cgid.so"));
    }
    // Debian's httpd has these built in; one built from source (its
    // default layout) has them as modules.
    for (name, source, file) in [
        ("unixd_module", "mod_unixd.c", "mod_unixd.so"),
        ("log_config_module", "mod_log_config.c", "mod_log_config.so"),
    ] {
        if !compiled_in(source) {
            modules.push((name, file));
        }
    }
    modules
}

/// Whether the httpd has module `source` (e.g. "mod_unixd.c") built in.
fn compiled_in(source: &str) -> bool {
    static BUILT_IN: OnceLock<Vec<String>> = OnceLock::new();
    BUILT_IN
        .get_or_init(|| {
            let out = Command::new(apache()).arg("-l").output().expect("run httpd -l");
            String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().to_owned()).collect()
        })
        .iter()
        .any(|l| l == source)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// 1,000 client sockets in the test process plus as many in apache need more
/// than the usual soft limit of 1,024 descriptors; apache inherits ours.
fn raise_nofile_limit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: lim is a valid rlimit for both calls.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
    });
}

/// A free TCP port on `ip`, or None if `ip` cannot be bound (e.g. no IPv6).
pub fn free_port(ip: &str) -> Option<u16> {
    let listener = TcpListener::bind((ip, 0)).ok()?;
    Some(listener.local_addr().ok()?.port())
}

fn write_file(path: &Path, contents: &[u8], mode: u32) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A fresh directory under /tmp that is removed on drop, unless the test is
/// failing: then it stays for inspection and its path is printed.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = PathBuf::from(format!("/tmp/mpmrs-e2e-{}-{n}", std::process::id()));
        // A leftover from an earlier run whose pid happened to be the same.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        // Apache's children run as www-data when we are root.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("test failed: keeping {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// Builds the configuration of one test server.
pub struct ServerBuilder {
    mpm: PathBuf,
    log_level: String,
    keep_alive_timeout: u32,
    directives: String,
    ipv6: bool,
    cgi: bool,
    /// `-X` instead of `-DFOREGROUND`.
    one_process: bool,
    /// RLIMIT_NOFILE of apache (soft and hard); None inherits ours.
    max_open_files: Option<u64>,
    /// Further stock modules: (module name, file in the stock module directory).
    extra_modules: Vec<(String, String)>,
    mib50_file: bool,
}

/// The stock event MPM of the httpd under test, for tests that compare
/// with it in the same run.
pub fn stock_event() -> String {
    format!("{}/mod_mpm_event.so", module_dir())
}

pub fn server() -> ServerBuilder {
    ServerBuilder {
        // Resolved first, so a missing module fails before anything is created.
        mpm: mpm_module(),
        log_level: "warn".into(),
        keep_alive_timeout: 5,
        directives: String::new(),
        ipv6: false,
        cgi: true,
        one_process: false,
        max_open_files: None,
        extra_modules: Vec::new(),
        mib50_file: false,
    }
}

/// Outcome of `apache2 -t`.
pub struct ConfigCheck {
    pub success: bool,
    /// stdout and stderr together.
    pub output: String,
}

impl ServerBuilder {
    /// LogLevel of the generated configuration (default `warn`); handy when
    /// debugging a failing test.
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.into();
        self
    }

    pub fn keep_alive_timeout(mut self, secs: u32) -> Self {
        self.keep_alive_timeout = secs;
        self
    }

    /// Directives (MPM tuning etc.) appended after the generated defaults,
    /// so they also override them.
    pub fn directives(mut self, text: &str) -> Self {
        self.directives.push_str(text);
        self.directives.push('\n');
        self
    }

    /// Also listen on [::1] if it can be bound (see `Server::addr6`).
    pub fn ipv6(mut self) -> Self {
        self.ipv6 = true;
        self
    }

    /// Leaves mod_cgid out, so that every child of the parent is a worker process.
    pub fn without_cgi(mut self) -> Self {
        self.cgi = false;
        self
    }

    /// Runs apache as `apache2 -X`: one process that is parent and child at
    /// once (no fork, no pipe of death), stopped by SIGTERM or SIGINT.
    pub fn single_process(mut self) -> Self {
        self.one_process = true;
        self
    }

    /// Starts apache with this RLIMIT_NOFILE (its children inherit it), to
    /// make it run out of descriptors with a few dozen connections.
    pub fn max_open_files(mut self, limit: u64) -> Self {
        self.max_open_files = Some(limit);
        self
    }

    /// Loads one more module from the stock module directory, e.g.
    /// `load_module("reqtimeout_module", "mod_reqtimeout.so")`.
    pub fn load_module(mut self, name: &str, file: &str) -> Self {
        self.extra_modules.push((name.into(), file.into()));
        self
    }

    /// Also serves `MIB50_PATH` (`mib50_body()`).
    pub fn with_50_mib_file(mut self) -> Self {
        self.mib50_file = true;
        self
    }

    /// Writes server root and configuration; returns the config path and ports.
    fn prepare(&self, dir: &Path) -> (PathBuf, u16, Option<u16>) {
        let port = free_port("127.0.0.1").expect("no free port on 127.0.0.1");
        let port6 = if self.ipv6 { free_port("::1") } else { None };
        let d = dir.display();

        let htdocs = dir.join("htdocs");
        let cgi_bin = dir.join("cgi-bin");
        for sub in [&htdocs, &cgi_bin] {
            fs::create_dir(sub).unwrap();
            fs::set_permissions(sub, fs::Permissions::from_mode(0o755)).unwrap();
        }
        write_file(&htdocs.join("index.html"), INDEX_BODY, 0o644);
        write_file(&htdocs.join(&SMALL_PATH[1..]), SMALL_BODY, 0o644);
        write_file(&htdocs.join(&KIB_PATH[1..]), kib_body(), 0o644);
        write_file(&htdocs.join(&MIB10_PATH[1..]), mib10_body(), 0o644);
        if self.mib50_file {
            write_file(&htdocs.join(&MIB50_PATH[1..]), mib50_body(), 0o644);
        }
        write_file(
            &cgi_bin.join("sleep"),
            b"#!/bin/sh\nsleep \"${QUERY_STRING:-1}\"\nprintf 'Content-Type: text/plain\\r\\n\\r\\nslept\\n'\n",
            0o755,
        );
        // Our own types file keeps the test independent of /etc/mime.types.
        write_file(
            &dir.join("mime.types"),
            b"text/html html\ntext/plain txt\napplication/octet-stream bin\n",
            0o644,
        );

        let mut conf = format!(
            "ServerRoot \"{d}\"\n\
             Listen 127.0.0.1:{port}\n"
        );
        if let Some(p6) = port6 {
            conf += &format!("Listen [::1]:{p6}\n");
        }
        conf += &format!(
            "PidFile \"{d}/httpd.pid\"\n\
             ErrorLog \"{d}/error_log\"\n\
             LogLevel {level}\n\
             DefaultRuntimeDir \"{d}\"\n\
             Mutex file:{d} default\n\
             ServerName 127.0.0.1\n",
            level = self.log_level
        );
        if is_root() {
            conf += "User www-data\nGroup www-data\n";
        }
        conf += &format!("LoadModule mpm_event_module \"{}\"\n", self.mpm.display());
        for (name, file) in stock_modules(self.cgi) {
            conf += &format!("LoadModule {name} \"{}/{file}\"\n", module_dir());
        }
        for (name, file) in &self.extra_modules {
            conf += &format!("LoadModule {name} \"{}/{file}\"\n", module_dir());
        }
        conf += &format!(
            "TypesConfig \"{d}/mime.types\"\n\
             DocumentRoot \"{d}/htdocs\"\n\
             DirectoryIndex index.html\n\
             <Directory \"{d}/htdocs\">\n    Require all granted\n</Directory>\n\
             <Location /server-status>\n    SetHandler server-status\n    Require all granted\n</Location>\n\
             ExtendedStatus On\n\
             KeepAlive On\n\
             MaxKeepAliveRequests 0\n\
             KeepAliveTimeout {kat}\n",
            kat = self.keep_alive_timeout
        );
        if self.cgi {
            conf += &format!(
                "ScriptSock \"{d}/cgisock\"\n\
                 ScriptAlias /cgi-bin/ \"{d}/cgi-bin/\"\n\
                 <Directory \"{d}/cgi-bin\">\n    Require all granted\n</Directory>\n"
            );
        }
        conf += &self.directives;

        let conf_path = dir.join("httpd.conf");
        write_file(&conf_path, conf.as_bytes(), 0o644);
        (conf_path, port, port6)
    }

    /// Serves TLS (mod_ssl) on the server's port, with a self-signed
    /// certificate for 127.0.0.1 made with openssl in `dir`.
    pub fn tls(self, dir: &Path) -> Self {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let made = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(made.success(), "openssl req");
        self.load_module("socache_shmcb_module", "mod_socache_shmcb.so")
            .load_module("ssl_module", "mod_ssl.so")
            .directives(&format!(
                "SSLEngine on\nSSLCertificateFile \"{}\"\nSSLCertificateKeyFile \"{}\"\n",
                cert.display(),
                key.display()
            ))
    }

    /// Runs this MPM module instead of the one under test.
    pub fn mpm(mut self, module: &str) -> Self {
        self.mpm = PathBuf::from(module);
        self
    }

    /// Runs `apache2 -t` on the configuration instead of starting a server.
    pub fn config_test(self) -> ConfigCheck {
        let dir = TempDir::new();
        let (conf, _, _) = self.prepare(dir.path());
        let out = Command::new(apache())
            .arg("-t")
            .arg("-f")
            .arg(&conf)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .output()
            .expect("run apache2 -t");
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output += &String::from_utf8_lossy(&out.stderr);
        ConfigCheck {
            success: out.status.success(),
            output,
        }
    }

    /// Starts apache in the foreground and waits until it accepts connections.
    pub fn start(self) -> Server {
        raise_nofile_limit();
        let dir = TempDir::new();
        let (conf, port, port6) = self.prepare(dir.path());
        let console = fs::File::create(dir.path().join("console.log")).unwrap();
        let mut command = Command::new(apache());
        if let Some(limit) = self.max_open_files {
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: runs in the forked child before exec; setrlimit is
            // async-signal-safe and `lim` is a copied plain value.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::last_os_error())
                    }
                });
            }
        }
        let child = command
            .arg("-f")
            .arg(&conf)
            .arg(if self.one_process {
                "-X"
            } else {
                "-DFOREGROUND"
            })
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console)
            // Its own process group: lets Drop kill every apache process at
            // once and keeps apache's group signals away from the test runner.
            .process_group(0)
            .spawn()
            .expect("spawn apache2");
        let server = Server {
            port,
            port6,
            child,
            dir,
        };
        server.wait_until_ready();
        server
    }
}

/// A running apache; stopped (and its process group killed) on drop.
pub struct Server {
    port: u16,
    /// Set when `ipv6()` was requested and [::1] could be bound.
    port6: Option<u16>,
    child: Child,
    // Dropped after `Server::drop` has run, i.e. after apache is gone.
    dir: TempDir,
}

impl Server {
    fn wait_until_ready(&self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if self.has_exited() {
                panic!("apache exited during startup:\n{}", self.diagnostics());
            }
            if self.pid_file().exists()
                && TcpStream::connect_timeout(&self.addr(), Duration::from_millis(500)).is_ok()
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "apache not ready within {STARTUP_TIMEOUT:?}:\n{}",
                    self.diagnostics()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn diagnostics(&self) -> String {
        format!(
            "--- console ---\n{}\n--- last 30 lines of {} ---\n{}",
            tail(&self.dir.path().join("console.log"), 30),
            self.error_log_path().display(),
            tail(&self.error_log_path(), 30)
        )
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn addr6(&self) -> Option<SocketAddr> {
        self.port6
            .map(|p| SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, p)))
    }

    pub fn pid_file(&self) -> PathBuf {
        self.dir.path().join("httpd.pid")
    }

    fn error_log_path(&self) -> PathBuf {
        self.dir.path().join("error_log")
    }

    /// The whole error_log so far.
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.error_log_path()).unwrap_or_default()
    }

    /// The last `lines` lines of the error_log, for failure messages.
    pub fn error_log_tail(&self, lines: usize) -> String {
        tail(&self.error_log_path(), lines)
    }

    /// The parent process: with -DFOREGROUND it is the process we spawned.
    pub fn parent(&self) -> Process {
        Process::new(self.child.id() as i32).expect("apache parent not running")
    }

    /// Current children of the parent (worker processes and, with CGI, the cgid daemon).
    pub fn children(&self) -> Vec<Process> {
        children_of(self.child.id() as i32)
    }

    /// `ParentServerConfigGeneration` from server-status: goes up by one per
    /// restart. None while the server does not answer.
    pub fn config_generation(&self) -> Option<u64> {
        self.server_status_auto()
            .ok()?
            .get("ParentServerConfigGeneration")?
            .parse()
            .ok()
    }

    /// The apache process that holds the server end of the TCP connection
    /// whose client end is `client` (a `Conn::local_addr()`): which child
    /// serves a connection cannot be seen over HTTP. None when no process of
    /// this server (parent or child) has it open.
    pub fn connection_owner(&self, client: SocketAddr) -> Option<Process> {
        let inode = server_socket_inode(self.addr(), client)?;
        let link = format!("socket:[{inode}]");
        let mut procs = self.children();
        procs.push(self.parent());
        procs
            .into_iter()
            .find(|p| p.open_fds().iter().any(|(_, target)| *target == link))
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: plain syscall; the pid is our unreaped child, so it cannot
        // have been reused by another process.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Whether the parent has exited. It is not reaped (WNOWAIT), so its pid,
    /// which is also our process group id, stays reserved until `Drop`.
    pub fn has_exited(&self) -> bool {
        // SAFETY: siginfo_t is plain data; waitid only writes into it.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let rc = libc::waitid(
                libc::P_PID,
                self.child.id(),
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            rc == 0 && info.si_pid() != 0
        }
    }

    /// Waits (bounded) for the parent to exit.
    fn wait_exit(&self, timeout: Duration) -> bool {
        wait_until(timeout, || self.has_exited())
    }

    pub fn connect(&self) -> Conn {
        Conn::connect(self.addr()).unwrap_or_else(|e| panic!("connect to {}: {e}", self.addr()))
    }

    /// A connection that has completed one request and now idles in keep-alive.
    pub fn idle_connection(&self) -> Conn {
        let mut conn = self.connect();
        let resp = conn
            .get(SMALL_PATH)
            .unwrap_or_else(|e| panic!("first request on a new connection: {e}"));
        assert_eq!(resp.status, 200, "first request on a new connection");
        conn
    }

    /// One GET on a fresh connection.
    pub fn get(&self, path: &str) -> Response {
        self.connect()
            .get(path)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Connections to the server's address that the server still holds
    /// (open, or in its lingering close).
    pub fn held_connections(&self) -> usize {
        let Some(me) = proc_net_addr(self.addr()) else { return 0 };
        tcp_sockets().iter().filter(|s| s.local == me && s.state != "0A").count()
    }

    /// `/server-status?auto` parsed into its `Key: value` lines.
    pub fn server_status_auto(&self) -> io::Result<HashMap<String, String>> {
        let resp = Conn::connect(self.addr())?.get("/server-status?auto")?;
        if resp.status != 200 {
            return Err(io::Error::other(format!(
                "server-status answered {}",
                resp.status
            )));
        }
        Ok(String::from_utf8_lossy(&resp.body)
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        if !self.has_exited() {
            self.signal(libc::SIGTERM);
            if let Some(file_pid) = fs::read_to_string(self.pid_file())
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                && file_pid != pid
                && file_pid > 0
            {
                // SAFETY: plain syscall on the pid apache wrote into our own pid file.
                unsafe { libc::kill(file_pid, libc::SIGTERM) };
            }
            self.wait_exit(SHUTDOWN_TIMEOUT);
        }
        // Kill whatever is left of the group (a hung parent, orphaned children)
        // while the unreaped parent still reserves the group id, then reap it.
        // SAFETY: plain syscall on the process group we created.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("{}", self.diagnostics());
        }
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until none of `procs` runs any more; returns those still running
/// when `timeout` passed.
pub fn wait_all_exited(procs: &[Process], timeout: Duration) -> Vec<Process> {
    wait_until(timeout, || procs.iter().all(|p| !p.is_running()));
    procs.iter().filter(|p| p.is_running()).copied().collect()
}

/// The inode of the established socket with local address `local` and peer
/// `peer`, from /proc/net/tcp (IPv4 only); 0 inodes (TIME_WAIT) are skipped.
fn server_socket_inode(local: SocketAddr, peer: SocketAddr) -> Option<u64> {
    let (local, peer) = (proc_net_addr(local)?, proc_net_addr(peer)?);
    tcp_sockets().into_iter().find_map(|s| (s.local == local && s.peer == peer).then_some(s.inode))
}

/// An IPv4 address as /proc/net/tcp prints it: the raw 32-bit value in
/// host order, and the port, in hex.
fn proc_net_addr(a: SocketAddr) -> Option<String> {
    match a.ip() {
        IpAddr::V4(ip) => Some(format!("{:08X}:{:04X}", u32::from_ne_bytes(ip.octets()), a.port())),
        IpAddr::V6(_) => None,
    }
}

struct TcpSocket {
    local: String,
    peer: String,
    /// The kernel's state number, in hex ("0A" is LISTEN).
    state: String,
    inode: u64,
}

/// The IPv4 TCP sockets some process holds (a socket no process holds,
/// in TIME_WAIT say, has inode 0 and is left out).
fn tcp_sockets() -> Vec<TcpSocket> {
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let inode = f.get(9)?.parse::<u64>().ok()?;
            (inode != 0).then(|| TcpSocket { local: f[1].to_owned(), peer: f[2].to_owned(), state: f[3].to_owned(), inode })
        })
        .collect()
}

/// A process identified by pid and start time, so that a recycled pid is
/// not mistaken for the original process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Process {
    pub pid: i32,
    start_time: u64,
}

struct Stat {
    state: char,
    ppid: i32,
    start_time: u64,
}

fn read_stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; fields after it don't.
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

impl Process {
    pub fn new(pid: i32) -> Option<Process> {
        read_stat(pid).map(|s| Process {
            pid,
            start_time: s.start_time,
        })
    }

    /// Still exists and has not exited (a zombie has exited: it only waits to be reaped).
    pub fn is_running(&self) -> bool {
        read_stat(self.pid).is_some_and(|s| s.start_time == self.start_time && s.state != 'Z')
    }

    /// Resident memory (VmRSS) in KiB; None once the process is gone.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        if !self.is_running() {
            return None;
        }
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Open descriptors and what they point to (`readlink` of /proc/PID/fd/N:
    /// a path, `socket:[inode]`, `pipe:[inode]`, ...), ordered by number.
    /// Empty once the process is gone.
    pub fn open_fds(&self) -> Vec<(i32, String)> {
        let Ok(entries) = fs::read_dir(format!("/proc/{}/fd", self.pid)) else {
            return Vec::new();
        };
        let mut fds: Vec<(i32, String)> = entries
            .filter_map(|e| {
                let e = e.ok()?;
                let fd = e.file_name().to_str()?.parse().ok()?;
                // A descriptor closed between read_dir and readlink is skipped.
                let target = fs::read_link(e.path()).ok()?;
                Some((fd, target.display().to_string()))
            })
            .collect();
        fds.sort();
        fds
    }
}

/// Live children of `ppid`, found by scanning /proc.
fn children_of(ppid: i32) -> Vec<Process> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = read_stat(pid)?;
            (stat.ppid == ppid && stat.state != 'Z').then_some(Process {
                pid,
                start_time: stat.start_time,
            })
        })
        .collect()
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The Content-Length header, if there is one; an error if it is not a number.
    pub fn content_length(&self) -> io::Result<Option<usize>> {
        self.header("Content-Length")
            .map(|len| {
                len.parse()
                    .map_err(|_| io::Error::other(format!("bad Content-Length {len:?}")))
            })
            .transpose()
    }

    /// Whether the server announced that it closes the connection after this response.
    pub fn closes_connection(&self) -> bool {
        self.header("Connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// `GET path` as sent by `Conn::get`, for tests that assemble their own writes.
pub fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: e2e.test\r\n\r\n")
}

/// A raw HTTP/1.1 client connection; responses are read in order, so
/// keep-alive reuse and pipelining work naturally. After an I/O error in
/// the middle of a response the connection is not usable any more.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn set_read_timeout(&self, timeout: Duration) {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
    }

    /// The client end's address, for `Server::connection_owner`.
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }

    /// Shrinks the receive buffer, so that a client that reads slowly (or
    /// not at all) makes the server wait for the socket to become writable
    /// after a few KiB instead of after megabytes of loopback buffering.
    pub fn set_recv_buffer(&self, bytes: usize) {
        let size = bytes as libc::c_int;
        // SAFETY: valid socket fd and a c_int option value of the size given.
        let rc = unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(
            rc,
            0,
            "setsockopt SO_RCVBUF: {}",
            io::Error::last_os_error()
        );
    }

    /// Whether the server has closed (FIN or RST) the connection, without
    /// waiting and without consuming anything: unread data means open.
    pub fn peer_closed(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        self.stream.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let closed = match self.stream.peek(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        };
        self.stream.set_nonblocking(false).unwrap();
        closed
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
                io::Error::new(e.kind(), ClosedBeforeResponse)
            }
            _ => e,
        })
    }

    /// Starts downloading `path` with a receive buffer of `recv_buffer`
    /// bytes (so that the server soon waits for the reader): reads the head,
    /// checks it is a 200, and returns the Content-Length.
    pub fn start_download(&mut self, path: &str, recv_buffer: usize) -> usize {
        self.set_recv_buffer(recv_buffer);
        self.send(get_request(path).as_bytes()).unwrap();
        let head = self.read_head().expect("download response head");
        assert_eq!(head.status, 200, "download of {path}");
        head.content_length().unwrap().expect("Content-Length")
    }

    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.send(get_request(path).as_bytes())?;
        self.read_response()
    }

    /// Reads more bytes into the buffer; EOF is an error here.
    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by server",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Removes and returns everything up to and including the first `delim`.
    fn take_through(&mut self, delim: &[u8]) -> io::Result<Vec<u8>> {
        let mut searched = 0;
        loop {
            if let Some(pos) = self.buf[searched..]
                .windows(delim.len())
                .position(|w| w == delim)
            {
                let end = searched + pos + delim.len();
                return Ok(self.buf.drain(..end).collect());
            }
            searched = self.buf.len().saturating_sub(delim.len() - 1);
            self.fill()?;
        }
    }

    /// Reads exactly `len` bytes (e.g. the body after `read_head`).
    pub fn read_bytes(&mut self, len: usize) -> io::Result<Vec<u8>> {
        self.take_exact(len)
    }

    /// Like `read_bytes`, but at no more than `bytes_per_sec` on average: a
    /// slow client, which the server has to wait for.
    pub fn read_bytes_paced(&mut self, len: usize, bytes_per_sec: u64) -> io::Result<Vec<u8>> {
        let start = Instant::now();
        let from_buf = len.min(self.buf.len());
        let mut out: Vec<u8> = self.buf.drain(..from_buf).collect();
        out.reserve(len - out.len());
        let mut chunk = [0u8; 16 * 1024];
        while out.len() < len {
            let want = chunk.len().min(len - out.len());
            let n = self.stream.read(&mut chunk[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed by server after {} of {len} bytes",
                        out.len()
                    ),
                ));
            }
            out.extend_from_slice(&chunk[..n]);
            let due = Duration::from_secs_f64(out.len() as f64 / bytes_per_sec as f64);
            if let Some(ahead) = due.checked_sub(start.elapsed()) {
                thread::sleep(ahead);
            }
        }
        Ok(out)
    }

    fn take_exact(&mut self, len: usize) -> io::Result<Vec<u8>> {
        let from_buf = len.min(self.buf.len());
        let mut out: Vec<u8> = self.buf.drain(..from_buf).collect();
        let start = out.len();
        out.resize(len, 0);
        self.stream.read_exact(&mut out[start..])?;
        Ok(out)
    }

    /// Reads one complete response (Content-Length, chunked or close-delimited).
    /// A timeout before the first byte leaves the connection usable.
    pub fn read_response(&mut self) -> io::Result<Response> {
        let mut resp = self.read_head()?;
        if resp.status < 200 || resp.status == 204 || resp.status == 304 {
            return Ok(resp);
        }
        let chunked = resp
            .header("Transfer-Encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if chunked {
            loop {
                let size_line = self.take_through(b"\r\n")?;
                let size_text = String::from_utf8_lossy(&size_line);
                let size_hex = size_text.trim().split(';').next().unwrap_or_default();
                let size = usize::from_str_radix(size_hex, 16)
                    .map_err(|_| io::Error::other(format!("bad chunk size line {size_text:?}")))?;
                if size == 0 {
                    // Skip trailers up to the empty line.
                    while self.take_through(b"\r\n")?.len() > 2 {}
                    break;
                }
                resp.body.extend(self.take_exact(size)?);
                self.take_exact(2)?;
            }
        } else if let Some(len) = resp.content_length()? {
            resp.body = self.take_exact(len)?;
        } else {
            resp.body = std::mem::take(&mut self.buf);
            self.stream.read_to_end(&mut resp.body)?;
        }
        Ok(resp)
    }

    /// Reads the status line and headers of a response, leaving its body
    /// (see `Response::content_length`) to be read with `read_bytes` or
    /// `read_bytes_paced`. The returned body is empty.
    pub fn read_head(&mut self) -> io::Result<Response> {
        let head = self.take_through(b"\r\n\r\n").map_err(|e| {
            let closed = matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
            );
            if closed && self.buf.is_empty() {
                io::Error::new(e.kind(), ClosedBeforeResponse)
            } else {
                e
            }
        })?;
        let head = String::from_utf8_lossy(&head);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Ok(Response {
            status,
            headers,
            body: Vec::new(),
        })
    }

    /// Waits for the server to close the connection; returns how long that took.
    /// Fails on received data or if nothing happens within `timeout`.
    pub fn wait_for_close(&mut self, timeout: Duration) -> io::Result<Duration> {
        let start = Instant::now();
        self.set_read_timeout(timeout);
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => Ok(start.elapsed()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(start.elapsed()),
            Ok(_) => Err(io::Error::other("unexpected data on idle connection")),
            Err(e) => Err(e),
        }
    }
}

/// The server closed the connection before sending any byte of the response.
#[derive(Debug)]
struct ClosedBeforeResponse;

impl std::fmt::Display for ClosedBeforeResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed by the server before any response byte")
    }
}

impl std::error::Error for ClosedBeforeResponse {}

pub fn is_closed_before_response(err: &io::Error) -> bool {
    err.get_ref()
        .is_some_and(|inner| inner.is::<ClosedBeforeResponse>())
}

/// True if `err` is a read timeout (std reports either kind depending on the platform).
pub fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// User + system CPU time of a process, in clock ticks.
pub fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the
    // 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

/// Failures seen by load-generating client threads: a count, and the first
/// few descriptions for the assertion message.
#[derive(Default)]
pub struct Failures {
    count: std::sync::atomic::AtomicU64,
    first: std::sync::Mutex<Vec<String>>,
}

impl Failures {
    pub fn record(&self, what: String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first.lock().unwrap();
        if first.len() < 10 {
            first.push(what);
        }
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn summary(&self) -> String {
        format!(
            "{} failures, first: {:#?}",
            self.count(),
            self.first.lock().unwrap()
        )
    }
}

/// A client that sends `GET path` in a loop on one keep-alive
/// connection until `stop`, reconnecting only after a response that
/// announced `Connection: close`. Every error is a failure: a reset, a close
/// before the response on a reused connection (the server closed it while a
/// request could be on the way), a refused connect, a wrong status or body.
pub fn keep_alive_client(addr: SocketAddr, path: &str, body: &[u8], stop: &AtomicBool, ok: &AtomicU64, failures: &Failures) {
    let mut conn: Option<(Conn, u64)> = None;
    while !stop.load(Ordering::Relaxed) {
        let (mut c, served) = match conn.take() {
            Some(c) => c,
            None => match Conn::connect(addr) {
                Ok(c) => (c, 0),
                Err(e) => {
                    failures.record(format!("connect: {e}"));
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
            },
        };
        let which = if served == 0 { "fresh" } else { "reused" };
        match c.get(path) {
            Ok(resp) if resp.status == 200 && resp.body == body => {
                ok.fetch_add(1, Ordering::Relaxed);
                if !resp.closes_connection() {
                    conn = Some((c, served + 1));
                }
            }
            Ok(resp) => failures.record(format!(
                "{which} connection: status {}, {} body bytes",
                resp.status,
                resp.body.len()
            )),
            Err(e) => failures.record(format!(
                "{which} connection after {served} responses: {e} ({:?})",
                e.kind()
            )),
        }
    }
}
