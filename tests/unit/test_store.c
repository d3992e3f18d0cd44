/* test_store.c - the SQLite metadata store: schema creation and migration,
 * refusal of newer databases, images, meta, captions, the F16 vision cache,
 * integrity checks, the indexer lock across processes (including a holder
 * that dies), transactions and the SHA-256 content hash. */
#include "embed/digest.h"
#include "index/store.h"
#include "tests/testutil.h"

#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *db_path(const char *name) {
    static char bufs[4][512];
    static int slot;
    char *b = bufs[slot++ & 3];
    snprintf(b, 512, "%s/%s", qf_test_tmpdir(), name);
    return b;
}

static qf_store *open_ok(const char *path, unsigned flags) {
    qf_store *st = NULL;
    qf_status s = qf_store_open(path, flags, &st);
    if (s != QF_OK) fprintf(stderr, "\nopen %s: %s\n", path, qf_last_error());
    CU_ASSERT_EQUAL_FATAL(s, QF_OK);
    return st;
}

/* Runs one SQL statement on the file with plain SQLite, returning the
 * first column of the first row as text (static buffer) or "". */
static const char *raw_sql(const char *path, const char *sql) {
    static char out[256];
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    out[0] = 0;
    CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
    CU_ASSERT_EQUAL(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    if (s && sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
        snprintf(out, sizeof out, "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    sqlite3_close(db);
    return out;
}

static void test_schema_create_and_reopen(void) {
    const char *path = db_path("schema.db");
    qf_store *st = open_ok(path, 0);
    int v = qf_store_binary_schema_version();
    CU_ASSERT(v >= 1);
    CU_ASSERT_EQUAL(qf_store_schema_version(st), v);
    CU_ASSERT_EQUAL(qf_store_meta_set(st, "factory", "Flat"), QF_OK);
    int64_t id = 0;
    CU_ASSERT_EQUAL(qf_store_image_upsert(st, "/photos/a.jpg", 10, 20, NULL, &id), QF_OK);
    qf_store_close(st);

    /* what plain SQLite sees */
    char q[64];
    snprintf(q, sizeof q, "%d", v);
    CU_ASSERT_STRING_EQUAL(raw_sql(path, "PRAGMA user_version"), q);
    CU_ASSERT_STRING_EQUAL(raw_sql(path, "PRAGMA journal_mode"), "wal");
    CU_ASSERT_STRING_EQUAL(raw_sql(path, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                                         "name IN ('images', 'meta', 'image_feats', 'captions', 'vision_cache')"), "5");

    /* reopening runs no migration twice and keeps the data */
    for (int i = 0; i < 2; i++) {
        st = open_ok(path, 0);
        CU_ASSERT_EQUAL(qf_store_schema_version(st), v);
        char *val = NULL;
        CU_ASSERT_EQUAL(qf_store_meta_get(st, "factory", &val), QF_OK);
        CU_ASSERT_STRING_EQUAL(val ? val : "", "Flat");
        qf_free(val);
        int64_t counts[QF_IMAGE_STATUS_COUNT];
        CU_ASSERT_EQUAL(qf_store_image_counts(st, counts), QF_OK);
        CU_ASSERT_EQUAL(counts[QF_IMAGE_PENDING], 1);
        qf_store_close(st);
    }
}

static void test_migrate_and_refuse(void) {
    /* an empty database at version 0 is migrated forward */
    const char *path = db_path("v0.db");
    raw_sql(path, "PRAGMA user_version = 0");
    qf_store *st = open_ok(path, 0);
    CU_ASSERT_EQUAL(qf_store_schema_version(st), qf_store_binary_schema_version());
    qf_store_close(st);

    /* a database from a newer qformer is refused, read-write and read-only */
    const char *newer = db_path("newer.db");
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", qf_store_binary_schema_version() + 1);
    raw_sql(newer, sql);
    snprintf(sql, sizeof sql, "PRAGMA application_id = %d", 0x51466D72);   /* qformer's */
    raw_sql(newer, sql);
    st = NULL;
    CU_ASSERT_EQUAL(qf_store_open(newer, 0, &st), QF_ERR_UNSUPPORTED);
    CU_ASSERT_PTR_NULL(st);
    CU_ASSERT(strstr(qf_last_error(), "newer") && strstr(qf_last_error(), "newer.db"));
    CU_ASSERT_EQUAL(qf_store_open(newer, QF_STORE_READONLY, &st), QF_ERR_UNSUPPORTED);

    /* read-only: a missing file, an old schema, a store that refuses writes */
    CU_ASSERT_EQUAL(qf_store_open(db_path("missing.db"), QF_STORE_READONLY, &st), QF_ERR_IO);
    CU_ASSERT(strstr(qf_last_error(), "missing.db") != NULL);
    /* another program's database: refused read-only and read-write */
    const char *other = db_path("other.db");
    raw_sql(other, "CREATE TABLE t(x)");
    CU_ASSERT_EQUAL(qf_store_open(other, QF_STORE_READONLY, &st), QF_ERR_FORMAT);
    CU_ASSERT(strstr(qf_last_error(), "other.db is not a qformer database") != NULL);
    CU_ASSERT_EQUAL(qf_store_open(other, 0, &st), QF_ERR_FORMAT);
    CU_ASSERT_PTR_NULL(st);
    CU_ASSERT_EQUAL(qf_store_open(path, QF_STORE_READONLY | QF_STORE_LOCK, &st), QF_ERR_ARG);
    st = open_ok(path, QF_STORE_READONLY);
    int64_t id;
    CU_ASSERT_EQUAL(qf_store_image_upsert(st, "/x.png", 1, 1, NULL, &id), QF_ERR_DB);
    qf_store_close(st);

    /* not a database at all */
    const char *junk = db_path("junk.db");
    FILE *f = fopen(junk, "wb");
    for (int i = 0; i < 4096; i++) fputc((i * 7919) & 0xff, f);
    fclose(f);
    CU_ASSERT_EQUAL(qf_store_open(junk, 0, &st), QF_ERR_DB);
    CU_ASSERT(strstr(qf_last_error(), "junk.db") != NULL);
    CU_ASSERT_PTR_NULL(st);
}

typedef struct { int n; int64_t last_id; int ordered; } walk;

static qf_status count_images(const qf_store_image *img, void *user) {
    walk *w = user;
    if (img->id <= w->last_id) w->ordered = 0;
    w->last_id = img->id;
    w->n++;
    return QF_OK;
}

static qf_status stop_at_two(const qf_store_image *img, void *user) {
    walk *w = user;
    return ++w->n == 2 ? QF_ERR_ARG : QF_OK;
}

static void test_images(void) {
    qf_store *st = open_ok(db_path("images.db"), 0);
    const char *hash_a = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    int64_t a = 0, b = 0, c = 0, a2 = 0;
    CU_ASSERT_EQUAL(qf_store_image_upsert(st, "/p/a.jpg", 1000, 111, hash_a, &a), QF_OK);
    CU_ASSERT_EQUAL(qf_store_image_upsert(st, "/p/b.png", 2000, 222, NULL, &b), QF_OK);
    CU_ASSERT_EQUAL(qf_store_image_upsert(st, "/p/c.gif", 3000, 333, NULL, &c), QF_OK);
    CU_ASSERT(a > 0 && b > a && c > b);

    qf_store_image *img = NULL;
    CU_ASSERT_EQUAL(qf_store_image_lookup(st, "/p/a.jpg", &img), QF_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(img);
    CU_ASSERT_EQUAL(img->id, a);
    CU_ASSERT_STRING_EQUAL(img->path, "/p/a.jpg");
    CU_ASSERT_EQUAL(img->size, 1000);
    CU_ASSERT_EQUAL(img->mtime_ns, 111);
    CU_ASSERT_STRING_EQUAL(img->content_hash, hash_a);
    CU_ASSERT_EQUAL(img->status, QF_IMAGE_PENDING);
    CU_ASSERT_PTR_NULL(img->error);
    CU_ASSERT_EQUAL(img->width, 0);
    qf_free(img);
    CU_ASSERT_EQUAL(qf_store_image_lookup(st, "/p/nope.jpg", &img), QF_OK);
    CU_ASSERT_PTR_NULL(img);

    CU_ASSERT_EQUAL(qf_store_image_mark_ok(st, a, 640, 480), QF_OK);
    CU_ASSERT_EQUAL(qf_store_image_mark_error(st, b, 0, 0, "truncated PNG"), QF_OK);
    CU_ASSERT_EQUAL(qf_store_image_mark_ok(st, 987654, 1, 1), QF_ERR_ARG);
    CU_ASSERT_EQUAL(qf_store_image_get(st, a, &img), QF_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(img);
    CU_ASSERT_EQUAL(img->status, QF_IMAGE_OK);
    CU_ASSERT_EQUAL(img->width, 640);
    CU_ASSERT_EQUAL(img->height, 480);
    CU_ASSERT(img->indexed_at > 1600000000);
    qf_free(img);
    CU_ASSERT_EQUAL(qf_store_image_get(st, b, &img), QF_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(img);
    CU_ASSERT_EQUAL(img->status, QF_IMAGE_ERROR);
    CU_ASSERT_STRING_EQUAL(img->error, "truncated PNG");
    qf_free(img);
    CU_ASSERT_STRING_EQUAL(qf_image_status_str(QF_IMAGE_ERROR), "error");

    int64_t counts[QF_IMAGE_STATUS_COUNT];
    CU_ASSERT_EQUAL(qf_store_image_counts(st, counts), QF_OK);
    CU_ASSERT_EQUAL(counts[QF_IMAGE_PENDING], 1);
    CU_ASSERT_EQUAL(counts[QF_IMAGE_OK], 1);
    CU_ASSERT_EQUAL(counts[QF_IMAGE_ERROR], 1);

    /* a changed file keeps its id and goes back to pending */
    CU_ASSERT_EQUAL(qf_store_image_upsert(st, "/p/a.jpg", 1001, 112, NULL, &a2), QF_OK);
    CU_ASSERT_EQUAL(a2, a);
    CU_ASSERT_EQUAL(qf_store_image_get(st, a, &img), QF_OK);
    CU_ASSERT_EQUAL(img->status, QF_IMAGE_PENDING);
    CU_ASSERT_EQUAL(img->size, 1001);
    CU_ASSERT_EQUAL(img->width, 0);
    CU_ASSERT_PTR_NULL(img->content_hash);
    qf_free(img);

    /* listing */
    walk w = { 0, 0, 1 };
    CU_ASSERT_EQUAL(qf_store_image_foreach(st, -1, count_images, &w), QF_OK);
    CU_ASSERT_EQUAL(w.n, 3);
    CU_ASSERT(w.ordered);
    w = (walk){ 0, 0, 1 };
    CU_ASSERT_EQUAL(qf_store_image_foreach(st, QF_IMAGE_PENDING, count_images, &w), QF_OK);
    CU_ASSERT_EQUAL(w.n, 2);
    w = (walk){ 0, 0, 1 };
    CU_ASSERT_EQUAL(qf_store_image_foreach(st, -1, stop_at_two, &w), QF_ERR_ARG);
    CU_ASSERT_EQUAL(w.n, 2);
    CU_ASSERT_EQUAL(qf_store_image_foreach(st, 7, count_images, &w), QF_ERR_ARG);
    int64_t *ids = NULL, n = 0;
    CU_ASSERT_EQUAL(qf_store_image_ids(st, -1, &ids, &n), QF_OK);
    CU_ASSERT_EQUAL(n, 3);
    if (n == 3) CU_ASSERT(ids[0] == a && ids[1] == b && ids[2] == c);
    qf_free(ids);
    CU_ASSERT_EQUAL(qf_store_image_ids(st, QF_IMAGE_OK, &ids, &n), QF_OK);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_PTR_NULL(ids);

    /* delete; ids are never reused, even the largest */
    CU_ASSERT_EQUAL(qf_store_image_delete(st, c), QF_OK);
    CU_ASSERT_EQUAL(qf_store_image_delete(st, c), QF_OK);
    CU_ASSERT_EQUAL(qf_store_image_get(st, c, &img), QF_OK);
    CU_ASSERT_PTR_NULL(img);
    int64_t d = 0;
    CU_ASSERT_EQUAL(qf_store_image_upsert(st, "/p/d.jpg", 5, 5, NULL, &d), QF_OK);
    CU_ASSERT(d > c);
    CU_ASSERT_EQUAL(qf_store_integrity_check(st), QF_OK);
    qf_store_close(st);
}

static void test_meta_and_captions(void) {
    qf_store *st = open_ok(db_path("captions.db"), 0);
    char *v = (char *)1;
    CU_ASSERT_EQUAL(qf_store_meta_get(st, "dim", &v), QF_OK);
    CU_ASSERT_PTR_NULL(v);
    CU_ASSERT_EQUAL(qf_store_meta_set(st, "dim", "256"), QF_OK);
    CU_ASSERT_EQUAL(qf_store_meta_set(st, "dim", "768"), QF_OK);
    CU_ASSERT_EQUAL(qf_store_meta_get(st, "dim", &v), QF_OK);
    CU_ASSERT_STRING_EQUAL(v ? v : "", "768");
    qf_free(v);

    int64_t id = 0;
    CU_ASSERT_EQUAL(qf_store_image_upsert(st, "/c/1.jpg", 1, 1, "h1", &id), QF_OK);
    char *text = NULL, *json = NULL;
    CU_ASSERT_EQUAL(qf_store_caption_get(st, id, "fp", "", "greedy", &text, &json), QF_OK);
    CU_ASSERT_PTR_NULL(text);
    CU_ASSERT_PTR_NULL(json);
    CU_ASSERT_EQUAL(qf_store_caption_put(st, id, "fp", "", "greedy", "a cat", "[64,4758,2]"), QF_OK);
    CU_ASSERT_EQUAL(qf_store_caption_put(st, id, "fp", "", "beam=3", "a small cat", "[64,650,4758]"), QF_OK);
    CU_ASSERT_EQUAL(qf_store_caption_put(st, id, "fp", "", "greedy", "a grey cat", "[64,9,4758]"), QF_OK);
    CU_ASSERT_EQUAL(qf_store_caption_get(st, id, "fp", "", "greedy", &text, &json), QF_OK);
    CU_ASSERT_STRING_EQUAL(text ? text : "", "a grey cat");
    CU_ASSERT_STRING_EQUAL(json ? json : "", "[64,9,4758]");
    qf_free(text); qf_free(json);
    CU_ASSERT_EQUAL(qf_store_caption_get(st, id, "fp", "", "beam=3", &text, NULL), QF_OK);
    CU_ASSERT_STRING_EQUAL(text ? text : "", "a small cat");
    qf_free(text);
    CU_ASSERT_EQUAL(qf_store_caption_get(st, id, "other-model", "", "greedy", &text, NULL), QF_OK);
    CU_ASSERT_PTR_NULL(text);
    /* captions need their image */
    CU_ASSERT_EQUAL(qf_store_caption_put(st, 424242, "fp", "", "greedy", "x", "[]"), QF_ERR_DB);

    /* same content (hash) re-registered: captions stay; new content: they go */
    CU_ASSERT_EQUAL(qf_store_image_upsert(st, "/c/1.jpg", 1, 2, "h1", &id), QF_OK);
    CU_ASSERT_EQUAL(qf_store_caption_get(st, id, "fp", "", "greedy", &text, NULL), QF_OK);
    CU_ASSERT_PTR_NOT_NULL(text);
    qf_free(text);
    CU_ASSERT_EQUAL(qf_store_image_upsert(st, "/c/1.jpg", 2, 3, "h2", &id), QF_OK);
    CU_ASSERT_EQUAL(qf_store_caption_get(st, id, "fp", "", "greedy", &text, NULL), QF_OK);
    CU_ASSERT_PTR_NULL(text);
    /* deleting the image deletes its captions */
    CU_ASSERT_EQUAL(qf_store_caption_put(st, id, "fp", "", "greedy", "a cat", "[]"), QF_OK);
    CU_ASSERT_EQUAL(qf_store_image_delete(st, id), QF_OK);
    CU_ASSERT_EQUAL(qf_store_integrity_check(st), QF_OK);
    qf_store_close(st);
    CU_ASSERT_STRING_EQUAL(raw_sql(db_path("captions.db"), "SELECT count(*) FROM captions"), "0");
}

static void test_vision_cache(void) {
    qf_store *st = open_ok(db_path("vision.db"), 0);
    int64_t id = 0;
    CU_ASSERT_EQUAL(qf_store_image_upsert(st, "/v/1.jpg", 1, 1, "h1", &id), QF_OK);
    const int n_tok = 257, dim = 48;
    float *x = malloc(n_tok * dim * sizeof *x);
    unsigned seed = 12345;
    for (int i = 0; i < n_tok * dim; i++) {
        seed = seed * 1103515245u + 12345u;
        double u = ((seed >> 8) & 0xffff) / 65536.0;          /* [0, 1) */
        double mag = pow(10.0, -3.0 + 7.0 * u);                /* 1e-3 .. 1e4 */
        x[i] = (float)((seed & 1) ? -mag : mag);
    }
    x[0] = 0.0f; x[1] = 65504.0f; x[2] = -1.0f; x[3] = 0.33333334f;
    CU_ASSERT_EQUAL(qf_store_vision_put(st, id, n_tok, dim, x), QF_OK);
    float *back = NULL;
    int nt = 0, d = 0;
    CU_ASSERT_EQUAL(qf_store_vision_get(st, id, &back, &nt, &d), QF_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(back);
    CU_ASSERT_EQUAL(nt, n_tok);
    CU_ASSERT_EQUAL(d, dim);
    QF_ASSERT_CLOSE(back, x, (size_t)n_tok * dim, 0.0, 1e-3, "f16 round trip");
    CU_ASSERT_EQUAL(back[0], 0.0f);
    CU_ASSERT_EQUAL(back[1], 65504.0f);
    CU_ASSERT_EQUAL(back[2], -1.0f);
    qf_free(back);

    /* edge values: rounding to even, overflow, subnormals */
    float edge[6] = { 1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, 70000.0f, -1e-6f, 5.9604645e-8f, 1e-9f };
    CU_ASSERT_EQUAL(qf_store_vision_put(st, id, 1, 6, edge), QF_OK);     /* replaces */
    CU_ASSERT_EQUAL(qf_store_vision_get(st, id, &back, &nt, &d), QF_OK);
    CU_ASSERT_EQUAL(nt * d, 6);
    if (back) {
        CU_ASSERT_EQUAL(back[0], 1.0f);                      /* tie -> even mantissa */
        CU_ASSERT_EQUAL(back[1], 1.0f + 4.0f / 2048);        /* tie -> even, upwards */
        CU_ASSERT(isinf(back[2]) && back[2] > 0);
        CU_ASSERT(fabsf(back[3] + 1e-6f) < 6e-8f);           /* subnormal half */
        CU_ASSERT_EQUAL(back[4], 5.9604645e-8f);             /* smallest subnormal, 2^-24 */
        CU_ASSERT_EQUAL(back[5], 0.0f);
    }
    qf_free(back);

    /* absent, bad shape, content change drops it */
    CU_ASSERT_EQUAL(qf_store_vision_get(st, id + 1, &back, &nt, &d), QF_OK);
    CU_ASSERT_PTR_NULL(back);
    CU_ASSERT_EQUAL(qf_store_vision_put(st, id, 0, 6, edge), QF_ERR_ARG);
    CU_ASSERT_EQUAL(qf_store_image_upsert(st, "/v/1.jpg", 1, 9, "h1-changed", &id), QF_OK);
    CU_ASSERT_EQUAL(qf_store_vision_get(st, id, &back, &nt, &d), QF_OK);
    CU_ASSERT_PTR_NULL(back);
    free(x);
    qf_store_close(st);
}

static void test_integrity(void) {
    const char *path = db_path("integrity.db");
    qf_store *st = open_ok(path, 0);
    CU_ASSERT_EQUAL(qf_store_integrity_check(st), QF_OK);
    qf_store_close(st);
    /* a row written behind the store's back with foreign keys off */
    raw_sql(path, "INSERT INTO captions VALUES (77, 'fp', '', 'greedy', 'orphan', '[]')");
    st = open_ok(path, 0);
    CU_ASSERT_EQUAL(qf_store_integrity_check(st), QF_ERR_DB);
    CU_ASSERT(strstr(qf_last_error(), "captions") != NULL);
    qf_store_close(st);
}

static void test_transactions(void) {
    qf_store *st = open_ok(db_path("tx.db"), 0);
    int64_t id = 0;
    qf_store_image *img = NULL;
    CU_ASSERT_EQUAL(qf_store_begin(st), QF_OK);
    CU_ASSERT_EQUAL(qf_store_image_upsert(st, "/t/1.jpg", 1, 1, NULL, &id), QF_OK);
    CU_ASSERT_EQUAL(qf_store_rollback(st), QF_OK);
    CU_ASSERT_EQUAL(qf_store_image_lookup(st, "/t/1.jpg", &img), QF_OK);
    CU_ASSERT_PTR_NULL(img);
    CU_ASSERT_EQUAL(qf_store_rollback(st), QF_OK);             /* no-op outside */
    CU_ASSERT_EQUAL(qf_store_begin(st), QF_OK);
    CU_ASSERT_EQUAL(qf_store_image_upsert(st, "/t/1.jpg", 1, 1, NULL, &id), QF_OK);
    CU_ASSERT_EQUAL(qf_store_checkpoint(st), QF_ERR_ARG);      /* not inside a transaction */
    CU_ASSERT_EQUAL(qf_store_commit(st), QF_OK);
    CU_ASSERT_EQUAL(qf_store_checkpoint(st), QF_OK);
    CU_ASSERT_EQUAL(qf_store_schema_version(st), qf_store_binary_schema_version());
    qf_store_close(st);
    st = open_ok(db_path("tx.db"), QF_STORE_READONLY);
    CU_ASSERT_EQUAL(qf_store_image_lookup(st, "/t/1.jpg", &img), QF_OK);
    CU_ASSERT_PTR_NOT_NULL(img);
    qf_free(img);
    qf_store_close(st);
    qf_store_close(NULL);
}

typedef struct { int n; int64_t ids[8]; float first[8]; } feats_walk;

static qf_status collect_feats(int64_t id, const float *feats, void *user) {
    feats_walk *w = user;
    if (w->n < 8) { w->ids[w->n] = id; w->first[w->n] = feats[0]; }
    w->n++;
    return QF_OK;
}

static void test_feats_and_hash(void) {
    qf_store *st = open_ok(db_path("feats.db"), 0);
    const int Q = 4, E = 6;
    float f[3][24], out[24];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < Q * E; j++) f[i][j] = (float)(i * 100 + j) / 7.0f;
    int64_t id[3];
    const char *paths[3] = { "/f/0.jpg", "/f/1.jpg", "/f/2.jpg" };
    CU_ASSERT_EQUAL(qf_store_begin(st), QF_OK);
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(qf_store_image_upsert(st, paths[i], 10, 10, NULL, &id[i]), QF_OK);
        CU_ASSERT_EQUAL(qf_store_feats_put(st, id[i], Q, E, f[i]), QF_OK);
        CU_ASSERT_EQUAL(qf_store_image_mark_ok(st, id[i], 8, 8), QF_OK);
    }
    CU_ASSERT_EQUAL(qf_store_commit(st), QF_OK);
    CU_ASSERT_EQUAL(qf_store_feats_get(st, id[1], Q, E, out), QF_OK);
    CU_ASSERT_EQUAL(memcmp(out, f[1], sizeof out), 0);                /* bit exact */
    CU_ASSERT_EQUAL(qf_store_feats_get(st, id[1], E, Q, out), QF_ERR_SHAPE);
    CU_ASSERT_EQUAL(qf_store_feats_get(st, 999, Q, E, out), QF_ERR_MISSING);
    CU_ASSERT_EQUAL(qf_store_feats_put(st, id[1], 0, E, out), QF_ERR_ARG);

    feats_walk w = { 0 };
    CU_ASSERT_EQUAL(qf_store_feats_foreach(st, collect_feats, &w), QF_OK);
    CU_ASSERT_EQUAL(w.n, 3);
    CU_ASSERT(w.ids[0] == id[0] && w.ids[1] == id[1] && w.ids[2] == id[2]);
    CU_ASSERT_EQUAL(w.first[2], f[2][0]);

    /* recording the hash of an embedded image keeps its features and caches */
    float vis[4] = { 1, 2, 3, 4 }, *vb = NULL;
    int nt, d;
    CU_ASSERT_EQUAL(qf_store_vision_put(st, id[0], 2, 2, vis), QF_OK);
    CU_ASSERT_EQUAL(qf_store_image_set_hash(st, id[0], "abc123"), QF_OK);
    CU_ASSERT_EQUAL(qf_store_image_set_hash(st, 999, "abc123"), QF_ERR_ARG);
    CU_ASSERT_EQUAL(qf_store_vision_get(st, id[0], &vb, &nt, &d), QF_OK);
    CU_ASSERT_PTR_NOT_NULL(vb);
    qf_free(vb);
    CU_ASSERT_EQUAL(qf_store_feats_get(st, id[0], Q, E, out), QF_OK);
    qf_store_image *img = NULL;
    CU_ASSERT_EQUAL(qf_store_image_get(st, id[0], &img), QF_OK);
    CU_ASSERT_STRING_EQUAL(img ? img->content_hash : "", "abc123");
    qf_free(img);

    /* re-registered (changed file) or failed: the features go */
    CU_ASSERT_EQUAL(qf_store_image_upsert(st, paths[1], 11, 12, NULL, &id[1]), QF_OK);
    CU_ASSERT_EQUAL(qf_store_feats_get(st, id[1], Q, E, out), QF_ERR_MISSING);
    CU_ASSERT_EQUAL(qf_store_image_mark_error(st, id[2], 0, 0, "bad"), QF_OK);
    w.n = 0;
    CU_ASSERT_EQUAL(qf_store_feats_foreach(st, collect_feats, &w), QF_OK);
    CU_ASSERT_EQUAL(w.n, 1);
    CU_ASSERT_EQUAL(w.ids[0], id[0]);
    CU_ASSERT_EQUAL(qf_store_image_delete(st, id[0]), QF_OK);
    CU_ASSERT_EQUAL(qf_store_integrity_check(st), QF_OK);
    qf_store_close(st);
    CU_ASSERT_STRING_EQUAL(raw_sql(db_path("feats.db"), "SELECT count(*) FROM image_feats"), "0");

    /* a read-only store reads in one snapshot transaction */
    st = open_ok(db_path("feats.db"), QF_STORE_READONLY);
    CU_ASSERT_EQUAL(qf_store_begin(st), QF_OK);
    int64_t counts[QF_IMAGE_STATUS_COUNT];
    CU_ASSERT_EQUAL(qf_store_image_counts(st, counts), QF_OK);
    CU_ASSERT_EQUAL(counts[QF_IMAGE_PENDING] + counts[QF_IMAGE_ERROR], 2);
    CU_ASSERT_EQUAL(qf_store_rollback(st), QF_OK);
    qf_store_close(st);
}

/* Read-ahead is a hint: with it, get_many reads the same bits, missing ids
 * included, in a write transaction too (its readers see the last commit). */
static void test_prefetch(void) {
    enum { N = 80, Q = 4, E = 8 };
    qf_store *st = open_ok(db_path("prefetch.db"), 0);
    static float f[N][Q * E], out[N + 4][Q * E];
    int64_t id[N + 4];
    int found[N + 4];
    CU_ASSERT_EQUAL(qf_store_begin(st), QF_OK);
    for (int i = 0; i < N; i++) {
        char path[32];
        snprintf(path, sizeof path, "/p/%d.jpg", i);
        for (int j = 0; j < Q * E; j++) f[i][j] = (float)(i * 1000 + j) / 3.0f;
        CU_ASSERT_EQUAL(qf_store_image_upsert(st, path, 10, 10, NULL, &id[i]), QF_OK);
        CU_ASSERT_EQUAL(qf_store_feats_put(st, id[i], Q, E, f[i]), QF_OK);
        CU_ASSERT_EQUAL(qf_store_image_mark_ok(st, id[i], 8, 8), QF_OK);
    }
    CU_ASSERT_EQUAL(qf_store_commit(st), QF_OK);
    for (int i = N; i < N + 4; i++) id[i] = 100000 + i;          /* not stored */
    for (int pass = 0; pass < 2; pass++) {
        if (pass) CU_ASSERT_EQUAL(qf_store_begin(st), QF_OK);    /* inside a write transaction */
        qf_store_prefetch *pf = qf_store_feats_prefetch(st, N + 4, id);
        CU_ASSERT_PTR_NOT_NULL(pf);
        memset(out, 0, sizeof out);
        CU_ASSERT_EQUAL(qf_store_feats_get_many(st, N + 4, id, Q, E, &out[0][0], found), QF_OK);
        qf_store_prefetch_end(pf);
        int same = 1;
        for (int i = 0; i < N; i++) same &= found[i] && memcmp(out[i], f[i], sizeof f[i]) == 0;
        for (int i = N; i < N + 4; i++) same &= !found[i];
        CU_ASSERT(same);
        if (pass) CU_ASSERT_EQUAL(qf_store_commit(st), QF_OK);
    }
    qf_store_prefetch_end(NULL);
    CU_ASSERT_PTR_NULL(qf_store_feats_prefetch(st, 1, id));        /* nothing to overlap */
    qf_store_close(st);
}

/* Child: takes the lock, tells the parent, then dies as `how` says. */
static pid_t lock_in_child(const char *path, int how) {
    int fds[2];
    CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        qf_store *st = NULL;
        char ok = qf_store_open(path, QF_STORE_LOCK, &st) == QF_OK ? 'y' : 'n';
        if (write(fds[1], &ok, 1) != 1) _exit(3);
        if (how == 0) _exit(0);               /* exits without closing the store */
        for (;;) pause();                     /* waits for SIGKILL */
    }
    close(fds[1]);
    char ok = 0;
    CU_ASSERT_EQUAL(read(fds[0], &ok, 1), 1);
    CU_ASSERT_EQUAL(ok, 'y');
    close(fds[0]);
    return pid;
}

static void test_lock(void) {
    const char *path = db_path("lock.db");
    qf_store *a = open_ok(path, QF_STORE_LOCK), *b = NULL;
    CU_ASSERT_EQUAL(qf_store_open(path, QF_STORE_LOCK, &b), QF_ERR_BUSY);
    CU_ASSERT_PTR_NULL(b);
    char pid[32];
    snprintf(pid, sizeof pid, "pid %ld", (long)getpid());
    CU_ASSERT(strstr(qf_last_error(), pid) != NULL);
    /* readers are not blocked by the indexer lock */
    b = open_ok(path, 0);
    qf_store_close(b);
    qf_store_close(a);
    a = open_ok(path, QF_STORE_LOCK);           /* released on close */
    qf_store_close(a);

    /* holder exits without closing: the kernel drops the lock */
    pid_t child = lock_in_child(path, 0);
    int status = 0;
    CU_ASSERT_EQUAL(waitpid(child, &status, 0), child);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    a = open_ok(path, QF_STORE_LOCK);
    qf_store_close(a);

    /* holder alive: refused; holder SIGKILLed: free again */
    child = lock_in_child(path, 1);
    CU_ASSERT_EQUAL(qf_store_open(path, QF_STORE_LOCK, &b), QF_ERR_BUSY);
    snprintf(pid, sizeof pid, "pid %ld", (long)child);
    CU_ASSERT(strstr(qf_last_error(), pid) != NULL);
    kill(child, SIGKILL);
    CU_ASSERT_EQUAL(waitpid(child, &status, 0), child);
    CU_ASSERT(WIFSIGNALED(status));
    a = open_ok(path, QF_STORE_LOCK);
    CU_ASSERT_EQUAL(qf_store_integrity_check(a), QF_OK);
    qf_store_close(a);
}

static void test_hash(void) {
    const char *path = db_path("hashme.bin");
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    static unsigned char data[3 << 20];                  /* several read chunks */
    for (size_t i = 0; i < sizeof data; i++) data[i] = (unsigned char)(i * 31 + (i >> 13));
    CU_ASSERT_EQUAL(fwrite(data, 1, sizeof data, f), sizeof data);
    fclose(f);

    char hex[65] = "", hex2[65] = "", want[65] = "";
    CU_ASSERT_EQUAL(qf_sha256_file(path, hex), QF_OK);
    CU_ASSERT_EQUAL(qf_sha256_hex(data, sizeof data, hex2), QF_OK);
    CU_ASSERT_STRING_EQUAL(hex, hex2);
    /* coreutils as the independent reference */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "sha256sum '%s'", path);
    FILE *p = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(fscanf(p, "%64s", want), 1);
    pclose(p);
    CU_ASSERT_STRING_EQUAL(hex, want);
    CU_ASSERT_EQUAL(strlen(hex), 64);

    const char *empty = db_path("empty.bin");
    f = fopen(empty, "wb");
    fclose(f);
    snprintf(cmd, sizeof cmd, "sha256sum '%s'", empty);
    p = popen(cmd, "r");
    CU_ASSERT_EQUAL(fscanf(p, "%64s", want), 1);
    pclose(p);
    CU_ASSERT_EQUAL(qf_sha256_hex("", 0, hex), QF_OK);
    CU_ASSERT_STRING_EQUAL(hex, want);
    CU_ASSERT_EQUAL(qf_sha256_file(empty, hex2), QF_OK);
    CU_ASSERT_STRING_EQUAL(hex2, want);

    CU_ASSERT_EQUAL(qf_sha256_file(db_path("nope.bin"), hex), QF_ERR_IO);
    CU_ASSERT(strstr(qf_last_error(), "nope.bin") != NULL);
}

static void test_alloc_failures(void) {
    /* open walks its error paths without leaking or crashing */
    int n_ok = 0, n_fail = 0;
    for (long fail = 0; fail < 4; fail++) {
        qf_store *st = NULL;
        qf_alloc_fail_after(fail);
        qf_status s = qf_store_open(db_path("nomem.db"), 0, &st);
        qf_alloc_fail_after(-1);
        if (s == QF_OK) { n_ok++; qf_store_close(st); }
        else { n_fail++; CU_ASSERT_EQUAL(s, QF_ERR_NOMEM); CU_ASSERT_PTR_NULL(st); }
    }
    CU_ASSERT(n_fail >= 2);
    CU_ASSERT(n_ok >= 1);
}

static CU_TestInfo tests[] = {
    { "schema_create_and_reopen", test_schema_create_and_reopen },
    { "migrate_and_refuse", test_migrate_and_refuse },
    { "images", test_images },
    { "meta_and_captions", test_meta_and_captions },
    { "vision_cache", test_vision_cache },
    { "integrity", test_integrity },
    { "transactions", test_transactions },
    { "feats_and_hash", test_feats_and_hash },
    { "prefetch", test_prefetch },
    { "lock", test_lock },
    { "hash", test_hash },
    { "alloc_failures", test_alloc_failures },
    CU_TEST_INFO_NULL,
};

int main(void) { return qf_test_main("store", tests); }
