#!/usr/bin/env python3
"""hostile_users.py: local users attacking meshd (tests/integration/hostile_users.sh).

Each attack runs as whatever uid the caller gives it (setpriv), holds what it took for HOLD
seconds and prints one line of what it did; the caller watches meshd meanwhile.

    hostile_users.py linger SOCK HOLD           TCP sockets with unsent data and a long
                                                SO_LINGER handed to meshd every way there is
    hostile_users.py register SOCK N HOLD       N registrations: one memfd behind all of them,
                                                then N with a table each
    hostile_users.py pipeline SOCK N HOLD       a dense 2^22-record table registered, then N
                                                StatsRequests pipelined on that connection and
                                                on client connections
    hostile_users.py meshdense SOCK HOLD [KIND] the dense table registered, and a meshing round
                                                asked for every 0.5 s (each one plans over the
                                                table's first 2^18 candidates); KIND attached:
                                                no span is a candidate but the last one, so
                                                every plan reads all 2^22 records
    hostile_users.py idle SOCK N HOLD           N connections that send nothing
    hostile_users.py metrics HOST PORT N HOLD   N idle connections to the metrics endpoint
    hostile_users.py orphan SOCK                a child connects and exits, leaving the socket
                                                to its parent, which registers on it: the way a
                                                reused pid would take another's registration
    hostile_users.py watch SOCK MESHCTL DONEFILE OUT
                                                meshctl ps every 100 ms until DONEFILE exists;
                                                latencies to OUT (JSON)
"""
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hostile import (LIST, MESH_NOW, STATS, TIMEOUT, connect, outcome, envelope, f_varint, frame, header, memfd,  # noqa: E402
                     record, register, register_outcome, send_register, HEADER, RECORD)


def lingering_socket():
    """A connected TCP socket whose close() would wait: its peer never reads, so data stays
    unsent, and SO_LINGER asks close() to wait for it for 10 minutes."""
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    s.connect(lst.getsockname())
    s.setblocking(False)
    try:
        while True:
            s.send(b"x" * 65536)
    except BlockingIOError:
        pass
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 600))
    return lst, s


def close_later(fd):
    """Closes fd on a thread: if meshd closed its copy first, this close is the one that
    lingers (the attacker's problem, not the test's)."""
    threading.Thread(target=os.close, args=(fd,), daemon=True).start()


def meshable_table():
    """A table of 64 sparse detached spans of class 1, pairwise disjoint: meshd plans pairs."""
    recs = [record()]
    for i in range(1, 65):
        bit = i % 64
        recs.append(record(bitmap=(1 << bit, 0, 0, 0), size_class=1, state=2, page=100 + i))
    return memfd(header(max_records=65, record_hwm=65) + b"".join(recs))


def queued_behind_round(path, n, keep):
    """n lingering TCP sockets queued, unread, in a client connection that meshd holds open
    (it waits for a round of our fake shim, which never answers): our copies are closed
    while theirs are in flight, so when meshd closes that connection (the fake shim goes
    away), the last references are released by meshd's close."""
    fake = send_register(path, [meshable_table()])
    if register_outcome(fake) != "accepted":
        return 0
    c = connect(path)
    c.sendall(frame(envelope(MESH_NOW, f_varint(1, os.getpid()))))
    # Once meshd has read the request it sends our fake shim its MeshRequest: wait for that
    # (peeked, never answered) rather than for a time.
    fake.settimeout(TIMEOUT)
    try:
        fake.recv(1, socket.MSG_PEEK)
    except OSError:
        return 0
    sent = 0
    for s in [lingering_socket() for _ in range(n)]:
        keep.append(s[0])
        try:
            socket.send_fds(c, [frame(envelope(LIST, b""))], [s[1].fileno()])
            sent += 1
        except OSError:
            pass
        s[1].close()  # not the last reference: the one queued in meshd's socket is
    keep.append(c)
    fake.close()  # the round ends, meshd answers c and closes it
    return sent


