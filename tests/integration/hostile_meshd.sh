#!/usr/bin/env bash
# The shim survives a meshd that sends nonsense: a fake meshd (python) accepts a preloaded
# program's registration and sends it unknown spans, repeated and overlapping pairs, a
# span paired with itself, mismatched arrays, a huge batch, real pairs of its live spans,
# then garbage.  The shim must answer every well-formed request, drop the connection on
# garbage, and the program's data must stay intact (the fragmenter verifies every
# survivor at the end).
#
#   BUILD=/abs/build bash tests/integration/hostile_meshd.sh [fake]
#
# One case, fake.  The program holds its fragmented heap until the fake meshd is done.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases fake
trap cleanup EXIT INT TERM
FAKE_SOCK=$TMP/fake.sock

cat >"$TMP/fake_meshd.py" <<'PY'
import os, random, socket, struct, sys

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)

def field_varint(num, n):
    return varint(num << 3) + varint(n)

def field_bytes(num, data):
    return varint((num << 3) | 2) + varint(len(data)) + data

def packed(num, values):
    return field_bytes(num, b"".join(varint(v) for v in values))

def envelope(body_field, body):
    return field_varint(1, 1) + field_bytes(body_field, body)

def frame(payload):
    return struct.pack("<I", len(payload)) + payload

def mesh_request(rid, dst, src):
    return frame(envelope(12, field_varint(1, rid) + packed(2, dst) + packed(3, src)))

def recv_frame(c):
    hdr = b""
    while len(hdr) < 4:
        chunk = c.recv(4 - len(hdr))
        if not chunk:
            return None
        hdr += chunk
    n = struct.unpack("<I", hdr)[0]
    data = b""
    while len(data) < n:
        chunk = c.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data

path, program_out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(1)
s.settimeout(120)
c, _ = s.accept()
c.settimeout(120)
msg, fds, _, _ = socket.recv_fds(c, 1 << 16, 1)
assert fds, "registration without a span-table fd"
table = fds[0]
# The descriptor must be read-only for us (issue 11 item 5): every way of writing the
# table through it, or through a read-write reopen of it, is refused.
import errno, mmap
refused = 0
reopened = os.open("/proc/self/fd/%d" % table, os.O_RDWR)
for name, fd in (("passed", table), ("reopened O_RDWR", reopened)):
    attempts = (
        ("pwrite", lambda: os.pwrite(fd, b"\0" * 32, 4096)),
        ("mmap PROT_WRITE", lambda: mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)),
        ("ftruncate", lambda: os.ftruncate(fd, 0)),
        ("fallocate punch", lambda: os.posix_fallocate(fd, 0, 1 << 40)),
    )
    for what, attempt in attempts:
        try:
            attempt()
        except OSError as e:
            assert e.errno in (errno.EPERM, errno.EACCES, errno.EFBIG), (name, what, e)
            refused += 1
            continue
        raise AssertionError("%s through the %s table descriptor succeeded" % (what, name))
os.close(reopened)
print("table descriptor read-only: %d writes refused" % refused)
# Reply RegisterReply{accepted=true}
c.sendall(frame(envelope(11, field_varint(1, 1))))

import time
deadline = time.monotonic() + 120
while b"holding until" not in open(program_out, "rb").read():  # its heap is fragmented
    assert time.monotonic() < deadline, "the program did not fragment its heap in 120 s"
    time.sleep(0.1)
hdr = os.pread(table, 64, 0)
magic, version, header_size, page_size, record_size, max_records, hwm = struct.unpack_from("<QIIIIII", hdr)
assert magic == 0x4D45534854424C31, hex(magic)
detached = []
for i in range(1, hwm):
    rec = os.pread(table, record_size, header_size + i * record_size)
    cls, state = rec[66], rec[67]
    if state == 2 and cls:
        detached.append((i, cls, int.from_bytes(rec[0:32], "little")))
rng = random.Random(1)
real = []
by_class = {}
for i, cls, bits in detached:
    by_class.setdefault(cls, []).append((i, bits))
for spans in by_class.values():
    used = set()
    for a, ba in spans:  # greedy disjoint pairs, as a (lazy) meshd would find them
        if a in used:
            continue
        for b, bb in spans:
            if b != a and b not in used and not (ba & bb):
                real.append((a, b))
                used.update((a, b))
                break
        if len(real) > 3000:
            break
