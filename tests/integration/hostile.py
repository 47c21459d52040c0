#!/usr/bin/env python3
"""hostile.py: clients of meshd that break the protocol on purpose (tests/integration/robustness.sh).

    hostile.py garbage SOCK               bad frames, one connection each (i-iii and more)
    hostile.py idle SOCK N READY          opens N idle connections, touches READY, waits
    hostile.py forge SOCK MESHCTL WATCH   registrations with forged span tables (v, vi);
                                          WATCH is a registered pid whose stats must not move
    hostile.py midreq SOCK PID            requests whose sender goes away at once (e)
    hostile.py bigtable SOCK MESHCTL MESHD_PID N
                                          a 512 MiB all-hole table; meshd's memory, and
                                          meshctl ps while N requests are pipelined
    hostile.py flood SOCK N               N ListRequests in one write, never reading

Protobuf is written by hand (see proto/mesh.proto); the span table by proto/span_table_abi.h.
Every case prints one line; the exit status is non-zero if meshd answered something it must
not (a crash or hang is detected by the caller, which checks meshd after each command).
"""
import os
import random
import select
import socket
import struct
import subprocess
import sys
import threading
import time

FRAME_MAX = 1 << 20
TIMEOUT = 60.0  # seconds: only a hang, never a slow machine, may run out
FAILED = []

# ---- protobuf by hand ---------------------------------------------------------------------


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wire):
    return varint(field << 3 | wire)


def f_varint(field, n):
    return key(field, 0) + varint(n)


def f_bytes(field, data):
    return key(field, 2) + varint(len(data)) + data


def envelope(field, body, version=1):
    return f_varint(1, version) + f_bytes(field, body)


def frame(payload):
    return struct.pack("<I", len(payload)) + payload


# Envelope body fields
REGISTER, REGISTER_REPLY, MESH_REQUEST, MESH_REPLY = 10, 11, 12, 13
LIST, STATS, MESH_NOW, POLICY = 20, 21, 22, 23
PROCESS_LIST, PROCESS_STATS, MESH_NOW_REPLY, ERROR = 30, 31, 32, 40


def register(exe=b"/forged", table_bytes=0):
    return envelope(REGISTER, f_bytes(1, exe) + f_varint(2, table_bytes))


