// A SQLite benchmark in the shape of SQLite's own `speedtest1` (which the
// `sqlite3-src` crate does not ship: only the amalgamation and shell.c):
// timed phases of inserts, scans, index builds, lookups, updates, deletes
// and a VACUUM on a database file, each printed as "NAME: X ms", then the
// total. Written for Cabin's catalog (catalog/sqlite-speed.toml); the SQL
// mix follows speedtest1's published test list, the code is our own.
//
//   speed DIR [SIZE]    database DIR/speed.db; SIZE scales the row count
//                       (rows = 500 * SIZE, default SIZE 100)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sqlite3.h"

static sqlite3 *db;
static double total_ms;
static double t0;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void fail(const char *what) {
    fprintf(stderr, "speed: %s: %s\n", what, sqlite3_errmsg(db));
    exit(1);
}

static void exec(const char *sql) {
    char *err = 0;
    if (sqlite3_exec(db, sql, 0, 0, &err) != SQLITE_OK) {
        fprintf(stderr, "speed: %s: %s\n", sql, err ? err : "?");
        exit(1);
    }
}

static sqlite3_stmt *prepare(const char *sql) {
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, 0) != SQLITE_OK) fail(sql);
    return s;
}

// Steps `s` to the end (summing the first column of rows, so that nothing
// is optimised away) and resets it.
static long long run(sqlite3_stmt *s) {
    long long sum = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) sum += sqlite3_column_int64(s, 0);
    if (rc != SQLITE_DONE) fail(sqlite3_sql(s));
    sqlite3_reset(s);
    return sum;
}

static void begin(void) { t0 = now_ms(); }

static void end(const char *name) {
    double ms = now_ms() - t0;
    total_ms += ms;
    printf("%s: %.3f ms\n", name, ms);
    fflush(stdout);
}

