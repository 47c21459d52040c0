"""python: an interpreter's allocation pattern, run with PYTHONMALLOC=malloc.

Builds generations of records (dicts holding strings, tuples and lists), keeps
a sliding window of recent generations alive, evicts half of each generation in
an order unrelated to insertion (as a cache would), and drops whole generations
as they age out.  With PYTHONMALLOC=malloc every object goes through malloc, so
this is a real program's mix of tiny, short- and long-lived allocations.

Every record is checked for consistency before it is dropped, and the output is a
CRC of the surviving data, which must be the same under every allocator.

usage: python3 pyalloc.py [generations [records_per_generation]]  (defaults 15 20000)
"""
import sys
import zlib

WINDOW = 4  # generations alive at once


def make_record(gen, i):
    key = f"user:{gen}:{i}"
    return key, {
        "id": i,
        "name": key.upper(),
        "tags": [f"t{(i * 7 + j) % 97}" for j in range(i % 8)],
        "pos": (i, i * 2, str(i)),
    }


def check_record(key, rec):
    i = rec["id"]
    ok = (rec["name"] == key.upper() and rec["pos"] == (i, i * 2, str(i))
          and len(rec["tags"]) == i % 8)
    if not ok:
        sys.exit(f"FAIL: record {key} was corrupted: {rec!r}")


def build_generation(gen, n):
    records = dict(make_record(gen, i) for i in range(n))
    # evict half, striding through the keys so frees scatter over the heap
    for i in range(0, n, 2):
        key = f"user:{gen}:{(i * 7919) % n}"
        rec = records.pop(key, None)
        if rec is not None:
            check_record(key, rec)
    return records


def digest(records, crc):
    for key, rec in records.items():
        check_record(key, rec)
        line = "|".join([key, rec["name"], ",".join(rec["tags"]), repr(rec["pos"])])
        crc = zlib.crc32(line.encode(), crc)
    return crc


def main():
    generations = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    per_gen = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    alive = []
    crc = 0
    for gen in range(generations):
        alive.append(build_generation(gen, per_gen))
        if len(alive) > WINDOW:
            crc = digest(alive.pop(0), crc)
    for records in alive:
        crc = digest(records, crc)
    print(f"checksum: {crc:08x}")


if __name__ == "__main__":
    main()
