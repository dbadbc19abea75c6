"""Relay one PostgreSQL connection and report the server's TLS records.

usage: python3 bench/tls_records.py LISTEN_PORT UPSTREAM_PORT
Serves one client on 127.0.0.1:LISTEN_PORT, relays it to
127.0.0.1:UPSTREAM_PORT (PostgreSQL or Gatehouse), and prints, for the
server-to-client direction once TLS has started: how many application-data
records there were by size (4 KiB buckets, with TLS overhead), the largest
one, and the sizes of the chunks the relay received (where the server's
writes met the socket). Used to compare what PostgreSQL and Gatehouse put
on the wire (README, "Driver compatibility").
"""
import collections, socket, sys, threading

listen_port, upstream_port = int(sys.argv[1]), int(sys.argv[2])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", listen_port))
srv.listen(1)
client, _ = srv.accept()
upstream = socket.create_connection(("127.0.0.1", upstream_port))
chunks, records = [], []

def pump(src, dst, down):
    buf, tls = b"", False
    while True:
        try:
            data = src.recv(1 << 20)
        except OSError:
            data = b""
        if not data:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return
        dst.sendall(data)
        if not down:
            continue
        chunks.append(len(data))
        buf += data
        if not tls:
            if buf[:1] == b"S":
                tls, buf = True, buf[1:]
            else:
                continue
        while len(buf) >= 5:
            n = int.from_bytes(buf[3:5], "big")
            if len(buf) < 5 + n:
                break
            if buf[0] == 23:  # application data
                records.append(n)
            buf = buf[5 + n:]

t = threading.Thread(target=pump, args=(upstream, client, True))
t.start()
pump(client, upstream, False)
t.join()
sizes = collections.Counter(min(r // 4096, 5) * 4 for r in records)
print("application-data records:", len(records), "largest:", max(records, default=0))
print("by size (KiB bucket: count):", dict(sorted(sizes.items())))
print("chunks as written:", len(chunks), "largest:", max(chunks, default=0),
      "median:", sorted(chunks)[len(chunks) // 2] if chunks else 0)
