"""A process pool and a manager forked from a threaded python (fork_cow.sh, lazy-python).

Every fork of the parent is copy-on-write (the test sets MESH_FORK_COW_MIN=0 and starts
the shim's control thread at once), so every child copies its heap lazily
(shim/fork_lazy.h).  Each worker builds and returns data; the parent checks every result
and prints "fork_pool: ok N lazy=L" at the end (L: results from workers whose heap was
copied lazily).  A child that read a page of its heap wrong
(glibc's locale data, the TLS slotinfo list: it crashed in mbstowcs before the fix) dies,
and the pool reports it (BrokenProcessPool) or the manager's calls fail.
"""
import concurrent.futures as cf
import ctypes
import multiprocessing as mp
import sys

SHIM = ctypes.CDLL(None)


def lazy_count():
    """1 in a child whose heap was copied lazily (mesh_fork_lazy_count), -1 without the shim."""
    try:
        f = SHIM.mesh_fork_lazy_count
    except AttributeError:
        return -1
    f.restype = ctypes.c_uint64
    return f()


def work(n):
    return [str(i) * 3 for i in range(n)], lazy_count()


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    ctx = mp.get_context("fork")
    results = lazy = 0
    for _ in range(rounds):
        mgr = ctx.Manager()
        shared = mgr.dict()
        with cf.ProcessPoolExecutor(4, mp_context=ctx) as pool:
            for i, (r, copied_lazily) in enumerate(pool.map(work, [1000] * 20)):
                lazy += copied_lazily > 0
                if r != [str(k) * 3 for k in range(1000)]:
                    print(f"fork_pool: result {i} is wrong", flush=True)
                    return 1
                results += 1
        shared["n"] = results
        if shared["n"] != results:
            print("fork_pool: the manager lost a value", flush=True)
            return 1
        mgr.shutdown()
    print(f"fork_pool: ok {results} lazy={lazy}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
