"""Preload suite, python3 case (run with PYTHONMALLOC=malloc, so every Python object
comes from malloc).  Prints only deterministic text on stdout; stderr is left to the
child processes (the shim's stats lines).  Exercises:
  threads      several threads building and dropping dicts, lists and strings;
  fork+threads os.fork while other threads are inside malloc (zlib and hashlib release
               the GIL and allocate), children report through a pipe and exit status;
  subprocess   child pythons with captured stdout, one with a large output, run
               concurrently from threads, plus sort(1) fed through a pipe;
  multiprocessing  Pool.map with the 'fork' start method (maxtasksperchild, so workers
               are re-forked while the pool's threads run) and with 'spawn'.
"""
import hashlib
import multiprocessing
import os
import random
import subprocess
import sys
import threading
import zlib


def short(data):
    if isinstance(data, str):
        data = data.encode()
    return hashlib.sha256(data).hexdigest()[:16]


def build(seed, n):
    """Build a dict of n entries (strings, lists, nested dicts), drop half of it,
    grow strings, and return a deterministic summary."""
    rng = random.Random(seed)
    d = {}
    for i in range(n):
        key = "k%d-%d-%d" % (seed, i, rng.randrange(1000000))
        d[key] = [rng.random(), str(i) * (i % 17), {"x": i, "y": [i] * (i % 9)}, key.upper()]
    for i, key in enumerate(list(d)):
        if i % 2:
            del d[key]
    parts = []
    for key, val in d.items():
        parts.append("%s=%r/%d/%s" % (key, val[0], len(val[1]), val[3][-3:]))
    text = ";".join(parts)
    lst = sorted(d, key=lambda k: (len(d[k][1]), k))
    return [len(d), zlib.crc32(text.encode()), len(text), lst[0], lst[-1]]


def work(i):
    """Pool task (top level, so the 'spawn' children can import it)."""
    r = build(1000 + i, 2500)
    blob = b"".join(bytes([j % 251]) * (j % 300) for j in range(2000 + i))
    return [i, r, zlib.crc32(zlib.compress(blob))]


def section_threads():
    results = {}

    def worker(t):
        acc = []
        for rnd in range(4):
            acc.append(build(t * 100 + rnd, 12000))
            # short-lived garbage of many sizes
            junk = [bytearray(j % 4000 + 1) for j in range(3000)]
            junk = [s * 2 for s in junk[::3]]
            acc.append(sum(len(s) for s in junk))
        results[t] = acc

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for t in sorted(results):
        print("thread", t, short(repr(results[t])), results[t][0][0], results[t][-1])


def section_fork():
    stop = threading.Event()
    counts = []

    def churn(seed):
        rng = random.Random(seed)
        data = bytes(rng.randrange(64) for _ in range(300000))
        n = 0
        while not stop.is_set():
            c = zlib.compress(data * 2, 6)  # allocates with the GIL released
            assert zlib.decompress(c) == data * 2
            hashlib.sha256(data * 3).hexdigest()
            tmp = {i: str(i) * 5 for i in range(2000)}
            del tmp
            n += 1
        counts.append(n)

    bg = [threading.Thread(target=churn, args=(s,)) for s in range(3)]
    for t in bg:
        t.start()
    results = []
    for i in range(10):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            # child: only this thread exists now; the others may have held
            # allocator locks at the moment of the fork.
            try:
                os.close(r)
                res = build(500 + i, 8000)
                os.write(w, repr(res).encode())
                os.close(w)
                code = i % 5
            except BaseException:
                code = 99
            os._exit(code)
        os.close(w)
        chunks = []
        while True:
            b = os.read(r, 65536)
            if not b:
                break
            chunks.append(b)
        os.close(r)
        _, status = os.waitpid(pid, 0)
        results.append((i, b"".join(chunks).decode(), os.waitstatus_to_exitcode(status)))
    stop.set()
    for t in bg:
        t.join()
    for i, out, code in results:
        print("fork", i, "exit", code, short(out), out[:40])
    print("churn threads ran", len(counts))


CHILD_CODE = r"""
import sys, zlib
n = int(sys.argv[1])
d = {str(i): [i] * (i % 11) for i in range(n)}
s = ",".join("%s:%d" % (k, len(v)) for k, v in d.items())
print(n, len(d), zlib.crc32(s.encode()))
if n % 2:
    for i in range(n):
        sys.stdout.write("line %d %s\n" % (i, "x" * (i % 70)))
"""


def section_subprocess():
    outs = {}

    def runner(k):
        p = subprocess.run([sys.executable, "-c", CHILD_CODE, str(20000 + k)],
                           stdout=subprocess.PIPE, check=True)
        outs[k] = p.stdout

    threads = [threading.Thread(target=runner, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in sorted(outs):
        first = outs[k].split(b"\n", 1)[0].decode()
        print("subprocess", k, first, len(outs[k]), short(outs[k]))
    lines = "".join("%d %s\n" % ((i * 7919) % 100003, "abc"[i % 3] * (i % 13))
                    for i in range(100000))
    p = subprocess.run(["sort", "-k1,1n", "-k2"], input=lines.encode(),
                       stdout=subprocess.PIPE, check=True)
    print("sort child", len(p.stdout), short(p.stdout))


def section_pools():
    # close() + join() rather than the context manager (terminate()): the workers
    # then exit on their own (the spawned ones through a normal interpreter exit).
    for method, tasks, extra in (("fork", 18, {"maxtasksperchild": 3}), ("spawn", 6, {})):
        pool = multiprocessing.get_context(method).Pool(2, **extra)
        res = pool.map(work, range(tasks), chunksize=1)
        pool.close()
        pool.join()
        print("pool", method, len(res), short(repr(res)), res[-1][1][:2])


def main():
    section_threads()
    section_fork()
    section_subprocess()
    section_pools()
    print("done")


if __name__ == "__main__":
    main()
