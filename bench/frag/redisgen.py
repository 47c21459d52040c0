"""redisgen: RESP command streams for the Redis workloads, for `redis-cli --pipe`.

  redisgen.py lru N1 SIZE1 N2 SIZE2 OUT1 OUT2
      OUT1: SET of N1 new random keys with SIZE1-byte values; OUT2: SET of N2 more new
      random keys with SIZE2-byte values (the Mesh paper's LRU cache, section 6.2.2).
  redisgen.py del N MIN MAX DEL_PERCENT OUT_SET OUT_DEL
      OUT_SET: SET of N random keys with values of MIN..MAX bytes (uniform);
      OUT_DEL: DEL of DEL_PERCENT% of them, chosen at random, in random order.
      Prints "keys_left: K" and "value_bytes_left: B" (the payload that stays live).
  redisgen.py keyspace N SIZE OUT
      OUT: SET of redis-benchmark's keys "key:000000000000" .. N-1 (its -r N keyspace) with
      SIZE-byte values, so that its SETs replace values instead of creating keys.

Keys (lru, del) are "k:" and 16 random hex digits; values are random printable bytes.  A fixed seed
makes every file the same on every run, so every allocator gets the same commands.
"""
import random
import sys


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Source:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        self.pool = bytes(self.rng.choice(alphabet) for _ in range(1 << 16))
        self.seen = set()

    def key(self):
        while True:
            k = b"k:%016x" % self.rng.getrandbits(64)
            if k not in self.seen:
                self.seen.add(k)
                return k

    def value(self, n):
        start = self.rng.randrange(len(self.pool) - n)
        return self.pool[start:start + n]


def write_sets(path, src, n, size_of):
    keys = []
    with open(path, "wb") as f:
        batch = []
        for _ in range(n):
            k = src.key()
            size = size_of()
            keys.append((k, size))
            batch.append(resp(b"SET", k, src.value(size)))
            if len(batch) >= 4096:
                f.write(b"".join(batch))
                batch = []
        f.write(b"".join(batch))
    return keys


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "lru" and len(sys.argv) == 8:
        n1, s1, n2, s2 = (int(x) for x in sys.argv[2:6])
        src = Source(62)
        write_sets(sys.argv[6], src, n1, lambda: s1)
        write_sets(sys.argv[7], src, n2, lambda: s2)
    elif mode == "del" and len(sys.argv) == 8:
        n, lo, hi, pct = (int(x) for x in sys.argv[2:6])
        src = Source(622)
        keys = write_sets(sys.argv[6], src, n, lambda: src.rng.randint(lo, hi))
        src.rng.shuffle(keys)
        cut = n * pct // 100
        with open(sys.argv[7], "wb") as f:
            f.write(b"".join(resp(b"DEL", k) for k, _ in keys[:cut]))
        print("keys_left: %d" % (n - cut))
        print("value_bytes_left: %d" % sum(size for _, size in keys[cut:]))
    elif mode == "keyspace" and len(sys.argv) == 5:
        n, size = int(sys.argv[2]), int(sys.argv[3])
        src = Source(6222)
        with open(sys.argv[4], "wb") as f:
            for start in range(0, n, 4096):
                f.write(b"".join(resp(b"SET", b"key:%012d" % i, src.value(size))
                                 for i in range(start, min(n, start + 4096))))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