def cmd_linger(path, hold):
    keep = []
    sent = 0

    def hand(frames, socks):
        nonlocal sent
        c = connect(path)
        try:
            socket.send_fds(c, [frames], [s.fileno() for s in socks])
            sent += len(socks)
        except OSError:
            pass
        for s in socks:
            close_later(s.detach())
        keep.append(c)
        return c

    def lingering(n):
        out = []
        for _ in range(n):
            lst, s = lingering_socket()
            keep.append(lst)  # the peer stays, never reading
            out.append(s)
        return out

    hand(frame(register()), lingering(1))                       # instead of a span table
    hand(frame(envelope(LIST, b"")), lingering(1))              # with a client request
    hand(frame(register()), lingering(4))                       # several at once
    c = hand(frame(envelope(LIST, b"")), lingering(1))
    # After its one request meshd reads nothing more: these stay queued in the socket until
    # meshd closes the connection, and that close releases them.
    for s in lingering(2):
        try:
            socket.send_fds(c, [frame(envelope(LIST, b""))], [s.fileno()])
            sent += 1
        except OSError:
            pass
        close_later(s.detach())
    queued = queued_behind_round(path, 4, keep)
    print("linger: handed meshd %d lingering TCP sockets, and %d queued in a connection it "
          "must close" % (sent, queued), flush=True)
    time.sleep(hold)
    os._exit(0)  # not waiting for a close that lingers


def dense_table(n, kind="detached"):
    """A table of n records, every one a detached span of class 1 with a few live objects;
    kind "attached": every one but the last attached to a thread (not a mesh candidate)."""
    rec = record(bitmap=(0x0101010101010101, 0, 0, 0), size_class=1, state=2)
    if kind == "attached":
        content = header(max_records=n, record_hwm=n) + \
            record(bitmap=(0x0101010101010101, 0, 0, 0), size_class=1, state=1) * (n - 1) + rec
    else:
        content = header(max_records=n, record_hwm=n) + rec * n
    return memfd(content)


def cmd_register(path, n, hold):
    """n processes (meshd keys registrations by process) each register a table: the first
    half all the same memfd, the others one each; every one holds its connection."""
    shared = memfd(header())
    r, w = os.pipe()
    children = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:
            os.close(r)
            fd = shared if i < n // 2 else memfd(header())
            try:
                s = send_register(path, [fd])
                got = register_outcome(s).split(":")[0]
            except OSError as e:
                got = "connect: %s" % e.strerror
            os.write(w, (("shared " if fd == shared else "own ") + got + "\n").encode())
            time.sleep(hold)
            os._exit(0)
        children.append(pid)
    os.close(w)
    counts = {}
    with os.fdopen(r) as f:
        for _ in range(n):
            line = f.readline().strip()
            counts[line] = counts.get(line, 0) + 1
    print("register: %s" % json.dumps(counts, sort_keys=True), flush=True)
    for pid in children:
        os.waitpid(pid, 0)


def cmd_pipeline(path, n, hold):
    """A dense table of 2^22 records (a full scan of it takes meshd ~0.1 s) registered, then
    StatsRequests about it as fast as meshd answers for HOLD seconds, n of them pipelined
    on each client connection, and at last n pipelined on the registered connection."""
    records = 1 << 22
    fd = dense_table(records)
    s = send_register(path, [fd], table_bytes=HEADER + records * RECORD)
    got = register_outcome(s)
    req = frame(envelope(STATS, f_varint(1, os.getpid())))
    answers = {}
    end = time.monotonic() + hold
    while time.monotonic() < end:
        try:
            c = connect(path)
            c.sendall(req * n)
            a = outcome(c)
            c.close()
        except OSError as e:
            a = "connect: %s" % e.strerror
        answers[a] = answers.get(a, 0) + 1
    try:
        s.sendall(req * n)
        after = outcome(s)
    except OSError:
        after = "closed"
    print("pipeline: dense table %s; StatsRequests answered %s; %d pipelined on the "
          "registered connection: %s" % (got, json.dumps(answers, sort_keys=True), n, after),
          flush=True)