print("detached spans", len(detached), "disjoint pairs found", len(real))
requests = [
    ([0, 1, 2**31, 2**32 - 1], [2**32 - 1, 0, 5, 7]),               # unknown and absurd ids
    ([real[0][0]] * 50 if real else [1] * 50, [real[0][1]] * 50 if real else [2] * 50),  # repeated
    ([d for d, _ in real[:20]] + [s for _, s in real[:20]], [s for _, s in real[:20]] + [d for d, _ in real[:20]]),
    ([i for i, _, _ in detached[:30]], [i for i, _, _ in detached[:30]]),  # each with itself
    ([1, 2, 3], [4]),                                                 # mismatched arrays
    ([rng.randrange(1, hwm + 10) for _ in range(10000)], [rng.randrange(1, hwm + 10) for _ in range(10000)]),
    ([d for d, _ in real[20:2000]], [s for _, s in real[20:2000]]),  # plausible pairs
]
meshed = 0
for rid, (dst, src) in enumerate(requests, start=1):
    c.sendall(mesh_request(rid, dst, src))
    reply = recv_frame(c)
    assert reply is not None, "shim closed on a well-formed request %d" % rid
    meshed_field = 0
    # find MeshReply (field 13) -> meshed (field 2): parse just enough
    i = 0
    while i < len(reply):
        key = reply[i]; i += 1
        if key == 0x08:
            while reply[i] & 0x80: i += 1
            i += 1
        elif key == (13 << 3 | 2):
            ln = 0; shift = 0
            while True:
                b = reply[i]; i += 1; ln |= (b & 0x7F) << shift; shift += 7
                if not b & 0x80: break
            body = reply[i:i + ln]; i += ln
            j = 0
            while j < len(body):
                k = body[j]; j += 1
                if k & 7 == 0:
                    v = 0; shift = 0
                    while True:
                        b = body[j]; j += 1; v |= (b & 0x7F) << shift; shift += 7
                        if not b & 0x80: break
                    if k >> 3 == 2: meshed_field = v
                elif k & 7 == 2:
                    ln2 = 0; shift = 0
                    while True:
                        b = body[j]; j += 1; ln2 |= (b & 0x7F) << shift; shift += 7
                        if not b & 0x80: break
                    j += ln2
        else:
            break
    meshed += meshed_field
    print("request %d: %d pairs sent, %d meshed" % (rid, min(len(dst), len(src)), meshed_field))
# Garbage: the shim must drop the connection, not crash.
c.sendall(struct.pack("<I", 12) + os.urandom(12))
c.settimeout(60)
print("garbage: connection", "closed" if not c.recv(1) else "kept")
print("total meshed", meshed)
assert meshed > 0, "no plausible pair was meshed: the test did not reach the engine"
PY

want fake || exit 0
: >"$TMP/frag.out"
/usr/bin/python3 "$TMP/fake_meshd.py" "$FAKE_SOCK" "$TMP/frag.out" >"$TMP/fake.out" 2>&1 &
fake=$!
PIDS+=("$fake")
wait_for "$BOUND" test -S "$FAKE_SOCK" || true
# Only the fragmenter is preloaded: the fake accepts one registration.
MESHD_SOCKET="$FAKE_SOCK" LD_PRELOAD="$LIB" "$FRAG" 200000 25 hold >"$TMP/frag.out" 2>&1 &
frag=$!
PIDS+=("$frag")
wait_exit "$fake" 600
if [ "$rc" = 0 ]; then
    pass "the shim answered every well-formed nonsense request ($(grep 'total meshed' "$TMP/fake.out"))"
else
    fail "fake meshd: $(tail -3 "$TMP/fake.out")"
fi
if grep -q 'table descriptor read-only: 8 writes refused' "$TMP/fake.out"; then
    pass "the span-table descriptor meshd gets is read-only ($(grep 'read-only' "$TMP/fake.out"))"
else
    fail "span-table descriptor: $(grep -i 'read-only\|Error' "$TMP/fake.out")"
fi
if grep -q 'garbage: connection closed' "$TMP/fake.out"; then
    pass "garbage from meshd closes the connection"
else
    fail "garbage frame did not close the connection"
fi
finish_fragmenter "$frag" "$TMP/frag.out" "the program's data survived"
[ "$FAILED" = 0 ] && echo "hostile_meshd: all passed"
exit "$FAILED"
