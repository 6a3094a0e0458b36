"""Scenarios 7 and 8 of `make bench`: the server in front of a blocking
backend (bench/README.md, "The scenarios"; bench/results/analysis/backends.md).

7. PHP-FPM through mod_proxy_fcgi: Debian's php-fpm, `pm = static` with 8
   children on a unix socket in the server's run directory, a one-line script.
8. A reverse proxy: mod_proxy_http, reusing its connections, to a keep-alive
   nginx on 127.0.0.1 serving the 1 KiB file.

Each backend is started for one measurement, with its own configuration and
pid file in the server's directory, before the server, and stopped (by the
pid in its pid file) after it. The apache2 servers get the same lines
(`scenario.conf`, included at the end of httpd.conf): ThreadsPerChild 25,
ServerLimit 4, MaxRequestWorkers 100, as in issue 18's measurement. nginx is
not measured in these scenarios.
"""

import glob
import os
import shutil
import signal
import subprocess
import time

import bench

PHP_FPM = (sorted(glob.glob("/usr/sbin/php-fpm*")) or ["/usr/sbin/php-fpm"])[-1]
FPM_CHILDREN = 8
SCRIPT = "<?php echo \"hello from php\\n\";\n"

# Both scenarios: Debian's thread counts, with the process count of the
# issue's measurement (100 workers in at most 4 children).
LIMITS = """
ServerLimit       4
MaxRequestWorkers 100
LoadModule proxy_module      "{modules}/mod_proxy.so"
"""

FPM_CONF = """[global]
pid = {dir}/php-fpm.pid
error_log = {dir}/php-fpm.log
daemonize = yes
[bench]
{user}listen = {dir}/php-fpm.sock
listen.mode = 0666
listen.backlog = 511
pm = static
pm.max_children = {children}
"""

NGINX_BACKEND_CONF = """worker_processes 1;
pid {dir}/backend-nginx.pid;
error_log {dir}/backend-nginx.error.log warn;
{user}events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    client_body_temp_path {dir}/backend-tmp;
    proxy_temp_path {dir}/backend-tmp;
    fastcgi_temp_path {dir}/backend-tmp;
    uwsgi_temp_path {dir}/backend-tmp;
    scgi_temp_path {dir}/backend-tmp;
    server {{
        listen 127.0.0.1:{port};
        root {docroot};
    }}
}}
"""


class Backend:
    """One backend process tree, known by the pid in its pid file."""

    def __init__(self, name, cmd, pidfile):
        self.name, self.cmd, self.pidfile, self.pid = name, cmd, pidfile, None

    def start(self, ready):
        rc, out = bench.run_cmd(self.cmd, 30, stdin=subprocess.DEVNULL)
        if rc != 0:
            raise RuntimeError("%s failed to start (rc %s): %s" % (self.name, rc, out.strip()))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            self.pid = self.read_pid()
            if self.pid and ready():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("%s did not come up within 15 s" % self.name)

    def read_pid(self):
        try:
            with open(self.pidfile) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def stop(self):
        pid = self.pid or self.read_pid()
        if pid is None:
            return
        pids = {pid} | set(bench.children_of(pid))
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(bench.pid_alive(p) for p in pids):
            time.sleep(0.05)
        for p in pids:
            if bench.pid_alive(p):
                bench.log("%s: pid %d still running 10 s after SIGTERM: SIGKILL" % (self.name, p))
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.pid = None


def _user(ctx, fmt):
    return fmt % (ctx.user, ctx.group) if os.geteuid() == 0 else ""


def _connectable(path):
    import socket
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def start_fpm(srv):
    """PHP-FPM in the server's directory; returns it and the lines for httpd."""
    d = srv.dir
    with open(os.path.join(srv.ctx.docroot, "hello.php"), "w") as f:
        f.write(SCRIPT)
    conf = os.path.join(d, "php-fpm.conf")
    with open(conf, "w") as f:
        f.write(FPM_CONF.format(dir=d, children=FPM_CHILDREN,
                                user=_user(srv.ctx, "user = %s\ngroup = %s\n")))
    fpm = Backend("php-fpm", [PHP_FPM, "-y", conf], os.path.join(d, "php-fpm.pid"))
    sock = os.path.join(d, "php-fpm.sock")
    fpm.start(lambda: _connectable(sock))
    lines = LIMITS + """LoadModule proxy_fcgi_module "{modules}/mod_proxy_fcgi.so"
<FilesMatch "\\.php$">
    SetHandler "proxy:unix:{sock}|fcgi://localhost"
</FilesMatch>
"""
    return fpm, lines.format(modules=bench.MODULES_DIR, sock=sock)


