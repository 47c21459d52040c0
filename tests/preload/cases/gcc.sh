#!/usr/bin/env bash
# Preload suite, gcc case: generate a C program (a few hundred functions, so cc1 has
# real work), compile it with -O2 (driver, cc1, as, collect2, ld all preloaded), check
# the compile succeeded, run the program (preloaded too: it mallocs lists, trees and
# strings) and print its output and a digest of the binary.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$PRELOAD_CASES/lib.sh"

awk 'BEGIN {
    nf = 240
    print "#include <stdio.h>"
    print "#include <stdlib.h>"
    print "#include <string.h>"
    print "#include <stdint.h>"
    print "struct node { struct node *next; uint64_t v; char *s; };"
    for (f = 0; f < nf; f++) {
        printf "static uint64_t fn%d(uint64_t x) {\n", f
        printf "    uint64_t acc = %dULL;\n", f * 2654435761 % 1000003
        printf "    for (int i = 0; i < %d; i++) {\n", 3 + f % 11
        printf "        switch ((x + i) %% %d) {\n", 2 + f % 7
        for (c = 0; c < 2 + f % 7; c++)
            printf "        case %d: acc = acc * %d + (x >> %d) + %d; break;\n", c, 3 + (c * f) % 17, c % 13, c * f
        print "        }"
        print "        x ^= acc << 7; x += i;"
        print "    }"
        print "    return acc ^ x;"
        print "}"
    }
    printf "static uint64_t (*const fns[%d])(uint64_t) = {", nf
    for (f = 0; f < nf; f++) printf "%sfn%d", (f ? ", " : ""), f
    print "};"
    print "static int cmp_u64(const void *a, const void *b) {"
    print "    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;"
    print "    return x < y ? -1 : x > y;"
    print "}"
    print "int main(void) {"
    print "    uint64_t h = 1469598103934665603ULL;"
    printf "    for (int f = 0; f < %d; f++) h = (h ^ fns[f](h + (uint64_t)f)) * 1099511628211ULL;\n", nf
    print "    printf(\"functions: %016llx\\n\", (unsigned long long)h);"
    print "    struct node *list = NULL;"
    print "    for (int i = 0; i < 200000; i++) {"
    print "        struct node *n = malloc(sizeof *n);"
    print "        if (!n) return 1;"
    print "        n->v = fns[i % " nf "]((uint64_t)i);"
    print "        size_t len = (size_t)(i % 200) + 1;"
    print "        n->s = malloc(len);"
    print "        if (!n->s) return 1;"
    print "        memset(n->s, (int)(33 + i % 90), len - 1); n->s[len - 1] = 0;"
    print "        n->next = list; list = n;"
    print "    }"
    print "    size_t cnt = 0, bytes = 0; uint64_t *vals = NULL;"
    print "    for (struct node *n = list, *prev = NULL, *next; n; n = next) {"
    print "        next = n->next;"
    print "        if (n->v % 3 == 0) {"
    print "            if (prev) prev->next = next; else list = next;"
    print "            free(n->s); free(n); continue;"
    print "        }"
    print "        char *grown = realloc(n->s, strlen(n->s) * 3 + 1);"
    print "        if (!grown) return 1;"
    print "        size_t l = strlen(grown); memmove(grown + l, grown + l / 2, l - l / 2 + 1);"
    print "        n->s = grown;"
    print "        prev = n;"
    print "    }"
    print "    for (struct node *n = list; n; n = n->next) {"
    print "        if (cnt % 1024 == 0) { vals = realloc(vals, (cnt + 1024) * sizeof *vals); if (!vals) return 1; }"
    print "        vals[cnt++] = n->v; bytes += strlen(n->s);"
    print "    }"
    print "    qsort(vals, cnt, sizeof *vals, cmp_u64);"
    print "    uint64_t d = 0; for (size_t i = 0; i < cnt; i++) d = d * 31 + vals[i];"
    print "    printf(\"list: %zu nodes, %zu bytes, min %llu, digest %016llx\\n\", cnt, bytes,"
    print "           (unsigned long long)vals[0], (unsigned long long)d);"
    print "    while (list) { struct node *n = list; list = n->next; free(n->s); free(n); }"
    print "    free(vals);"
    print "    return 0;"
    print "}"
}' >prog.c
echo "source: $(wc -l <prog.c) lines, $(digest <prog.c)"

rc=0
marked gcc -std=c11 -O2 -g -Wall -Wextra -o prog prog.c || rc=$?
echo "compile status $rc"
marked gcc -std=c11 -O2 -S -o prog.s prog.c
echo "assembly: $(wc -l <prog.s) lines, $(digest <prog.s)"
echo "binary: $(digest <prog)"
marked ./prog
echo "run status $?"
