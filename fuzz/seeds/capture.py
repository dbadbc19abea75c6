#!/usr/bin/env python3
"""Record real PostgreSQL traffic and turn it into fuzz seeds.

A loopback proxy sits between stock clients (psql, pgbench, psycopg) and a
throwaway PostgreSQL cluster that asks for a cleartext password (as
Gatehouse does for the agent's token) and records both directions of every
connection. The streams are then cut into seeds for the targets:

- pg_startup: the client's bytes up to its PasswordMessage, with the write
  sizes it really used (and once more with TLS offered);
- pg_frames: the client's tagged frames after the password, in pieces of at
  most 4 KiB cut at frame boundaries;
- pg_target: the server's frames likewise;
- sql_text: every Query and Parse statement.

Usage: capture.py OUT_DIR   (run by fuzz/seeds/capture.sh, which starts the
cluster and the clients).
"""

import os
import socket
import struct
import sys
import threading

PIECE = 4096
# Pieces kept per direction of one connection: pgbench -i sends megabytes
# of COPY data that all look alike.
MAX_PIECES = 8


def relay(src, dst, log, writes):
    while True:
        try:
            data = src.recv(65536)
        except OSError:
            data = b""
        if not data:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return
        log.append(data)
        writes.append(len(data))
        dst.sendall(data)


def serve(listen_port, target_port, sessions, stop):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", listen_port))
    srv.listen(64)
    srv.settimeout(0.5)
    while not stop.is_set():
        try:
            client, _ = srv.accept()
        except socket.timeout:
            continue
        upstream = socket.create_connection(("127.0.0.1", target_port))
        session = {"client": [], "server": [], "client_writes": [], "server_writes": []}
        sessions.append(session)
        for a, b, k in ((client, upstream, "client"), (upstream, client, "server")):
            threading.Thread(
                target=relay, args=(a, b, session[k], session[k + "_writes"]), daemon=True
            ).start()
    srv.close()


def frames(stream, at):
    """Tagged frames of stream from offset at: list of (start, end)."""
    out = []
    while at + 5 <= len(stream):
        (length,) = struct.unpack(">i", stream[at + 1 : at + 5])
        end = at + 1 + length
        if length < 4 or end > len(stream):
            break
        out.append((at, end))
        at = end
    return out


def pieces(stream, spans):
    chunk_start = None
    last = None
    for s, e in spans:
        if chunk_start is None:
            chunk_start = s
        if e - chunk_start > PIECE and last is not None:
            yield stream[chunk_start:last]
            chunk_start = s
        last = e
    if chunk_start is not None:
        yield stream[chunk_start:last]


def startup_end(stream):
    """Offset just past the client's PasswordMessage (or startup)."""
    at = 0
    while at + 8 <= len(stream):
        (length, code) = struct.unpack(">ii", stream[at : at + 8])
        at += length
        if code == 196608:
            break
    for s, e in frames(stream, at):
        if stream[s] == ord("p"):
            return e
    return at


def write(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def cut(out, sessions):
    for n, s in enumerate(sessions):
        client = b"".join(s["client"])
        server = b"".join(s["server"])
        end = startup_end(client)
        # The writes the client really made, as the target encodes them.
        sizes = [w for w in s["client_writes"] if w <= 256][:7]
        head = bytes([len(sizes) << 1]) + bytes(w - 1 for w in sizes)
        write(out, "pg_startup", f"real-{n}", head + client[:end])
        write(out, "pg_startup", f"real-tls-{n}", bytes([(len(sizes) << 1) | 1]) + bytes(w - 1 for w in sizes) + client[:end])
        for k, p in enumerate(list(pieces(client, frames(client, end)))[:MAX_PIECES]):
            write(out, "pg_frames", f"real-{n}-{k}", b"\0" + p)
        start = 1 if server[:1] == b"N" else 0
        for k, p in enumerate(list(pieces(server, frames(server, start)))[:MAX_PIECES]):
            write(out, "pg_target", f"real-{n}-{k}", b"\0" + p)
        seen = set()
        for fs, fe in frames(client, end):
            tag, body = client[fs], client[fs + 5 : fe]
            sql = None
            if tag == ord("Q"):
                sql = body[:-1]
            elif tag == ord("P"):
                sql = body.split(b"\0")[1]
            if sql and sql not in seen and len(sql) < 8192:
                seen.add(sql)
                write(out, "sql_text", f"real-{n}-{len(seen)}", b"\0" + sql)


def main():
    out, listen_port, target_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sessions = []
    stop = threading.Event()
    t = threading.Thread(target=serve, args=(listen_port, target_port, sessions, stop))
    t.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()  # the clients are done
    stop.set()
    t.join()
    cut(out, sessions)
    print(f"{len(sessions)} sessions recorded")


if __name__ == "__main__":
    main()
