"""pyfrag: an interpreter that builds large structures and drops most of them.

Run as  PYTHONMALLOC=malloc PYTHONHASHSEED=0 /usr/bin/python3 pyfrag.py [ROUNDS] [KEYS] [KEEP%]
so that every object goes through the C allocator under test.

Each round builds a dict of KEYS lists, each list holding 4..12 strings of 8..300
characters (strings, list objects and their item arrays, dict tables: many size
classes).  Then it keeps KEEP% of the lists, chosen at random, and drops the dict:
the survivors are scattered over pages that held everything.  After the last round it
prints its time and "idle", waits for SIGUSR1 (at most 10 minutes) while the benchmark
samples its RSS, and verifies the survivors against CRCs taken when they were built.

Output lines (parsed by bench/frag/run.sh):
  work_seconds: S     time from start to the end of the last round
  survivors: N        lists kept alive
  idle                the program is now idle
  verified: ok N      every survivor intact (else "FAIL: ..." and exit status 1)
  checksum: X         the same under every allocator
"""
import random
import signal
import sys
import time
import zlib


def build(rng, keys, round_no):
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    pool = "".join(rng.choice(alphabet) for _ in range(4096)) * 2
    table = {}
    for k in range(keys):
        items = []
        for _ in range(rng.randint(4, 12)):
            n = rng.randint(8, 300)
            start = rng.randrange(4096)
            # Slicing then concatenating makes a fresh string object every time.
            items.append(pool[start:start + n] + str(k))
        table["r%d:k%d" % (round_no, k)] = items
    return table


def crc_of(items):
    crc = 0
    for s in items:
        crc = zlib.crc32(s.encode(), crc)
    return crc


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    keys = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
    keep = int(sys.argv[3]) if len(sys.argv) > 3 else 15
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    t0 = time.perf_counter()
    rng = random.Random(1234)
    survivors = []  # (key, list, crc)
    for r in range(rounds):
        table = build(rng, keys, r)
        for key, items in table.items():
            if rng.randrange(100) < keep:
                survivors.append((key, items, crc_of(items)))
        del table
    print("work_seconds: %.3f" % (time.perf_counter() - t0))
    print("survivors: %d" % len(survivors))
    print("idle", flush=True)

    signal.sigtimedwait({signal.SIGUSR1}, 600)

    total = 0
    for key, items, crc in survivors:
        if crc_of(items) != crc:
            print("FAIL: survivor %s was corrupted" % key, flush=True)
            sys.exit(1)
        total = zlib.crc32(key.encode(), total ^ crc)
    print("verified: ok %d" % len(survivors))
    print("checksum: %08x" % total)


if __name__ == "__main__":
    main()
