#!/usr/bin/env bash
# Preload suite, git case: a repository with generated files over several commits
# (fixed names and dates, so every hash is deterministic), then log --stat, diff,
# blame, grep, archive, gc (pack-objects with 2 threads), fsck.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$PRELOAD_CASES/lib.sh"

export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME="Preload Tester" GIT_AUTHOR_EMAIL=preload@example.invalid
export GIT_COMMITTER_NAME="Preload Tester" GIT_COMMITTER_EMAIL=preload@example.invalid

marked git init -q -b main repo
cd repo || exit 1
git config gc.auto 0
git config pack.threads 2

# gen COMMIT: (re)write the tree for one commit; files change partly between commits.
gen() {
    awk -v c="$1" 'BEGIN {
        for (f = 0; f < 240; f++) {
            if ((f + c) % 4 != 0 && c > 1) continue      # touch a quarter of files per commit
            dir = sprintf("src/d%02d", f % 12)
            system("mkdir -p " dir)
            file = sprintf("%s/f%03d.txt", dir, f)
            lines = 40 + (f * 37 + c * 11) % 160
            for (l = 0; l < lines; l++)
                printf "file %d line %d rev %d %s\n", f, l, (l % 9 == c % 9) ? c : 0,
                    substr("the quick brown fox jumps over the lazy dog", 1 + (l * f) % 30) >file
            close(file)
        }
        # one larger, more compressible file that grows every commit
        for (l = 0; l < 3000 * c; l++) printf "log entry %d of commit %d\n", l, c >"big.log"
    }'
    if (($1 % 3 == 0)); then
        git rm -q "src/d0$(($1 % 10))/f00$(($1 % 10)).txt" 2>/dev/null || true
    fi
}

for c in 1 2 3 4 5 6 7; do
    gen "$c"
    export GIT_AUTHOR_DATE="@$((1700000000 + c * 3600)) +0000"
    export GIT_COMMITTER_DATE="$GIT_AUTHOR_DATE"
    git add -A
    git commit -q -m "commit $c" -m "generated content, round $c"
    if ((c == 4)); then
        git checkout -q -b side
        printf 'side branch %d\n' 1 2 3 >side.txt
        git add side.txt
        git commit -q -m "side"
        git checkout -q main
    fi
done
export GIT_AUTHOR_DATE="@1700100000 +0000" GIT_COMMITTER_DATE="@1700100000 +0000"
git merge -q --no-edit side
git tag -a v1 -m "tag v1"

echo "HEAD $(git rev-parse HEAD) tree $(git rev-parse 'HEAD^{tree}')"
echo "commits $(git rev-list --count HEAD) files $(git ls-files | wc -l)"
marked git log --stat --format='%H %an <%ae> %ad%n    %s' --date=iso-strict >log.txt
echo "log --stat: $(wc -l <log.txt) lines, $(digest <log.txt)"
awk 'NR <= 12' log.txt
git log --format='%h %s' --graph
git diff --stat HEAD~5 HEAD | tail -n 1
git log -p --format='%H' | digest | sed 's/^/log -p: /'
git blame -s src/d01/f001.txt | digest | sed 's/^/blame: /'
git grep -c 'rev 7' -- 'src/d0[0-2]/*' | sort | awk 'NR <= 5'
git archive --format=tar v1 | digest | sed 's/^/archive: /'

marked git gc -q --prune=now
git count-objects -v | grep -E '^(count|in-pack|packs|prune-packable|garbage):'
marked git fsck --full --strict --no-progress
echo "fsck exit $?"
idx=(.git/objects/pack/pack-*.idx)
echo "packs: ${#idx[@]}"
git verify-pack "${idx[@]}" && echo "verify-pack ok"
git rev-list --objects --all | wc -l | sed 's/^/objects reachable: /'
git cat-file -p "HEAD:big.log" | digest | sed 's/^/big.log: /'
