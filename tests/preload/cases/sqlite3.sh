#!/usr/bin/env bash
# Preload suite, sqlite3 case: a generated SQL script inserts 100k rows (text of many
# lengths), then queries.sql runs GROUP BY / ORDER BY / joins / window functions /
# indexes / a multi-threaded external sort / delete + VACUUM / integrity_check.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$PRELOAD_CASES/lib.sh"

awk 'BEGIN {
    print "PRAGMA journal_mode=WAL;"
    print "CREATE TABLE grp(id INTEGER PRIMARY KEY, label TEXT NOT NULL);"
    print "CREATE TABLE item(id INTEGER PRIMARY KEY, grp INTEGER NOT NULL REFERENCES grp(id),"
    print "    name TEXT NOT NULL, qty INTEGER NOT NULL, price REAL NOT NULL, note TEXT);"
    print "BEGIN;"
    for (g = 0; g < 97; g++) printf "INSERT INTO grp VALUES(%d, '\''group-%02d'\'');\n", g, g
    pad = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for (i = 1; i <= 100000; i++) {
        g = (i * 7919) % 97
        q = (i * 31) % 1000
        note = ""
        len = (i * 13) % 400
        while (length(note) < len) note = note substr(pad, (i + length(note)) % 62 + 1, 17)
        note = substr(note, 1, len)
        printf "INSERT INTO item VALUES(%d, %d, '\''item-%06d'\'', %d, %d.%02d, '\''%s'\'');\n",
            i, g, (i * 104729) % 1000003, q, (i * 17) % 500, i % 100, note
    }
    print "COMMIT;"
}' >gen.sql
echo "generated: $(wc -l <gen.sql) lines, $(digest <gen.sql)"

marked sqlite3 -bail db.sqlite <gen.sql
marked sqlite3 -bail db.sqlite <"$PRELOAD_CASES/sqlite3.sql"
echo "db: $(sqlite3 db.sqlite 'SELECT count(*) FROM item;') rows after the queries"