def start_nginx_backend(srv):
    """A keep-alive nginx on a free port; returns it and the lines for httpd."""
    d = srv.dir
    port = bench.free_port()
    os.makedirs(os.path.join(d, "backend-tmp"), exist_ok=True)
    conf = os.path.join(d, "backend-nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_BACKEND_CONF.format(dir=d, port=port, docroot=srv.ctx.docroot,
                                          user=_user(srv.ctx, "user %s %s;\n")))
    ngx = Backend("backend nginx", [bench.NGINX, "-c", conf, "-p", d + "/",
                                    "-e", os.path.join(d, "backend-nginx.error.log")],
                  os.path.join(d, "backend-nginx.pid"))
    ngx.start(lambda: bench.http_get(port) == 200)
    lines = LIMITS + """LoadModule proxy_http_module "{modules}/mod_proxy_http.so"
ProxyPass "/backend/" "http://127.0.0.1:{port}/"
"""
    return ngx, lines.format(modules=bench.MODULES_DIR, port=port)


STARTERS = {"s7": start_fpm, "s8": start_nginx_backend}
PATHS = {"s7": "/hello.php", "s8": "/backend/1k.bin"}


def start(sc, srv):
    """Before `srv` starts: the backend of scenario `sc` (None for the
    other scenarios), its httpd lines written to `srv.dir/scenario.conf`."""
    if sc not in STARTERS:
        return None
    os.makedirs(srv.dir, exist_ok=True)
    os.chmod(srv.dir, 0o755)
    backend, lines = STARTERS[sc](srv)
    with open(os.path.join(srv.dir, "scenario.conf"), "w") as f:
        f.write(lines)
    return backend


def applies(sc, server_key):
    return sc not in STARTERS or bench.SERVERS[server_key]["kind"] == "apache"


def wrk1(port, path, seconds):
    """The issue's client: one wrk thread, 50 keep-alive connections."""
    cmd = ["wrk", "-t1", "-c50", "-d%ds" % seconds, "--latency", "http://127.0.0.1:%d%s" % (port, path)]
    rc, out = bench.run_cmd(bench.PLACEMENT["client"] + cmd, seconds + 30, stdin=subprocess.DEVNULL)
    r = bench.parse_wrk(out)
    r["rc"] = rc
    if r["rps"] is None:
        r["raw"] = out[-2000:]
    return r


def answer(port, path):
    """The body of one GET, or an error text."""
    import http.client
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        c.close()
        return body if r.status == 200 else "status %d" % r.status
    except (OSError, http.client.HTTPException) as e:
        return str(e)


def expected(sc, srv):
    if sc == "s7":
        return b"hello from php\n"
    with open(os.path.join(srv.ctx.docroot, "1k.bin"), "rb") as f:
        return f.read()


def scenario(sc):
    def run(srv, o):
        got = answer(srv.port, PATHS[sc])
        if got != expected(sc, srv):
            return {"error": "GET %s through the backend: %r" % (PATHS[sc], got[:80])}
        if o.warmup > 0:
            wrk1(srv.port, PATHS[sc], o.warmup)
        return bench.measured(srv, lambda: wrk1(srv.port, PATHS[sc], o.duration))
    return run


# What an MPM does in the kernel: its listener's and workers' waits and
# hand-offs and its pollset. futex also counts mod_proxy's and APR's own
# locks, so what these sum to is more than the MPM's share, never less.
MPM_SYSCALLS = ("__x64_sys_futex", "__x64_sys_epoll_wait", "__x64_sys_epoll_pwait",
                "__x64_sys_epoll_ctl", "__x64_sys_accept4")