def parse(data):
    """[(field, wire, value)] of one message; value is int or bytes.  Raises on garbage."""
    out, i = [], 0

    def rd_varint():
        nonlocal i
        n = shift = 0
        while True:
            b = data[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n

    while i < len(data):
        k = rd_varint()
        field, wire = k >> 3, k & 7
        if wire == 0:
            out.append((field, wire, rd_varint()))
        elif wire == 2:
            n = rd_varint()
            out.append((field, wire, data[i:i + n]))
            i += n
        elif wire == 1:
            out.append((field, wire, data[i:i + 8]))
            i += 8
        elif wire == 5:
            out.append((field, wire, data[i:i + 4]))
            i += 4
        else:
            raise ValueError("wire type %d" % wire)
    return out


def body_of(payload):
    """(body field, body bytes) of an Envelope."""
    for field, wire, value in parse(payload):
        if field != 1 and wire == 2:
            return field, value
    return None, b""


def packed_uint32s(value):
    nums, i = [], 0
    while i < len(value):
        n = shift = 0
        while True:
            b = value[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        nums.append(n)
    return nums


# ---- connections --------------------------------------------------------------------------


def connect(path, timeout=TIMEOUT):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while True:  # a full listen backlog answers EAGAIN at once: wait for meshd to accept
        try:
            s.connect(path)
            return s
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_frame(s):
    """The payload of the next frame; None when meshd closed the connection."""
    head = recv_exact(s, 4)
    if head is None:
        return None
    (n,) = struct.unpack("<I", head)
    if n == 0 or n > FRAME_MAX:
        raise ValueError("meshd sent a bad frame length %d" % n)
    payload = recv_exact(s, n)
    if payload is None:
        raise ValueError("meshd closed mid-frame")
    return payload


def next_body(s):
    """(field, body) of meshd's next frame, or 'closed' or 'timeout'."""
    try:
        payload = read_frame(s)
    except socket.timeout:
        return "timeout"
    except ConnectionResetError:
        return "closed"
    if payload is None:
        return "closed"
    return body_of(payload)


def outcome(s):
    """'closed', 'error CODE', 'body N' or 'timeout' for what meshd does next."""
    got = next_body(s)
    if isinstance(got, str):
        return got
    field, body = got
    if field == ERROR:
        code = [v for f, w, v in parse(body) if f == 1]
        return "error %d" % (code[0] if code else 0)
    return "body %s" % field


def check(name, got, allowed):
    ok = any(got.startswith(a) for a in allowed)
    if ok:
        print("  ok   %s: %s" % (name, got))
    else:
        print("  BAD  %s: %s" % (name, got))
        FAILED.append(name)


# ---- (i)-(iii) and other bad frames -------------------------------------------------------


def cmd_garbage(path):
    def one(name, data, allowed=("closed", "error"), close_early=False):
        s = connect(path)
        try:
            s.sendall(data)
        except OSError:
            pass  # meshd may close before it has read everything
        if close_early:
            s.close()
            print("  ok   %s: sent and closed" % name)
            return
        check(name, outcome(s), allowed)
        s.close()

    rnd = random.Random(1)
    one("random bytes", bytes(rnd.getrandbits(8) for _ in range(200)))
    one("garbage payload", frame(bytes(rnd.getrandbits(8) for _ in range(100))))
    one("unparsable payload", frame(b"\xff" * 50))
    one("length 0", struct.pack("<I", 0))
    one("length 0xffffffff", struct.pack("<I", 0xFFFFFFFF) + b"x" * 64)
    one("length FRAME_MAX+1", struct.pack("<I", FRAME_MAX + 1) + b"\0" * 64)
    one("truncated frame, then close", struct.pack("<I", 100) + b"\x08\x01" + b"\0" * 20,
        close_early=True)
    one("half a length prefix, then close", b"\x10\x00", close_early=True)
    one("protocol version 2", frame(envelope(LIST, b"", version=2)), ("error",))
    one("version 0, no body", frame(f_varint(1, 0)), ("error", "closed"))
    one("version only, no body", frame(f_varint(1, 1)), ("error", "closed"))
    one("unknown body field 99", frame(envelope(99, b"abc")), ("error", "closed"))
    one("a RegisterReply from a client", frame(envelope(REGISTER_REPLY, f_varint(1, 1))))
    one("a MeshReply from an unregistered client", frame(envelope(MESH_REPLY, f_varint(1, 7))))
    one("a ProcessList from a client", frame(envelope(PROCESS_LIST, b"")))
    one("StatsRequest pid -1", frame(envelope(STATS, f_varint(1, (1 << 64) - 1))), ("error",))
    one("StatsRequest pid 0", frame(envelope(STATS, b"")), ("error",))
    one("MeshNowRequest pid 2^31-1", frame(envelope(MESH_NOW, f_varint(1, 2**31 - 1))), ("error",))
    one("Register without a descriptor", frame(register()), ("body 11", "closed"))
    one("Register with exe of 64 KiB of control bytes",
        frame(register(exe=bytes(range(1, 32)) * 2000)), ("body 11", "closed"))
    one("string field with a length past the frame",
        frame(f_varint(1, 1) + key(REGISTER, 2) + varint(1000) + b"abc"), ("closed", "error"))
    one("nested length past the frame",
        frame(envelope(REGISTER, key(1, 2) + varint(1 << 30) + b"x")), ("closed", "error"))
    one("varint of 11 bytes", frame(b"\x08" + b"\xff" * 10 + b"\x01"), ("closed", "error"))
    # a whole valid request after a garbage one on the same connection: never served
    one("valid request after garbage", frame(b"\xff" * 8) + frame(envelope(LIST, b"")),
        ("closed",))


# ---- (iv) idle connections ----------------------------------------------------------------


def cmd_idle(path, n, ready):
    conns = []
    for _ in range(n):
        conns.append(connect(path))
    with open(ready, "w") as f:
        f.write("%d\n" % len(conns))
    # Hold them until killed; also notice if meshd drops them (it may: they are idle).
    time.sleep(3600)


# ---- (v), (vi) forged span tables ---------------------------------------------------------

HEADER = 4096
RECORD = 96  # MESH_SPAN_RECORD_SIZE
MAGIC = 0x4D45534854424C31
TABLE_VERSION = 4  # MESH_SPAN_TABLE_VERSION in proto/span_table_abi.h


def header(class_count=3, classes=None, record_size=RECORD, header_size=HEADER,
           version=TABLE_VERSION, max_records=1000, record_hwm=1000, page_size=4096, magic=MAGIC):
    h = struct.pack("<QIIIIIIQiI", magic, version, header_size, page_size, record_size,
                    max_records, record_hwm, 1 << 30, os.getpid(), class_count)
    if classes is None:
        classes = [(16, 1, 256), (64, 4, 256), (1024, 8, 32)]
    for i in range(48):
        size, pages, cap = classes[i] if i < len(classes) else (0, 0, 0)
        h += struct.pack("<IHH", size, pages, cap)
    h += struct.pack("<24Q", *([0, 0, 1000] + [0] * 21))  # heap_pages 1000
    return h.ljust(HEADER, b"\0")


def record(bitmap=(0, 0, 0, 0), size_class=1, state=2, capacity=256, span_pages=1, page=1):
    r = struct.pack("<4Q", *bitmap)
    r += struct.pack("<I4IIII", page, page, 0, 0, 0, span_pages, 1, 0)
    r += struct.pack("<HBBBBH", capacity, size_class, state, 1, 0, 0)
    return r.ljust(RECORD, b"\0")


def memfd(content, size=None):
    fd = os.memfd_create("forged-span-table", os.MFD_CLOEXEC)
    os.write(fd, content)
    if size is not None:
        os.ftruncate(fd, size)
    return fd


def send_register(path, fds, exe=b"/forged", table_bytes=4096, extra=b""):
    s = connect(path)
    msg = frame(register(exe, table_bytes)) + extra
    socket.send_fds(s, [msg], fds)
    return s


def register_outcome(s):
    """'accepted', 'refused: REASON', 'closed', 'error' or 'timeout'."""
    got = next_body(s)
    if isinstance(got, str):
        return got
    field, body = got
    if field == REGISTER_REPLY:
        fields = parse(body)
        accepted = any(f == 1 and v for f, w, v in fields)
        reason = b"".join(v for f, w, v in fields if f == 2).decode(errors="replace")
        return "accepted" if accepted else "refused: " + reason
    if field == ERROR:
        return "error"
    return "body %s" % field


class Meshctl:
    def __init__(self, path, meshctl):
        self.path, self.meshctl = path, meshctl

    def run(self, *args, timeout=120):
        """(exit status, stdout, stderr, seconds); status 124 on a timeout."""
        t0 = time.monotonic()
        try:
            p = subprocess.run([self.meshctl, "--socket", self.path] + [str(a) for a in args],
                               capture_output=True, text=True, timeout=timeout)
            return p.returncode, p.stdout, p.stderr, time.monotonic() - t0
        except subprocess.TimeoutExpired:
            return 124, "", "timeout", time.monotonic() - t0

    def stats(self, pid):
        import json
        rc, out, err, _ = self.run("stats", pid, "--json")
        return json.loads(out) if rc == 0 else None

    def listed(self):
        import json
        rc, out, err, _ = self.run("ps", "--json")
        return [p["pid"] for p in json.loads(out)] if rc == 0 else None


def cmd_forge(path, meshctl, watch):
    ctl = Meshctl(path, meshctl)
    me = os.getpid()
    baseline = ctl.stats(watch)
    if baseline is None:
        print("  BAD  the watched pid %d is not registered" % watch)
        FAILED.append("baseline")
        return

    def healthy(name):
        rc, out, err, secs = ctl.run("ps", "--json")
        st = ctl.stats(watch)
        keys = ("heap_bytes", "live_bytes", "classes")
        ok = rc == 0 and st is not None and all(st[k] == baseline[k] for k in keys)
        if not ok:
            print("  BAD  after %s: ps rc %d in %.1f s, watched stats %s" % (name, rc, secs, st))
            FAILED.append("healthy after " + name)

    def refused(name, fds, allowed=("refused", "closed"), **kw):
        s = send_register(path, fds, **kw)
        for fd in fds:
            os.close(fd)
        check(name, register_outcome(s), allowed)
        s.close()
        healthy(name)

    # (v) absurd headers
    refused("class_count 1000, record_hwm 2^32-1",
            [memfd(header(class_count=1000, max_records=2**32 - 1, record_hwm=2**32 - 1))])
    refused("record_size 64", [memfd(header(record_size=64))])
    refused("header_size 64", [memfd(header(header_size=64))])
    refused("version %d" % (TABLE_VERSION + 1), [memfd(header(version=TABLE_VERSION + 1))])
    refused("bad magic", [memfd(header(magic=MAGIC ^ 1))])
    refused("page_size 65536", [memfd(header(page_size=65536))])
    refused("class_count 0", [memfd(header(class_count=0))])
    refused("class capacity 1000", [memfd(header(classes=[(16, 1, 1000)], class_count=1))])
    refused("class object_size 0", [memfd(header(classes=[(0, 1, 16)], class_count=1))])
    refused("class capacity*size > span", [memfd(header(classes=[(4096, 1, 2)], class_count=1))])
    refused("class span_pages 65535", [memfd(header(classes=[(16, 65535, 256)], class_count=1))])
    refused("file of 100 bytes", [memfd(header()[:100])])
    refused("empty file", [memfd(b"")])
    r, w = os.pipe()
    refused("a pipe instead of a memfd", [r, w])
    a, b = socket.socketpair()
    refused("a socket instead of a memfd", [a.detach()])
    b.close()
    refused("/dev/zero", [os.open("/dev/zero", os.O_RDONLY)])
    refused("a directory", [os.open("/", os.O_RDONLY)])
    # Several descriptors at once, a second Register, a Register after another request.
    s = send_register(path, [memfd(header()) for _ in range(3)])
    check("three descriptors", register_outcome(s), ("accepted", "refused", "closed"))
    s.sendall(frame(register()))
    check("a second Register on the same connection", register_outcome(s),
          ("refused", "closed", "error"))
    s.close()
    healthy("three descriptors / second Register")
    s = connect(path)
    s.sendall(frame(envelope(LIST, b"")))
    read_frame(s)
    fd = memfd(header())
    try:  # meshd closes a client's connection once it has answered its one request
        socket.send_fds(s, [frame(register())], [fd])
        got = register_outcome(s)
    except OSError:
        got = "closed"
    os.close(fd)
    check("Register after a ListRequest", got, ("refused", "closed", "error"))
    s.close()
    healthy("Register after a ListRequest")

    # File much shorter than it claims: accepted or refused, but scans stay in the file.
    fd = memfd(header(max_records=2**32 - 1, record_hwm=2**32 - 1) + record(bitmap=(1, 0, 0, 0)) * 9)
    s = send_register(path, [fd], table_bytes=2**32 - 1)
    got = register_outcome(s)
    check("max_records/record_hwm 2^32-1 in a 5 KiB file", got, ("accepted", "refused", "closed"))
    if got == "accepted":
        rc, out, err, secs = ctl.run("stats", me)
        check("stats of it", "rc %d %.1fs" % (rc, secs), ("rc 0",))
        # Now shrink the file under meshd's mapping: its next read faults (SIGBUS).
        os.ftruncate(fd, 0)
        rc, out, err, secs = ctl.run("stats", me)
        check("stats after truncating the table to 0", "rc %d" % rc, ("rc 1", "rc 0"))
        rc, out, err, secs = ctl.run("map", me)
        check("map after truncating the table to 0", "rc %d" % rc, ("rc 1", "rc 0"))
        listed = ctl.listed()
        check("ps after truncating the table", "listed" if listed and me in listed else "gone",
              ("gone", "listed"))
    os.close(fd)
    s.close()
    healthy("truncated table")

    # (vi) a plausible header, records that are not: bad classes and states, bits above
    # capacity; then all of it rewritten at random while meshd reads it.
    rnd = random.Random(6)
    records = [record()]  # record 0 is never used
    for i in range(1, 1000):
        kind = i % 6
        if kind == 0:
            records.append(record(size_class=rnd.choice([0, 4, 49, 200, 255]), state=2))
        elif kind == 1:
            records.append(record(state=rnd.choice([5, 6, 77, 255]), size_class=1))
        elif kind == 2:  # class 3 holds 32 objects: bits 32..255 are not slots
            records.append(record(bitmap=(2**64 - 1,) * 4, size_class=3, state=2, capacity=255))
        elif kind == 3:
            records.append(record(bitmap=(rnd.getrandbits(64),) * 4, size_class=2, state=3,
                                  span_pages=2**32 - 1, page=2**32 - 1))
        elif kind == 4:
            records.append(record(state=4, size_class=0, span_pages=2**32 - 1))  # large
        else:  # sparse and meshable, so that meshd sends this "shim" MeshRequests
            bit = rnd.randrange(256)
            bitmap = tuple((1 << (bit % 64)) if w == bit // 64 else 0 for w in range(4))
            records.append(record(bitmap=bitmap, size_class=1, state=2, page=100 + i))
    content = header() + b"".join(records)
    fd = memfd(content)
    s = send_register(path, [fd], table_bytes=len(content))
    got = register_outcome(s)
    check("valid header, hostile records", got, ("accepted", "refused", "closed"))
    if got == "accepted":
        st = ctl.stats(me)
        sane = st is not None and all(c["live_objects"] <= c["capacity_objects"] for c in st["classes"])
        check("its stats: live <= capacity in every class",
              "sane" if sane else "insane: %s" % st, ("sane",))
        rc, out, err, secs = ctl.run("map", me)
        check("map of it", "rc %d" % rc, ("rc 0",))
        # An evil shim: answers every MeshRequest with absurd numbers (and one wrong id).
        stop = threading.Event()
        answered = []

        def shim():
            s.settimeout(0.5)
            while not stop.is_set():
                try:
                    payload = read_frame(s)
                except (socket.timeout, ValueError):
                    continue
                except OSError:
                    return
                if payload is None:
                    return
                field, body = body_of(payload)
                if field != MESH_REQUEST:
                    continue
                rid = [v for f, w, v in parse(body) if f == 1]
                rid = rid[0] if rid else 0
                reasons = b"".join(varint(2**32 - 1) for _ in range(50))
                bogus = (f_varint(1, rid) + f_varint(2, 2**32 - 1) + f_bytes(3, reasons) +
                         f_varint(4, 2**64 - 1) + f_varint(5, 2**64 - 1) + f_varint(6, 2**64 - 1))
                try:
                    s.sendall(frame(envelope(MESH_REPLY, f_varint(1, rid + 12345))) +
                              frame(envelope(MESH_REPLY, bogus)))
                except OSError:
                    return
                answered.append(rid)

        def scribbler():
            m = open("/proc/self/fd/%d" % fd, "r+b", buffering=0)
            while not stop.is_set():
                off = rnd.randrange(HEADER if rnd.random() < 0.95 else 0, len(content) - 64)
                m.seek(off)
                m.write(os.urandom(64))

        threads = [threading.Thread(target=shim), threading.Thread(target=scribbler)]
        for t in threads:
            t.start()
        t_end = time.monotonic() + 6
        counts = {"ps": 0, "stats": 0, "map": 0, "mesh": 0}
        worst = 0.0
        while time.monotonic() < t_end:
            for cmd in ("ps", "stats", "map", "mesh"):
                args = ("ps", "--json") if cmd == "ps" else (cmd, me)
                rc, out, err, secs = ctl.run(*args)
                worst = max(worst, secs)
                if rc == 0:
                    counts[cmd] += 1
                elif rc == 124 or "cannot reach" in err:
                    check("%s while the table is scribbled on" % cmd, "rc %d %s" % (rc, err),
                          ("never",))
        stop.set()
        for t in threads:
            t.join()
        check("meshctl ps/stats/map/mesh on a table scribbled on (6 s)",
              "%s, slowest %.1f s, %d mesh requests answered with nonsense" %
              (counts, worst, len(answered)), ("{",))
        rc, out, err, secs = ctl.run("stats", me)
        check("stats after the nonsense replies", "rc %d" % rc, ("rc 0", "rc 1"))
    os.close(fd)
    s.close()
    healthy("hostile records")


# ---- (e) requests whose sender goes away --------------------------------------------------


def cmd_midreq(path, pid):
    for name, msg in (("MeshNowRequest", frame(envelope(MESH_NOW, f_varint(1, pid)))),
                      ("StatsRequest", frame(envelope(STATS, f_varint(1, pid)))),
                      ("ListRequest", frame(envelope(LIST, b"")))):
        s = connect(path)
        s.sendall(msg)
        s.close()
        print("  ok   %s for pid %d sent, connection closed at once" % (name, pid))
    # Half-closed: the request is sent and the write side shut; the reply must still come.
    s = connect(path, timeout=120)
    s.sendall(frame(envelope(MESH_NOW, f_varint(1, pid))))
    s.shutdown(socket.SHUT_WR)
    check("MeshNowRequest on a half-closed connection", outcome(s), ("body 32", "error", "closed"))
    s.close()
    # Reset instead of close: SO_LINGER 0.
    s = connect(path)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.sendall(frame(envelope(MESH_NOW, f_varint(1, pid))))
    s.close()
    print("  ok   MeshNowRequest, then a reset")


# ---- a huge sparse table, and a flood of requests against it -------------------------------


def shmem_kib(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("RssShmem:"):
            return int(line.split()[1])
    return 0


def cmd_bigtable(path, meshctl, meshd_pid, flood):
    """A table of 2^22 records (the shim's limit) that is one big hole: 512 MiB that cost
    its owner nothing.  meshd must not fault it all in, and a connection that pipelines
    requests against it must not stall every other client."""
    ctl = Meshctl(path, meshctl)
    n = 1 << 22
    size = HEADER + n * RECORD
    fd = memfd(header(max_records=n, record_hwm=n), size=size)
    s = send_register(path, [fd], table_bytes=size)
    check("register a 512 MiB table that is all hole", register_outcome(s), ("accepted", "refused"))
    before = shmem_kib(meshd_pid)
    rc, out, err, secs = ctl.run("ps")
    grown = shmem_kib(meshd_pid) - before
    check("meshctl ps with it registered", "rc %d in %.2f s" % (rc, secs), ("rc 0",))
    check("meshd's shared memory after reading it", "%d MiB more" % (grown >> 10),
          [("%d MiB" % m) for m in range(65)])
    c = connect(path)
    c.sendall(frame(envelope(LIST, b"")) * flood)
    time.sleep(0.2)
    rc, out, err, secs = ctl.run("ps")
    check("meshctl ps while another client pipelines %d ListRequests" % flood,
          "rc %d in %.1f s" % (rc, secs), ["rc 0 "])
    c.close()
    s.close()
    os.close(fd)
    # Wait until meshd is itself again, so the next test starts clean.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rc, out, err, secs = ctl.run("ps")
        if rc == 0 and secs < 1:
            break


# ---- a round planned over several turns of meshd's loop ------------------------------------


def cmd_bigplan(path, meshctl):
    """A table of several planning slices (meshd/planner.h: 2^16 records each) of sparse
    spans, each on the slots of one residue mod 4 (chosen at random): two are disjoint if
    their residues differ.  meshd plans `meshctl mesh` a slice at a time and then sends it.  This "shim" checks the plan (only spans of the
    table, none twice, each pair disjoint, max_pairs_per_round (4096) of them over all the
    requests meshd splits the round into) and answers each; meshctl gets the round's result.
    None of the requests is background (MeshRequest.background, field 4): meshctl waits for
    the round (meshd/policy.h, policy_request_background), and no automatic round of this
    table can start meanwhile (one in flight at a time; a first measurement starts none
    without memory pressure, which rules background out anyway)."""
    ctl = Meshctl(path, meshctl)
    me = os.getpid()
    n = 3 * (1 << 16) + 100
    rnd = random.Random(11)
    residue = [rnd.randrange(4) for _ in range(n)]
    recs = [record(state=0)] + [record(bitmap=(0x1111111111111111 << residue[i],) * 4,
                                       size_class=1, state=2, page=100 + i) for i in range(1, n)]
    content = header(max_records=n, record_hwm=n) + b"".join(recs)
    fd = memfd(content)
    s = send_register(path, [fd], table_bytes=len(content))
    check("register a table of %d meshable spans" % (n - 1), register_outcome(s), ("accepted",))
    result = []
    asker = threading.Thread(target=lambda: result.append(ctl.run("mesh", me)))
    asker.start()
    # meshd sends the plan a request at a time (its hold budget, meshd/policy.h): answer
    # each as it comes until meshctl has the round's result.
    dst, src, requests, background = [], [], 0, 0
    while True:
        readable, _, _ = select.select([s], [], [], 0.5)
        if not readable:
            if asker.is_alive():
                continue
            break
        got = next_body(s)
        if isinstance(got, str) or got[0] != MESH_REQUEST:
            check("a MeshRequest after planning over several slices", str(got), ("MeshRequest",))
            break
        fields = parse(got[1])
        rid = [v for f, w, v in fields if f == 1]
        rid = rid[0] if rid else 0
        req_dst, req_src = [], []
        for f, w, v in fields:
            if f in (2, 3):
                (req_dst if f == 2 else req_src).extend(packed_uint32s(v) if w == 2 else [v])
        requests += 1
        background += any(f == 4 and v for f, w, v in fields)
        dst += req_dst
        src += req_src
        s.sendall(frame(envelope(MESH_REPLY, f_varint(1, rid) + f_varint(2, len(req_dst)))))
    ids = dst + src
    bad = [(d, x) for d, x in zip(dst, src)
           if not (0 < d < n and 0 < x < n) or residue[d] == residue[x]]
    check("the plan: %d pairs in %d requests, every one of two disjoint spans of the table, "
          "none twice" % (len(dst), requests),
          "bad" if len(dst) != 4096 or len(dst) != len(src) or bad or len(set(ids)) != len(ids)
          else "good", ("good",))
    check("requests of a round meshctl waits for marked background",
          "%d of %d" % (background, requests), ("0 of",))
    asker.join()
    rc, out, err, secs = result[0]
    check("meshctl mesh gets the round's result", "rc %d %s" % (rc, err.strip()), ("rc 0 ",))
    s.close()
    os.close(fd)


# ---- a flood of requests that are never read ----------------------------------------------


def cmd_flood(path, n):
    s = connect(path)
    data = frame(envelope(LIST, b"")) * n
    print("  flooding", flush=True)  # the caller's cue
    t0 = time.monotonic()
    try:
        s.sendall(data)
    except OSError as e:
        print("  send: %s" % e)
    print("  sent %d ListRequests (%d bytes) in %.2f s, reading nothing" %
          (n, len(data), time.monotonic() - t0))
    time.sleep(1)
    s.close()


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    if cmd == "garbage":
        cmd_garbage(path)
    elif cmd == "idle":
        cmd_idle(path, int(sys.argv[3]), sys.argv[4])
    elif cmd == "forge":
        cmd_forge(path, sys.argv[3], int(sys.argv[4]))
    elif cmd == "midreq":
        cmd_midreq(path, int(sys.argv[3]))
    elif cmd == "bigtable":
        cmd_bigtable(path, sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif cmd == "bigplan":
        cmd_bigplan(path, sys.argv[3])
    elif cmd == "flood":
        cmd_flood(path, int(sys.argv[3]))
    else:
        sys.exit("unknown command " + cmd)
    if FAILED:
        print("hostile.py: %d unexpected answers: %s" % (len(FAILED), ", ".join(FAILED)))
        sys.exit(1)


if __name__ == "__main__":
    main()
