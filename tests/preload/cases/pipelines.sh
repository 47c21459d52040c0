#!/usr/bin/env bash
# Preload suite, pipelines case: coreutils/mawk/gzip/xargs in pipelines, subshells,
# command and process substitution, and bash's own allocator-heavy features
# (associative arrays, long strings).  Every process inherits LD_PRELOAD.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$PRELOAD_CASES/lib.sh"

# Data: 300k lines "<n> <word>" from seq and awk.
seq 1 300000 |
    awk '{ w = substr("abcdefghijklmnopqrstuvwxyz", $1 % 26 + 1, $1 % 7 + 1)
           printf "%d %s%d\n", ($1 * 7919) % 100003, w, $1 % 1000 }' >data.txt
echo "data: $(wc -l <data.txt) lines, $(wc -c <data.txt) bytes, $(digest <data.txt)"

# sort | uniq | sort, in a pipeline of several stages.
cut -d' ' -f2 data.txt | tr -d '0-9' | sort | uniq -c | sort -k1,1nr -k2,2 >top.txt
echo "words: $(wc -l <top.txt) distinct, top: $(awk 'NR <= 3 { printf "%s:%s ", $2, $1 }' top.txt)"
marked sort -k1,1n -k2,2 data.txt | cut -d' ' -f1 | uniq -c | awk '{ print $1 }' | sort -n | uniq -c |
    awk '{ printf "%s x%s ", $1, $2 } END { print "" }' | sed 's/^/repeats: /'
tr '[:lower:]' '[:upper:]' <data.txt | digest | sed 's/^/upper: /'

# Subshells and grouping.
(
    cd "$TMPDIR" || exit 1
    seq 1 50000 | split -l 7000 - part.
    for f in part.*; do sort -r "$f" >"$f.s"; done
    sort -m -n part.*.s | digest | sed 's/^/merged: /'
    parts=(part.*.s)
    echo "parts: ${#parts[@]}"
)
{ for i in $(seq 1 3000); do echo "$i $((i * i % 9973))"; done; } | sort -k2,2nr -k1,1n |
    awk 'NR <= 3 { printf "%s ", $0 } END { print "" }' | sed 's/^/squares: /'

# Command and process substitution.
total=0
for x in $(seq 1 400 | awk '{ print $1 * 3 }'); do
    total=$((total + $(echo "$x" | tr -d '\n' | wc -c)))
done
echo "digits in 400 numbers: $total"
comm -3 <(seq 1 2 60000 | sort) <(seq 1 3 60000 | sort) | wc -l | sed 's/^/comm: /'
join <(awk '{ print $2, $1 }' data.txt | sort -k1,1 -u) \
    <(awk 'NR % 3 == 0 { print $2, NR }' data.txt | sort -k1,1 -u) | digest | sed 's/^/join: /'
paste -d: <(seq 1 1000) <(seq 1000 -1 1) | awk -F: '{ s += $1 * $2 } END { print "paste: " s }'

# Parallel xargs (output order fixed by sort).
# shellcheck disable=SC2016 # expanded by sh
seq 1 4000 | xargs -n 100 -P 2 sh -c 'for x; do echo $((x * x)); done' sh | sort -n | digest |
    sed 's/^/xargs: /'

# gzip/base64/od round trips (gzip -n: no name or time in the header).
marked gzip -n -6 <data.txt >data.gz
echo "gzip: $(wc -c <data.gz) bytes, $(gzip -dc data.gz | cmp - data.txt && echo round-trip ok)"
base64 <data.gz >data.b64
base64 -d <data.b64 | cmp - data.gz && echo "base64: ok"
od -An -tx1 -N 64 data.gz | tr -s ' ' | digest | sed 's/^/od: /'
md5sum <data.txt | cut -c1-12 | sed 's/^/md5: /'

# bash itself: associative arrays, indexed arrays, long strings.
declare -A assoc
for ((i = 0; i < 30000; i++)); do
    assoc["k$((i * 31 % 30011))"]=$((i * 3))
done
for ((i = 0; i < 30000; i += 2)); do
    unset "assoc[k$i]"
done
sum=0
for k in "${!assoc[@]}"; do
    sum=$((sum + assoc[$k]))
done
echo "assoc: ${#assoc[@]} keys, sum $sum"
arr=()
s=""
for ((i = 0; i < 20000; i++)); do
    arr+=("item$i")
    s+="${i:0:2}"
done
echo "array: ${#arr[@]} ${arr[19999]} string ${#s} $(printf '%s' "$s" | digest)"
echo "done"
