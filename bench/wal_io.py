#!/usr/bin/env python3
"""The strict log's write pattern, buffered against direct I/O.

400-byte records are appended in place to a preallocated file, each made
durable before the next: `pwrite` + `fdatasync` (what `recordings.wal`
does) against `O_DIRECT|O_DSYNC`, which must rewrite the whole 4 KiB tail
block each time. Rounds alternate the two. Prints the median and p99
latency and the CPU per append, the process's own and the whole
machine's (from /proc/stat, which also counts kernel threads and
interrupts). Never pass/fail.

    N       appends per run           (default 4000)
    ROUNDS  interleaved rounds        (default 3)
    DIR     where the 64 MiB file goes (default /var/tmp; it is removed)
"""
import mmap
import os
import resource
import tempfile
import time

N = int(os.environ.get("N", "4000"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
REC = 400
BLOCK = 4096


def process_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def machine_busy():
    with open("/proc/stat") as f:
        v = list(map(int, f.readline().split()[1:]))
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def run(path, mode):
    fd = os.open(path, os.O_RDWR)
    os.ftruncate(fd, 64 << 20)
    os.fsync(fd)
    os.close(fd)
    flags = os.O_RDWR | (os.O_DIRECT | os.O_DSYNC if mode == "direct" else 0)
    fd = os.open(path, flags)
    block = mmap.mmap(-1, BLOCK)  # page-aligned, as O_DIRECT needs
    rec = b"r" * REC
    lat = []
    c0, m0 = process_cpu(), machine_busy()
    for i in range(N):
        off = i * REC
        t = time.perf_counter()
        if mode == "direct":
            start = off // BLOCK * BLOCK
            head = min(off + REC - start, BLOCK) - (off - start)
            block[off - start : off - start + head] = rec[:head]
            os.pwritev(fd, [block], start)
            if head < REC:  # the record runs into the next block
                block[:] = bytes(BLOCK)
                block[: REC - head] = rec[head:]
                os.pwritev(fd, [block], start + BLOCK)
        else:
            os.pwrite(fd, rec, off)
            os.fdatasync(fd)
        lat.append(time.perf_counter() - t)
    c, m = process_cpu() - c0, machine_busy() - m0
    os.close(fd)
    lat.sort()
    print(
        f"{mode:9s} p50 {lat[N // 2] * 1e6:5.0f} µs  p99 {lat[int(N * 0.99)] * 1e6:6.0f} µs  "
        f"CPU per append: process {c / N * 1e6:5.1f} µs, machine {m / N * 1e6:5.1f} µs"
    )


def main():
    fd, path = tempfile.mkstemp(prefix="wal-io-", dir=os.environ.get("DIR", "/var/tmp"))
    os.close(fd)
    try:
        for _ in range(ROUNDS):
            for mode in ("buffered", "direct"):
                run(path, mode)
    finally:
        os.unlink(path)


if __name__ == "__main__":
    main()
