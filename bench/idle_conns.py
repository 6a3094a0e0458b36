#!/usr/bin/env python3
"""Hold N idle HTTP/1.1 keep-alive connections open (scenario 4 of `make bench`).

Usage: idle_conns.py HOST PORT N PATH [--stall SECONDS] [--max-life SECONDS]

Opens up to N connections to HOST:PORT, at most 256 in progress at a time;
on each it sends one `GET PATH` (keep-alive) and reads the whole response,
after which the connection is left idle. It stops opening when N are idle,
or when no connection made progress for --stall seconds (default 3: a server
that needs a thread per connection stops answering once its threads are all
held), and prints one JSON line:

    {"event": "ready", "idle": n, "failed": n, "unanswered": n, "seconds": s}

Then it reads commands on stdin, one per line:

    check   prints {"event": "check", "alive": n, "closed": n}: how many idle
            connections the server has not closed (a poll with no wait; a
            readable socket that reads EOF or an error counts as closed)
    close   (or end of input) closes everything and exits

It exits by itself after --max-life seconds (default 600).
"""

import json
import os
import resource
import select
import signal
import socket
import sys
import time

IN_FLIGHT = 256


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Conn:
    __slots__ = ("sock", "state", "buf", "need")

    def __init__(self, sock):
        self.sock = sock
        self.state = "connecting"
        self.buf = b""
        self.need = None  # total bytes of the response once the header is read


def response_complete(conn):
    """True once the buffered bytes hold one full response (Content-Length)."""
    if conn.need is None:
        end = conn.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        length = 0
        for line in conn.buf[:end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        conn.need = end + 4 + length
    return len(conn.buf) >= conn.need


def main():
    args = sys.argv[1:]
    stall = 3.0
    max_life = 600
    if "--stall" in args:
        i = args.index("--stall")
        stall = float(args[i + 1])
        del args[i:i + 2]
    if "--max-life" in args:
        i = args.index("--max-life")
        max_life = int(args[i + 1])
        del args[i:i + 2]
    host, port, n, path = args[0], int(args[1]), int(args[2]), args[3]

    signal.alarm(max_life)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    request = ("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: bench-idle\r\n\r\n"
               % (path, host)).encode()
    ep = select.epoll()
    pending = {}  # fd -> Conn, not yet idle
    idle = []
    failed = 0
    started = 0
    t0 = time.monotonic()
    last_progress = t0

    def fail(c):
        nonlocal failed
        failed += 1
        try:
            ep.unregister(c.sock.fileno())
        except OSError:
            pass
        pending.pop(c.sock.fileno(), None)
        c.sock.close()

    while len(idle) < n:
        while len(pending) < IN_FLIGHT and started < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            started += 1
            try:
                s.connect((host, port))
            except BlockingIOError:
                pass
            except OSError:
                failed += 1
                s.close()
                continue
            c = Conn(s)
            pending[s.fileno()] = c
            ep.register(s.fileno(), select.EPOLLOUT)
        if not pending:
            break
        now = time.monotonic()
        if now - last_progress > stall:
            break
        for fd, ev in ep.poll(0.2):
            c = pending.get(fd)
            if c is None:
                continue
            if c.state == "connecting":
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(c)
                    continue
                try:
                    c.sock.send(request)  # small: goes out in one piece
                except OSError:
                    fail(c)
                    continue
                c.state = "reading"
                ep.modify(fd, select.EPOLLIN)
                last_progress = time.monotonic()
            else:
                try:
                    data = c.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    fail(c)
                    continue
                if not data:
                    fail(c)
                    continue
                c.buf += data
                last_progress = time.monotonic()
                if response_complete(c):
                    ep.unregister(fd)
                    del pending[fd]
                    c.buf = b""
                    idle.append(c)
        if started >= n and not pending:
            break

    unanswered = len(pending)
    for c in list(pending.values()):
        ep.unregister(c.sock.fileno())
        c.sock.close()
    pending.clear()
    emit({"event": "ready", "idle": len(idle), "failed": failed,
          "unanswered": unanswered, "seconds": round(time.monotonic() - t0, 3)})

    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "check":
            p = select.poll()
            for c in idle:
                p.register(c.sock.fileno(), select.POLLIN)
            ready = dict(p.poll(0))
            closed = 0
            for c in idle:
                if c.sock.fileno() in ready:
                    try:
                        data = c.sock.recv(1)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        closed += 1
            emit({"event": "check", "alive": len(idle) - closed, "closed": closed})
        elif cmd == "close":
            break
    for c in idle:
        c.sock.close()
    os._exit(0)


if __name__ == "__main__":
    main()
