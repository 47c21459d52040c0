"""A program that lowers its own address-space or data limit while it runs, then goes on
using memory: objects, a thread, a fork whose child checks the heap (rlimits.sh).

  rlimits_prog.py HOW LIMIT_MIB HEAP_MIB [CONTROL_DIR]

HOW: as (resource.setrlimit(RLIMIT_AS)), data (RLIMIT_DATA), prlimit (resource.prlimit
of its own pid, RLIMIT_AS), syscall (syscall(SYS_setrlimit, RLIMIT_AS) through ctypes).
HEAP_MIB of objects are built before the call.  With CONTROL_DIR, CONTROL_DIR/lowered is
written after the call and the program then waits for CONTROL_DIR/go (a test meshes it
meanwhile).  Prints "ok: ..." and exits 0, or "FAIL: ..." and exits 1.
"""
import ctypes
import os
import resource
import sys
import threading
import time


def expect(k):
    return b"%010d" % k * (1 + k % 20)


def lower(how, limit):
    if how == "as":
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    elif how == "data":
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    elif how == "prlimit":
        resource.prlimit(os.getpid(), resource.RLIMIT_AS, (limit, limit))
    elif how == "syscall":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        rl = (ctypes.c_ulong * 2)(limit, limit)
        SYS_setrlimit = 160  # x86-64
        if libc.syscall(ctypes.c_long(SYS_setrlimit), ctypes.c_long(resource.RLIMIT_AS), rl) != 0:
            raise OSError(ctypes.get_errno(), "setrlimit")
    else:
        raise SystemExit(f"FAIL: unknown HOW {how}")


def main():
    how, limit_mib, heap_mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    control = sys.argv[4] if len(sys.argv) > 4 else None
    n = heap_mib * 1024 * 1024 // 110
    heap = [expect(k) + b"" for k in range(n)]
    heap = heap[::4]  # three in four freed: a fragmented heap meshd can compact
    lower(how, limit_mib << 20)
    if control:
        open(os.path.join(control, "lowered"), "w").close()
        deadline = time.monotonic() + 120
        while not os.path.exists(os.path.join(control, "go")) and time.monotonic() < deadline:
            time.sleep(0.05)
    more = [bytearray(b"m" * (100 + i % 3000)) for i in range(100000)]
    box = []
    t = threading.Thread(target=lambda: box.append(sum(len(m) for m in more)))
    t.start()
    t.join()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        ks = range(0, n, 4)  # the survivors, in order
        ok = len(ks) == len(heap) and all(heap[i] == expect(k) for i, k in enumerate(ks))
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.close(w)
    child_ok = os.read(r, 1) == b"1"
    _, status = os.waitpid(pid, 0)
    ks = range(0, n, 4)
    intact = len(ks) == len(heap) and all(heap[i] == expect(k) for i, k in enumerate(ks))
    if not (child_ok and status == 0 and intact and box and box[0] > 0):
        print(f"FAIL: child_ok={child_ok} status={status} intact={intact} thread={box}")
        return 1
    print(f"ok: {how} limit {limit_mib} MiB after {heap_mib} MiB of objects: "
          f"{len(heap)} objects intact, a thread, a fork whose child checked them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
