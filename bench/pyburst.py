"""pyburst: threads building and dropping lists and strings in bursts.

Run with PYTHONMALLOC=malloc, so that every object goes through malloc.  Each thread,
burst after burst, builds a list of a few tens of thousands of strings, small lists and
tuples (several megabytes), checks it and drops it whole: the heap swings from almost
nothing to its peak and back in every burst, as in a server handling requests or a
batch job.  An allocator that gives the pages back after each burst faults them all in
again in the next one.

The output is a CRC over what every burst built, the same under every allocator (the
threads' results are combined in thread order).

usage: python3 pyburst.py [threads [bursts [items]]]  (defaults 2 30 20000)
"""
import sys
import threading
import zlib


def burst(seed, items):
    data = []
    for i in range(items):
        k = (seed * 7919 + i * 31) % 1000003
        data.append((f"item-{k}-{'x' * (k % 48)}", [k, k + 1, str(k)], {"k": k}))
    crc = 0
    for s, lst, d in data:
        if lst[0] != d["k"] or not s.startswith(f"item-{d['k']}-"):
            raise SystemExit(f"FAIL: corrupted record {s!r}")
        crc = zlib.crc32(s.encode(), crc)
    del data
    return crc


def worker(index, bursts, items, results):
    crc = 0
    for b in range(bursts):
        crc = zlib.crc32(burst(index * 100003 + b, items).to_bytes(4, "little"), crc)
    results[index] = crc


def main():
    args = [int(a) for a in sys.argv[1:]]
    threads, bursts, items = (args + [2, 30, 20000][len(args):])[:3]
    results = [0] * threads
    pool = [threading.Thread(target=worker, args=(t, bursts, items, results)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    crc = 0
    for r in results:
        crc = zlib.crc32(r.to_bytes(4, "little"), crc)
    print(f"checksum: {crc:08x}")


if __name__ == "__main__":
    main()
