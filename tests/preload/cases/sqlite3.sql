-- Preload suite, sqlite3 case: queries over the generated tables (see sqlite3.sh).
-- Output must be deterministic: every query has a total ORDER BY.
.mode list
.separator |
.headers off
PRAGMA cache_size = -512;
PRAGMA threads = 2;
PRAGMA temp_store = FILE;

SELECT 'rows', count(*), sum(qty), printf('%.2f', sum(price)), sum(length(note)) FROM item;

SELECT 'group', g.label, count(*), sum(i.qty), printf('%.2f', avg(i.price)), max(length(i.note))
  FROM item i JOIN grp g ON g.id = i.grp
 GROUP BY g.id ORDER BY count(*) DESC, g.label LIMIT 5;

-- No index yet: sorting 100k rows by an expression with a small cache (external merge
-- sort, worker threads).
SELECT 'sorted', id, name, qty FROM item
 ORDER BY substr(note, 5, 9) DESC, qty, id LIMIT 5;
SELECT 'sort-digest', count(*), sum(rn * (id % 1000)) FROM (
  SELECT id, row_number() OVER (ORDER BY name, id) AS rn FROM item);

CREATE INDEX item_grp_qty ON item(grp, qty);
CREATE INDEX item_name ON item(name);
CREATE INDEX item_note ON item(substr(note, 1, 12));

SELECT 'by-index', grp, qty, count(*) FROM item WHERE grp BETWEEN 10 AND 12 AND qty < 40
 GROUP BY grp, qty ORDER BY grp, qty LIMIT 8;
SELECT 'name-range', count(*), min(name), max(name) FROM item
 WHERE name BETWEEN 'item-100000' AND 'item-200000';
SELECT 'like', count(*) FROM item WHERE note LIKE '%xyz01%';

-- Window functions and a CTE.
SELECT 'rank', grp, name, qty, r FROM (
  SELECT grp, name, qty, rank() OVER (PARTITION BY grp ORDER BY qty DESC, name) AS r FROM item)
 WHERE r <= 2 AND grp < 3 ORDER BY grp, r;
WITH RECURSIVE fib(n, a, b) AS (SELECT 1, 0, 1 UNION ALL SELECT n + 1, b, a + b FROM fib WHERE n < 80)
SELECT 'fib', n, a FROM fib WHERE n IN (10, 50, 80);
WITH RECURSIVE cnt(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM cnt WHERE x < 20000)
SELECT 'cte', count(*), sum(x), length(group_concat(x, ',')) FROM cnt;

-- group_concat builds big strings.
SELECT 'concat', grp, length(group_concat(name, ',')), substr(group_concat(name, ','), 1, 23)
  FROM (SELECT grp, name FROM item ORDER BY grp, name) GROUP BY grp ORDER BY grp LIMIT 3;

-- Self-join through the index.
SELECT 'join', count(*), sum(a.qty + b.qty) FROM item a JOIN item b
    ON b.grp = a.grp AND b.qty = a.qty + 1 WHERE a.id <= 3000;

-- Updates, deletes, VACUUM, integrity.
BEGIN;
UPDATE item SET note = note || note WHERE id % 7 = 0;
DELETE FROM item WHERE id % 3 = 0;
INSERT INTO item(grp, name, qty, price, note)
  SELECT grp, 'copy-' || name, qty + 1, price * 2, substr(note, 1, 50) FROM item WHERE id % 5 = 1;
COMMIT;
SELECT 'after', count(*), sum(qty), sum(length(note)) FROM item;
VACUUM;
PRAGMA integrity_check;
SELECT 'final', count(*), max(id), printf('%.2f', sum(price)) FROM item;