def mpm_share(script_text, server_comm="apache2"):
    """From `perf script -F comm,ip,sym,dso` of a system-wide `perf record
    -g`: samples per command, and the server's samples that are the MPM's
    (in an MPM syscall, or in a mod_mpm_* module's own code). Each sample is
    a header line (the command) and its call chain, leaf first."""
    per_comm, mpm, in_syscall = {}, 0, {s: 0 for s in MPM_SYSCALLS}
    for block in script_text.split("\n\n"):
        lines = [l for l in block.splitlines() if l.strip()]
        if not lines:
            continue
        comm = lines[0].strip()
        per_comm[comm] = per_comm.get(comm, 0) + 1
        if comm != server_comm:
            continue
        # "<address> <symbol> (<dso>)"
        frames = [(l.split(None, 1) + [""])[1] for l in lines[1:]]
        syms = {f.split(" (", 1)[0] for f in frames}
        hit = next((s for s in MPM_SYSCALLS if s in syms), None)
        if hit:
            in_syscall[hit] += 1
        leaf_dso = frames[0].rsplit("(", 1)[-1].rstrip(")") if frames else ""
        if hit or os.path.basename(leaf_dso).startswith("mod_mpm_"):
            mpm += 1
    return per_comm, mpm, in_syscall


def cmd_ceiling(o):
    """How much faster than `o.server` any MPM could make scenario 7: the
    whole machine's CPU samples (perf record -a) while it serves PHP-FPM,
    the part of them that is MPM work, and how long the CPUs were idle
    (/proc/stat: perf's samples of the idle task overstate it here). An MPM
    costing nothing and leaving no CPU idle serves at most that much more;
    in the closed loop of 50 connections latency then falls at most as much
    as requests/s rise (bench/results/analysis/backends.md, "The ceiling")."""
    bench.need_perf()
    bench.raise_nofile()
    ctx = bench.setup_ctx(o.module)
    os.makedirs(o.out, exist_ok=True)
    srv = bench.Server(o.server, ctx, "ceiling")
    data = os.path.join(o.out, "ceiling-%s.data" % o.server)
    backend = None
    try:
        backend = start("s7", srv)
        srv.start()
        if answer(srv.port, PATHS["s7"]) != expected("s7", srv):
            raise SystemExit("PHP-FPM did not answer through %s" % o.server)
        wrk1(srv.port, PATHS["s7"], 2)
        r = bench.wrk_under(srv, ["perf", "record", "-a", "-g", "-e", "cpu-clock", "-F", "1999", "-o", data],
                            o.seconds, load=lambda: bench.measured(srv, lambda: wrk1(srv.port, PATHS["s7"], o.seconds)))
    finally:
        srv.stop()
        if backend is not None:
            backend.stop()
        shutil.rmtree(ctx.base, ignore_errors=True)
    _, text = bench.run_cmd(["perf", "script", "-i", data, "-F", "comm,ip,sym,dso"], 300)
    per_comm, mpm, in_syscall = mpm_share(text)
    busy_samples = sum(n for c, n in per_comm.items() if c != "swapper") or 1
    idle = (r.get("cpu_idle_pct") or 0.0) / 100.0
    # Shares of the machine: the busy samples stand for the busy time.
    of_machine = lambda n: n / busy_samples * (1.0 - idle)
    share = of_machine(mpm)
    lines = ["# Scenario 7 under %s: where the CPUs went (perf record -a, %d s, %d busy samples; "
             "%.0f requests/s)" % (bench.SERVERS[o.server]["label"], o.seconds, busy_samples, r["rps"] or 0),
             "", "% of the machine's CPU time:"]
    for comm, n in sorted(per_comm.items(), key=lambda kv: -kv[1]):
        if comm != "swapper" and n >= busy_samples / 200:
            lines.append("  %-24s %5.1f %%" % (comm, 100.0 * of_machine(n)))
    lines.append("  %-24s %5.1f %%" % ("idle (/proc/stat)", 100.0 * idle))
    lines += ["", "MPM work in apache2 (an upper bound), % of the machine's CPU time:"]
    for s, n in in_syscall.items():
        lines.append("  %-24s %5.2f %%" % (s, 100.0 * of_machine(n)))
    lines += ["  %-24s %5.2f %%" % ("all MPM work", 100.0 * share), "",
              "An MPM costing nothing and leaving no CPU idle: at most %.2fx these requests/s, "
              "p99 at least %.2fx" % (1 / (1 - share - idle), 1 - share - idle)]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(o.out, "ceiling-%s.txt" % o.server), "w") as f:
        f.write(text)
    print(text, end="")
