#!/usr/bin/env bash
# Preload suite, sort case: GNU sort on a few hundred thousand generated lines with a
# tiny buffer (-S, so it spills sorted runs to temporary files and merges them) and
# --parallel=2 (threads), under several key specifications.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$PRELOAD_CASES/lib.sh"

awk 'BEGIN {
    pad = "qwertyuiopasdfghjklzxcvbnmQWERTYUIOPASDFGHJKLZXCVBNM"
    for (i = 1; i <= 400000; i++) {
        k = (i * 2654435761) % 1000000007
        printf "%09d %d %s %s\n", k, i % 1000, substr(pad, i % 40 + 1, 3 + i % 11), (i * 7) % 65536
    }
}' >big.txt
echo "input: $(wc -l <big.txt) lines, $(wc -c <big.txt) bytes"

s() {
    marked sort -S 1M --parallel=2 -T "$TMPDIR" "$@"
}
s big.txt >o1.txt
echo "plain: $(digest <o1.txt) first $(awk 'NR == 1 { print $1 }' o1.txt)"
s -k2,2n -k3,3 -k1,1 big.txt >o2.txt
echo "keys: $(digest <o2.txt) $(awk 'NR == 1 || NR == 400000 { printf "[%s] ", $0 }' o2.txt)"
s -k4,4nr -s big.txt >o3.txt
echo "stable numeric reverse: $(digest <o3.txt)"
s -u -k2,2n big.txt >o4.txt
echo "unique: $(wc -l <o4.txt) $(digest <o4.txt)"
s -t' ' -k3,3 -k4,4n big.txt | s -m -k3,3 -k4,4n - o2.txt >o5.txt
echo "merge: $(wc -l <o5.txt) $(digest <o5.txt)"
s -c o1.txt && echo "check: o1 sorted"
s -k1,1 -C o2.txt || echo "check: o2 not sorted by field 1"
echo "done"