def cmd_meshdense(path, hold, kind):
    records = 1 << 22
    s = send_register(path, [dense_table(records, kind)], table_bytes=HEADER + records * RECORD)
    got = register_outcome(s)
    answers = {}
    end = time.monotonic() + hold
    while time.monotonic() < end:
        try:
            c = connect(path)
            c.sendall(frame(envelope(MESH_NOW, f_varint(1, os.getpid()))))
            c.settimeout(0.5)
            a = outcome(c)
            c.close()
        except OSError as e:
            a = "connect: %s" % e.strerror
        answers[a] = answers.get(a, 0) + 1
        time.sleep(0.5)
    print("meshdense: dense table (%s) %s; meshing rounds asked for: %s" %
          (kind, got, json.dumps(answers, sort_keys=True)), flush=True)


def cmd_idle(path, n, hold):
    conns = []
    for _ in range(n):
        try:
            conns.append(connect(path))
        except OSError:
            break
    print("idle: %d connections open" % len(conns), flush=True)
    time.sleep(hold)


def cmd_metrics(host, port, n, hold):
    conns = []
    for _ in range(n):
        try:
            conns.append(socket.create_connection((host, port), timeout=TIMEOUT))
        except OSError:
            break
    print("metrics: %d idle connections open" % len(conns), flush=True)
    time.sleep(hold)


def cmd_orphan(path):
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        c = connect(path)
        socket.send_fds(a, [b"x"], [c.fileno()])
        os._exit(0)
    os.waitpid(pid, 0)  # the process meshd saw connect is gone; its pid may be reused
    _, fds, _, _ = socket.recv_fds(b, 1, 1)
    c = socket.socket(fileno=fds[0])
    c.settimeout(TIMEOUT)
    fd = memfd(header())
    socket.send_fds(c, [frame(register())], [fd])
    print("orphan: register on a connection whose process exited: %s" % register_outcome(c),
          flush=True)


def cmd_watch(path, meshctl, donefile, out):
    """Until donefile exists (the caller's attacks are over): every call's latency; a call is
    bounded by TIMEOUT, which only a hang reaches (the caller asserts a far lower bound)."""
    lat, failures, when = [], [], []
    start = time.monotonic()
    while not os.path.exists(donefile):
        t0 = time.monotonic()
        try:
            p = subprocess.run([meshctl, "--socket", path, "ps"], capture_output=True,
                               text=True, timeout=TIMEOUT)
            rc, err = p.returncode, p.stderr.strip()
        except subprocess.TimeoutExpired:
            rc, err = 124, "no answer in %d s" % TIMEOUT
        secs = time.monotonic() - t0
        lat.append(secs)
        when.append((round(secs, 3), round(t0 - start, 1)))
        if rc != 0:
            failures.append(err)
        time.sleep(max(0.0, 0.1 - secs))
    lat.sort()
    when.sort(reverse=True)
    with open(out, "w") as f:
        json.dump({"calls": len(lat), "failures": failures[:5], "nfailures": len(failures),
                   "max": lat[-1] if lat else None, "p50": lat[len(lat) // 2] if lat else None,
                   "p90": lat[len(lat) * 9 // 10] if lat else None,
                   "p99": lat[len(lat) * 99 // 100] if lat else None, "latencies": lat,
                   "slowest (seconds, at)": when[:3]}, f)


def main():
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd == "linger":
        cmd_linger(a[0], float(a[1]))
    elif cmd == "register":
        cmd_register(a[0], int(a[1]), float(a[2]))
    elif cmd == "pipeline":
        cmd_pipeline(a[0], int(a[1]), float(a[2]))
    elif cmd == "meshdense":
        cmd_meshdense(a[0], float(a[1]), a[2] if len(a) > 2 else "detached")
    elif cmd == "idle":
        cmd_idle(a[0], int(a[1]), float(a[2]))
    elif cmd == "metrics":
        cmd_metrics(a[0], int(a[1]), int(a[2]), float(a[3]))
    elif cmd == "orphan":
        cmd_orphan(a[0])
    elif cmd == "watch":
        cmd_watch(a[0], a[1], a[2], a[3])
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