// A deterministic generator (xorshift64*), the same numbers every run.
static unsigned long long rng_state = 0x9e3779b97f4a7c15ull;
static unsigned rnd(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (unsigned)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

// `n` spelled in English words ("one thousand two hundred three"): text
// columns of varying length whose order differs from the numbers'.
static void words(unsigned n, char *out, size_t cap) {
    static const char *ones[] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                                 "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen",
                                 "sixteen", "seventeen", "eighteen", "nineteen"};
    static const char *tens[] = {"", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"};
    char buf[256] = "";
    size_t len = 0;
#define PUT(str) len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", len ? " " : "", (str))
    if (n >= 1000000000) { PUT(ones[n / 1000000000 % 20]); PUT("billion"); n %= 1000000000; }
    if (n >= 1000000) { char t[128]; words(n / 1000000, t, sizeof t); PUT(t); PUT("million"); n %= 1000000; }
    if (n >= 1000) { char t[128]; words(n / 1000, t, sizeof t); PUT(t); PUT("thousand"); n %= 1000; }
    if (n >= 100) { PUT(ones[n / 100]); PUT("hundred"); n %= 100; }
    if (n >= 20) { PUT(tens[n / 10]); n %= 10; if (n) PUT(ones[n]); }
    else if (n || len == 0) PUT(ones[n]);
#undef PUT
    snprintf(out, cap, "%s", buf);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: speed DIR [SIZE]\n");
        return 2;
    }
    int size = argc > 2 ? atoi(argv[2]) : 100;
    if (size < 1 || size > 100000) {
        fprintf(stderr, "speed: SIZE must be 1..100000\n");
        return 2;
    }
    int n = 500 * size;
    char path[4096], text[256];
    snprintf(path, sizeof path, "%s/speed.db", argv[1]);
    unlink(path);
    if (sqlite3_open(path, &db) != SQLITE_OK) fail("open");
    printf("sqlite %s, %d rows\n", sqlite3_libversion(), n);

    begin();
    exec("BEGIN; CREATE TABLE t1(a INTEGER, b INTEGER, c TEXT);");
    sqlite3_stmt *s = prepare("INSERT INTO t1 VALUES(?1, ?2, ?3)");
    for (int i = 1; i <= n; i++) {
        unsigned x = rnd() % (unsigned)(n * 2);
        words(x, text, sizeof text);
        sqlite3_bind_int(s, 1, (int)x);
        sqlite3_bind_int(s, 2, i);
        sqlite3_bind_text(s, 3, text, -1, SQLITE_STATIC);
        run(s);
    }
    sqlite3_finalize(s);
    exec("COMMIT;");
    end("insert_unindexed");

    begin();
    exec("BEGIN; CREATE TABLE t2(a INTEGER PRIMARY KEY, b INTEGER, c TEXT);");
    s = prepare("INSERT INTO t2 VALUES(?1, ?2, ?3)");
    for (int i = 1; i <= n; i++) {
        unsigned x = rnd() % (unsigned)(n * 2);
        words(x, text, sizeof text);
        sqlite3_bind_int(s, 1, i);
        sqlite3_bind_int(s, 2, (int)x);
        sqlite3_bind_text(s, 3, text, -1, SQLITE_STATIC);
        run(s);
    }
    sqlite3_finalize(s);
    exec("COMMIT;");
    end("insert_ordered_pk");

    begin();
    exec("BEGIN; CREATE TABLE t3(a INTEGER, b INTEGER, c TEXT); CREATE INDEX t3a ON t3(a);");
    s = prepare("INSERT INTO t3 VALUES(?1, ?2, ?3)");
    for (int i = 1; i <= n; i++) {
        unsigned x = rnd() % (unsigned)(n * 2);
        words(i, text, sizeof text);
        sqlite3_bind_int(s, 1, (int)x);
        sqlite3_bind_int(s, 2, i);
        sqlite3_bind_text(s, 3, text, -1, SQLITE_STATIC);
        run(s);
    }
    sqlite3_finalize(s);
    exec("COMMIT;");
    end("insert_unordered_indexed");

    begin();
    exec("BEGIN;");
    s = prepare("SELECT count(*), avg(b), sum(length(c)) FROM t1 WHERE b BETWEEN ?1 AND ?2");
    for (int i = 0; i < 50; i++) {
        int lo = (int)(rnd() % (unsigned)n);
        sqlite3_bind_int(s, 1, lo);
        sqlite3_bind_int(s, 2, lo + n / 10);
        run(s);
    }
    sqlite3_finalize(s);
    exec("COMMIT;");
    end("select_range_scan");

    begin();
    exec("BEGIN;");
    s = prepare("SELECT count(*) FROM t1 WHERE c LIKE ?1");
    for (int i = 0; i < 25; i++) {
        words(rnd() % 100, text, sizeof text);
        char pat[300];
        snprintf(pat, sizeof pat, "%%%s%%", text);
        sqlite3_bind_text(s, 1, pat, -1, SQLITE_TRANSIENT);
        run(s);
    }
    sqlite3_finalize(s);
    exec("COMMIT;");
    end("select_like_scan");

    begin();
    exec("BEGIN;");
    s = prepare("SELECT a FROM t1 WHERE b BETWEEN ?1 AND ?2 ORDER BY c LIMIT 10");
    for (int i = 0; i < 10; i++) {
        int lo = (int)(rnd() % (unsigned)n);
        sqlite3_bind_int(s, 1, lo);
        sqlite3_bind_int(s, 2, lo + n / 2);
        run(s);
    }
    sqlite3_finalize(s);
    exec("COMMIT;");
    end("select_order_by");

    begin();
    exec("BEGIN; CREATE INDEX t1b ON t1(b); CREATE INDEX t1c ON t1(c); COMMIT;");
    end("create_index");

    begin();
    exec("BEGIN;");
    s = prepare("SELECT count(*), avg(a) FROM t1 WHERE b BETWEEN ?1 AND ?2");
    for (int i = 0; i < n / 5; i++) {
        int lo = (int)(rnd() % (unsigned)n);
        sqlite3_bind_int(s, 1, lo);
        sqlite3_bind_int(s, 2, lo + 10);
        run(s);
    }
    sqlite3_finalize(s);
    exec("COMMIT;");
    end("select_indexed_range");

    begin();
    exec("BEGIN;");
    s = prepare("SELECT b FROM t2 WHERE a = ?1");
    for (int i = 0; i < n; i++) {
        sqlite3_bind_int(s, 1, (int)(rnd() % (unsigned)n) + 1);
        run(s);
    }
    sqlite3_finalize(s);
    exec("COMMIT;");
    end("select_by_rowid");

    begin();
    exec("BEGIN;");
    s = prepare("SELECT a FROM t1 WHERE c = ?1");
    for (int i = 0; i < n / 5; i++) {
        words(rnd() % (unsigned)(n * 2), text, sizeof text);
        sqlite3_bind_text(s, 1, text, -1, SQLITE_STATIC);
        run(s);
    }
    sqlite3_finalize(s);
    exec("COMMIT;");
    end("select_by_text_index");

    begin();
    exec("BEGIN; CREATE TABLE t4 AS SELECT * FROM t1; COMMIT;");
    end("insert_from_select");

    begin();
    exec("BEGIN;");
    s = prepare("UPDATE t2 SET b = b * 2 WHERE a BETWEEN ?1 AND ?1 + 5");
    for (int i = 0; i < n / 5; i++) {
        sqlite3_bind_int(s, 1, (int)(rnd() % (unsigned)n));
        run(s);
    }
    sqlite3_finalize(s);
    exec("COMMIT;");
    end("update_range_pk");

    begin();
    exec("BEGIN;");
    s = prepare("UPDATE t2 SET c = ?1 WHERE a = ?2");
    for (int i = 0; i < n; i++) {
        unsigned x = rnd() % (unsigned)n;
        words(x * 3, text, sizeof text);
        sqlite3_bind_text(s, 1, text, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 2, (int)x + 1);
        run(s);
    }
    sqlite3_finalize(s);
    exec("COMMIT;");
    end("update_by_rowid");

    begin();
    exec("BEGIN; UPDATE t1 SET b = b + 1, c = c || 'x'; COMMIT;");
    end("update_all");

    begin();
    exec("BEGIN; DELETE FROM t3 WHERE a BETWEEN 0 AND 1 + 0; COMMIT;");
    s = prepare("DELETE FROM t3 WHERE a BETWEEN ?1 AND ?1 + 20");
    exec("BEGIN;");
    for (int i = 0; i < n / 20; i++) {
        sqlite3_bind_int(s, 1, (int)(rnd() % (unsigned)(n * 2)));
        run(s);
    }
    sqlite3_finalize(s);
    exec("COMMIT;");
    end("delete_indexed_range");

    begin();
    exec("BEGIN; DELETE FROM t4 WHERE b % 2 = 0; INSERT INTO t4 SELECT * FROM t1 WHERE b % 2 = 0; COMMIT;");
    end("delete_and_refill");

    begin();
    s = prepare("PRAGMA integrity_check");
    if (sqlite3_step(s) != SQLITE_ROW || strcmp((const char *)sqlite3_column_text(s, 0), "ok") != 0) {
        fprintf(stderr, "speed: integrity_check: %s\n", sqlite3_column_text(s, 0));
        return 1;
    }
    sqlite3_finalize(s);
    end("integrity_check");

    begin();
    exec("VACUUM;");
    end("vacuum");

    s = prepare("SELECT (SELECT count(*) FROM t1) + (SELECT count(*) FROM t2) + (SELECT count(*) FROM t3)"
                " + (SELECT count(*) FROM t4)");
    long long rows = run(s);
    sqlite3_finalize(s);
    sqlite3_close(db);
    unlink(path);
    printf("rows at the end: %lld\n", rows);
    printf("total: %.3f ms\n", total_ms);
    return 0;
}
