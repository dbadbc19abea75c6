#!/usr/bin/env python3
"""Open N authenticated, idle PostgreSQL sessions through Gatehouse over TLS
and report the daemon's resident memory per session.

usage: idle_sessions.py PORT CA_FILE TOKEN DBNAME PID N
Prints: sessions=N rss_before_kib=A rss_after_kib=B kib_per_session=C
"""
import socket
import ssl
import struct
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def read_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise RuntimeError("connection closed")
        out += chunk
    return out


def read_msg(s):
    head = read_exact(s, 5)
    tag, length = head[:1], struct.unpack("!i", head[1:])[0]
    return tag, read_exact(s, length - 4)


def open_session(port, ctx, token, dbname):
    raw = socket.create_connection(("127.0.0.1", port))
    raw.sendall(struct.pack("!ii", 8, 80877103))
    if read_exact(raw, 1) != b"S":
        raise RuntimeError("no TLS")
    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    params = b"user\0bench\0database\0" + dbname.encode() + b"\0\0"
    s.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
    tag, body = read_msg(s)
    if tag != b"R" or struct.unpack("!i", body[:4])[0] != 3:
        raise RuntimeError(f"expected a password request, got {tag!r}")
    pw = token.encode() + b"\0"
    s.sendall(b"p" + struct.pack("!i", 4 + len(pw)) + pw)
    while True:
        tag, body = read_msg(s)
        if tag == b"E":
            raise RuntimeError(body)
        if tag == b"Z":
            return s


def main():
    port, ca, token, dbname, pid, n = sys.argv[1:7]
    port, pid, n = int(port), int(pid), int(n)
    ctx = ssl.create_default_context(cafile=ca)
    # A few sessions first so one-time allocations (TLS config, caches)
    # are not counted per session.
    warm = [open_session(port, ctx, token, dbname) for _ in range(10)]
    time.sleep(1)
    before = rss_kib(pid)
    sessions = [open_session(port, ctx, token, dbname) for _ in range(n)]
    time.sleep(2)
    after = rss_kib(pid)
    print(f"sessions={n} rss_before_kib={before} rss_after_kib={after} "
          f"kib_per_session={(after - before) / n:.1f}")
    for s in sessions + warm:
        s.close()


if __name__ == "__main__":
    main()
