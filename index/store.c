/* store.c - the SQLite metadata store; the only file that calls SQLite, so
 * every SQLite error is translated here (QF_ERR_DB, or QF_ERR_BUSY for a
 * locked database).
 *
 * Invariants: a store opened read-write has user_version ==
 * qf_schema_version and runs in WAL mode; the indexer lock is an flock on
 * "<db>.lock", which the kernel drops with the process, so it never goes
 * stale. Half floats of the vision cache are little-endian IEEE binary16. */
#include "index/store.h"

#include "embed/kernels_cpu.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Generated from schema/NNN_*.sql by schema/embed_sql.cmake: migration i
 * brings user_version i to i + 1. */
extern const char *const qf_schema_migrations[];
extern const int qf_schema_version;

/* Read-ahead connections (qf_store_feats_prefetch): opened on first use,
 * kept until the store closes, each used by one reader thread at a time. */
#ifndef QF_PREFETCH_THREADS
#define QF_PREFETCH_THREADS 8
#endif
typedef struct {
    sqlite3      *db;
    sqlite3_stmt *s;
    int           f16;      /* the table `s` reads */
} prefetch_conn;

struct qf_store {
    sqlite3 *db;
    char    *path;
    int      lock_fd;     /* -1 when the indexer lock is not held */
    int      lock_made;   /* this open created the lock file (removed if the open fails) */
    int      readonly;
    int      feats_f16;   /* ITC features in image_feats_f16 (meta store_dtype 'f16') */
    char    *open_name;   /* what sqlite3_open_v2 was given (path or URI), */
    int      open_flags;  /* and how: read-ahead connections open the same */
    prefetch_conn pf_conn[QF_PREFETCH_THREADS];
};

static void prefetch_conn_close(prefetch_conn *c) {
    sqlite3_finalize(c->s);
    sqlite3_close_v2(c->db);
    *c = (prefetch_conn){ 0 };
}

/* ---- SQLite error text --------------------------------------------------------- */

static qf_status db_err(const qf_store *st, int rc, const char *what) {
    int prim = rc & 0xff;
    qf_status s = (prim == SQLITE_BUSY || prim == SQLITE_LOCKED) ? QF_ERR_BUSY
                : (prim == SQLITE_NOMEM) ? QF_ERR_NOMEM : QF_ERR_DB;
    const char *msg = st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc);
    if (s == QF_ERR_BUSY)
        return qf_errorf(s, "%s: %s: database is busy (another process holds a write lock): %s",
                         st->path, what, msg);
    return qf_errorf(s, "%s: %s: %s", st->path, what, msg);
}

static qf_status exec(qf_store *st, const char *sql, const char *what) {
    char *err = NULL;
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, &err);
    if (rc == SQLITE_OK) return QF_OK;
    int prim = rc & 0xff;
    qf_status s = (prim == SQLITE_BUSY || prim == SQLITE_LOCKED) ? QF_ERR_BUSY : QF_ERR_DB;
    s = qf_errorf(s, "%s: %s: %s", st->path, what, err ? err : sqlite3_errstr(rc));
    sqlite3_free(err);
    return s;
}

static qf_status prep(qf_store *st, const char *sql, sqlite3_stmt **out) {
    int rc = sqlite3_prepare_v2(st->db, sql, -1, out, NULL);
    if (rc != SQLITE_OK) {
        *out = NULL;
        return db_err(st, rc, "preparing a statement");
    }
    return QF_OK;
}

/* Binds inside a function with a `qf_status rc` and a `done:` label. */
#define BIND(call) do {                                                  \
        int b_ = (call);                                                 \
        if (b_ != SQLITE_OK) { rc = db_err(st, b_, "binding"); goto done; } \
    } while (0)

static int bind_opt_text(sqlite3_stmt *s, int i, const char *v) {
    return v ? sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(s, i);
}

/* Runs a statement that returns no rows. */
static qf_status step_done(qf_store *st, sqlite3_stmt *s, const char *what) {
    int r = sqlite3_step(s);
    return r == SQLITE_DONE ? QF_OK : db_err(st, r, what);
}

static int user_version(const qf_store *st, int *v) {
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) { *v = sqlite3_column_int(s, 0); rc = SQLITE_OK; }
    }
    sqlite3_finalize(s);
    return rc;
}

/* 1 if the database has no tables, views or indexes at all. */
static int is_empty(const qf_store *st) {
    sqlite3_stmt *s = NULL;
    int empty = 0;
    if (sqlite3_prepare_v2(st->db, "SELECT count(*) FROM sqlite_master", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        empty = sqlite3_column_int(s, 0) == 0;
    sqlite3_finalize(s);
    return empty;
}

/* PRAGMA application_id of every qformer database: "QFmr". Files made
 * before it was set (application_id 0) are recognised by their schema. */
#define QF_APPLICATION_ID 0x51466D72

static int pragma_int(const qf_store *st, const char *sql, int *v) {
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) { *v = sqlite3_column_int(s, 0); rc = SQLITE_OK; }
    }
    sqlite3_finalize(s);
    return rc;
}

/* 1 if the database has the tables of qformer's first schema. */
static int has_qformer_tables(const qf_store *st) {
    sqlite3_stmt *s = NULL;
    int n = 0;
    if (sqlite3_prepare_v2(st->db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                           "('images', 'meta', 'captions', 'vision_cache', 'image_feats')", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return n == 5;
}

/* Refuses another program's SQLite file before anything is written to it:
 * ours carry QF_APPLICATION_ID; an empty file is a new database; a file of
 * an earlier qformer (no application_id yet) has our schema. *mark: 1 when
 * the application_id must still be written (a read-write open). */
static qf_status check_application(qf_store *st, int *mark) {
    int app = 0, v = 0, r;
    *mark = 0;
    if ((r = pragma_int(st, "PRAGMA application_id", &app)) != SQLITE_OK ||
        (r = user_version(st, &v)) != SQLITE_OK)
        return db_err(st, r, "reading the database header");
    if (app == QF_APPLICATION_ID) return QF_OK;
    if (app == 0 && v == 0 && is_empty(st)) { *mark = 1; return QF_OK; }
    if (app == 0 && v >= 1 && has_qformer_tables(st)) { *mark = 1; return QF_OK; }
    return qf_errorf(QF_ERR_FORMAT, "%s is not a qformer database (an SQLite file of another program%s); "
                     "nothing was changed: give --db a new file name", st->path,
                     app ? ", by its application_id" : "");
}

/* ---- indexer lock -------------------------------------------------------------- */

static qf_status take_lock(qf_store *st) {
    char lock_path[4200], info[512], host[256] = "?";
    int n = snprintf(lock_path, sizeof lock_path, "%s.lock", st->path);
    if (n < 0 || (size_t)n >= sizeof lock_path) return qf_errorf(QF_ERR_IO, "%s: path too long", st->path);
    int fd = open(lock_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) st->lock_made = 1;
    else if (errno == EEXIST) fd = open(lock_path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return qf_errorf(QF_ERR_IO, "%s: cannot open lock file: %s", lock_path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        if (err == EWOULDBLOCK) {
            ssize_t got = pread(fd, info, sizeof info - 1, 0);
            info[got > 0 ? got : 0] = 0;
            info[strcspn(info, "\n")] = 0;
            close(fd);
            return qf_errorf(QF_ERR_BUSY, "%s: another `qformer index` is running on this database "
                             "(%s); wait for it to finish", st->path, *info ? info : "holder unknown");
        }
        close(fd);
        return qf_errorf(QF_ERR_IO, "%s: cannot lock: %s", lock_path, strerror(err));
    }
    /* Who holds it, for the message above; the flock itself is the lock. */
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    n = snprintf(info, sizeof info, "pid %ld on %s\n", (long)getpid(), host);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, info, (size_t)n, 0) != n) { /* informative only */ }
    st->lock_fd = fd;
    return QF_OK;
}

/* ---- open / close / migrate ----------------------------------------------------- */

static qf_status migrate(qf_store *st) {
    qf_status rc = QF_OK;
    int v = 0, r;
    if ((r = user_version(st, &v)) != SQLITE_OK) return db_err(st, r, "reading the schema version");
    if (v > qf_schema_version)
        return qf_errorf(QF_ERR_UNSUPPORTED, "%s: database schema version %d is newer than this "
                         "qformer's (%d); use a newer qformer", st->path, v, qf_schema_version);
    if (v == qf_schema_version) return QF_OK;
    /* No schema at all: a first `qformer index` run is creating the file
     * (or was killed doing so). "older schema, run index to upgrade" sent
     * readers of such a file the wrong way. */
    if (st->readonly && v == 0 && is_empty(st))
        return qf_errorf(QF_ERR_FORMAT, "%s: not a qformer index yet: the database is empty (is a first "
                         "`qformer index` run creating it?)", st->path);
    if (st->readonly)
        return qf_errorf(QF_ERR_UNSUPPORTED, "%s: database schema version %d is older than this "
                         "qformer's (%d); run `qformer index` on it once to upgrade",
                         st->path, v, qf_schema_version);
    if ((rc = exec(st, "BEGIN IMMEDIATE", "starting the schema migration")) != QF_OK) return rc;
    /* Re-read under the write lock: another process may have migrated. */
    if ((r = user_version(st, &v)) != SQLITE_OK) { rc = db_err(st, r, "reading the schema version"); goto fail; }
    if (v > qf_schema_version) {
        rc = qf_errorf(QF_ERR_UNSUPPORTED, "%s: database schema version %d is newer than this "
                       "qformer's (%d); use a newer qformer", st->path, v, qf_schema_version);
        goto fail;
    }
    for (; v < qf_schema_version; v++) {
        char what[64];
        snprintf(what, sizeof what, "schema migration %d -> %d", v, v + 1);
        if ((rc = exec(st, qf_schema_migrations[v], what)) != QF_OK) goto fail;
    }
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", qf_schema_version);
    if ((rc = exec(st, sql, "setting the schema version")) != QF_OK) goto fail;
    snprintf(sql, sizeof sql, "PRAGMA application_id = %d", QF_APPLICATION_ID);
    if ((rc = exec(st, sql, "marking the database as qformer's")) != QF_OK) goto fail;
    if ((rc = exec(st, "COMMIT", "committing the schema migration")) != QF_OK) goto fail;
    return QF_OK;
fail:
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* 1 when this process may write `path` (an existing file or not) and create
 * files beside it (the -wal, -shm and lock files). Effective ids: root may
 * write a chmod-ed folder, `nobody` may not, a read-only mount refuses all. */
static int can_write(const char *path, int file_too) {
    char dir[4200];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (faccessat(AT_FDCWD, dir, W_OK, AT_EACCESS) != 0) return 0;
    return !file_too || faccessat(AT_FDCWD, path, W_OK, AT_EACCESS) == 0;
}

static int file_exists(const char *path, const char *suffix) {
    char p[4200];
    snprintf(p, sizeof p, "%s%s", path, suffix);
    return access(p, F_OK) == 0;
}

/* "file:///abs/path?immutable=1" with '%', '?' and '#' escaped, or NULL. */
static char *immutable_uri(const char *path) {
    char *abs = realpath(path, NULL);
    if (!abs) return NULL;
    size_t n = strlen(abs);
    char *uri = qf_malloc(3 * n + 32);
    if (uri) {
        char *o = uri + sprintf(uri, "file://");
        for (const char *p = abs; *p; p++) {
            if (*p == '%' || *p == '?' || *p == '#') o += sprintf(o, "%%%02X", (unsigned char)*p);
            else *o++ = *p;
        }
        strcpy(o, "?immutable=1");
    }
    free(abs);
    return uri;
}

int qf_store_is_readonly(const qf_store *st) { return st->readonly; }

qf_status qf_store_open(const char *path, unsigned flags, qf_store **out) {
    qf_status rc = QF_OK;
    *out = NULL;
    if ((flags & QF_STORE_READONLY) && (flags & QF_STORE_LOCK))
        return qf_errorf(QF_ERR_ARG, "%s: the indexer lock needs a read-write store", path);
    qf_store *st = qf_calloc(1, sizeof *st);
    if (!st) return qf_errorf(QF_ERR_NOMEM, "%s: out of memory", path);
    st->lock_fd = -1;
    st->readonly = (flags & QF_STORE_READONLY) != 0;
    if ((flags & QF_STORE_IF_WRITABLE) && !(flags & QF_STORE_LOCK) && access(path, F_OK) == 0 && !can_write(path, 1))
        st->readonly = 1;
    if (!(st->path = qf_strdup(path))) { rc = qf_errorf(QF_ERR_NOMEM, "%s: out of memory", path); goto fail; }

    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        rc = qf_errorf(QF_ERR_ARG, "%s is a folder; --db takes the database file, e.g. %s/index.db", path, path);
        goto fail;
    }
    if ((flags & QF_STORE_LOCK) && (rc = take_lock(st)) != QF_OK) goto fail;
    if (st->readonly && access(path, R_OK) != 0) {
        rc = qf_errorf(QF_ERR_IO, "%s: cannot open database: %s", path, strerror(errno));
        goto fail;
    }
    int oflags = st->readonly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    /* Read-only in a folder we cannot write: SQLite cannot create the -shm
     * file a WAL database needs ("attempt to write a readonly database");
     * without -wal and -shm there is nothing but the file to read. */
    char *uri = NULL;
    if (st->readonly && !can_write(path, 0) && !(file_exists(path, "-wal") && file_exists(path, "-shm"))) {
        if (!(uri = immutable_uri(path))) {
            rc = qf_errorf(QF_ERR_IO, "%s: cannot open database: %s", path, strerror(errno));
            goto fail;
        }
        oflags |= SQLITE_OPEN_URI;
    }
    int r = sqlite3_open_v2(uri ? uri : path, &st->db, oflags, NULL);
    st->open_name = uri ? uri : qf_strdup(path);
    st->open_flags = oflags;
    if (r != SQLITE_OK) { rc = db_err(st, r, "cannot open database"); goto fail; }
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, 5000);
    /* The first statement reads the header: "file is not a database" shows here. */
    if ((rc = exec(st, "PRAGMA foreign_keys = ON", "opening")) != QF_OK) goto fail;
    int mark = 0;
    if ((rc = check_application(st, &mark)) != QF_OK) goto fail;
    if (!st->readonly) {
        if ((rc = exec(st, "PRAGMA journal_mode = WAL", "enabling WAL")) != QF_OK) goto fail;
        if ((rc = exec(st, "PRAGMA synchronous = NORMAL", "setting synchronous")) != QF_OK) goto fail;
    }
    if ((rc = migrate(st)) != QF_OK) goto fail;
    int app = 0;
    if (mark && !st->readonly && pragma_int(st, "PRAGMA application_id", &app) == SQLITE_OK &&
        app != QF_APPLICATION_ID) {   /* a file of an earlier qformer, already at our version */
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA application_id = %d", QF_APPLICATION_ID);
        if ((rc = exec(st, sql, "marking the database as qformer's")) != QF_OK) goto fail;
    }
    char *dt = NULL;
    if (qf_store_meta_get(st, "store_dtype", &dt) == QF_OK && dt) st->feats_f16 = !strcmp(dt, "f16");
    qf_free(dt);
    qf_error_clear();
    *out = st;
    return QF_OK;
fail:
    if (st->lock_made && st->lock_fd >= 0) {   /* a refused --db keeps no stray lock file */
        char lock_path[4200];
        snprintf(lock_path, sizeof lock_path, "%s.lock", st->path);
        unlink(lock_path);
    }
    qf_store_close(st);
    return rc;
}

void qf_store_close(qf_store *st) {
    if (!st) return;
    for (int t = 0; t < QF_PREFETCH_THREADS; t++) prefetch_conn_close(&st->pf_conn[t]);
    if (st->db) sqlite3_close_v2(st->db);
    if (st->lock_fd >= 0) close(st->lock_fd);     /* drops the flock */
    qf_free(st->open_name);
    qf_free(st->path);
    qf_free(st);
}

int qf_store_schema_version(const qf_store *st) {
    int v = -1;
    user_version(st, &v);
    return v;
}

int qf_store_binary_schema_version(void) { return qf_schema_version; }

/* ---- transactions ------------------------------------------------------------------ */

qf_status qf_store_begin(qf_store *st) {
    return exec(st, st->readonly ? "BEGIN" : "BEGIN IMMEDIATE", "begin transaction");
}
qf_status qf_store_commit(qf_store *st) { return exec(st, "COMMIT", "commit"); }

qf_status qf_store_rollback(qf_store *st) {
    if (sqlite3_get_autocommit(st->db)) return QF_OK;
    return exec(st, "ROLLBACK", "rollback");
}

qf_status qf_store_checkpoint(qf_store *st) {
    qf_status rc;
    int v = 0, r;
    char sql[64];
    if (!sqlite3_get_autocommit(st->db))
        return qf_errorf(QF_ERR_ARG, "%s: checkpoint inside a transaction", st->path);
    if ((r = user_version(st, &v)) != SQLITE_OK) return db_err(st, r, "checkpoint");
    /* One commit under synchronous=FULL fsyncs the WAL, which makes every
     * earlier commit durable too; rewriting user_version (same value) is
     * the smallest write that produces a WAL frame. The passive checkpoint
     * then folds the WAL into the database without waiting for readers. */
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v);
    if ((rc = exec(st, "PRAGMA synchronous = FULL", "checkpoint")) != QF_OK) return rc;
    if ((rc = exec(st, "BEGIN IMMEDIATE", "checkpoint")) == QF_OK) {
        rc = exec(st, sql, "checkpoint");
        if (rc == QF_OK) rc = exec(st, "COMMIT", "checkpoint");
        else sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    }
    qf_status rc2 = exec(st, "PRAGMA synchronous = NORMAL", "checkpoint");
    if (rc != QF_OK) return rc;
    if (rc2 != QF_OK) return rc2;
    r = sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    return r == SQLITE_OK ? QF_OK : db_err(st, r, "checkpoint");
}

/* ---- meta ------------------------------------------------------------------------------- */

static qf_status dup_column(qf_store *st, sqlite3_stmt *s, int col, char **out) {
    const unsigned char *t = sqlite3_column_text(s, col);
    *out = NULL;
    if (!t) return QF_OK;
    if (!(*out = qf_strdup((const char *)t))) return qf_errorf(QF_ERR_NOMEM, "%s: out of memory", st->path);
    return QF_OK;
}

qf_status qf_store_meta_get(qf_store *st, const char *key, char **value) {
    sqlite3_stmt *s = NULL;
    qf_status rc;
    *value = NULL;
    if ((rc = prep(st, "SELECT value FROM meta WHERE key = ?1", &s)) != QF_OK) return rc;
    BIND(sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC));
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW) rc = dup_column(st, s, 0, value);
    else if (r != SQLITE_DONE) rc = db_err(st, r, "reading meta");
done:
    sqlite3_finalize(s);
    return rc;
}

qf_status qf_store_meta_set(qf_store *st, const char *key, const char *value) {
    sqlite3_stmt *s = NULL;
    qf_status rc;
    if ((rc = prep(st, "INSERT INTO meta(key, value) VALUES (?1, ?2) "
                       "ON CONFLICT(key) DO UPDATE SET value = excluded.value", &s)) != QF_OK)
        return rc;
    BIND(sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC));
    BIND(sqlite3_bind_text(s, 2, value, -1, SQLITE_STATIC));
    rc = step_done(st, s, "writing meta");
done:
    sqlite3_finalize(s);
    return rc;
}

/* ---- images --------------------------------------------------------------------------- */

static const char *const status_names[QF_IMAGE_STATUS_COUNT] = { "pending", "ok", "error" };

const char *qf_image_status_str(qf_image_status s) {
    return (unsigned)s < QF_IMAGE_STATUS_COUNT ? status_names[s] : "?";
}

static qf_image_status status_parse(const unsigned char *t) {
    for (int i = 0; i < QF_IMAGE_STATUS_COUNT; i++)
        if (t && strcmp((const char *)t, status_names[i]) == 0) return (qf_image_status)i;
    return QF_IMAGE_ERROR;   /* unreachable: the schema CHECKs the column */
}

#define IMAGE_COLUMNS "id, path, size, mtime_ns, content_hash, width, height, status, error, " \
                      "COALESCE(indexed_at, 0)"

/* Fills `img` from a row of IMAGE_COLUMNS; strings borrowed from the statement. */
static void image_from_row(sqlite3_stmt *s, qf_store_image *img) {
    img->id           = sqlite3_column_int64(s, 0);
    img->path         = (const char *)sqlite3_column_text(s, 1);
    img->size         = sqlite3_column_int64(s, 2);
    img->mtime_ns     = sqlite3_column_int64(s, 3);
    img->content_hash = (const char *)sqlite3_column_text(s, 4);
    img->width        = sqlite3_column_int(s, 5);
    img->height       = sqlite3_column_int(s, 6);
    img->status       = status_parse(sqlite3_column_text(s, 7));
    img->error        = (const char *)sqlite3_column_text(s, 8);
    img->indexed_at   = sqlite3_column_int64(s, 9);
}

/* One allocation: the record, then its strings. */
static qf_store_image *image_copy(const qf_store_image *src) {
    size_t lp = strlen(src->path) + 1;
    size_t lh = src->content_hash ? strlen(src->content_hash) + 1 : 0;
    size_t le = src->error ? strlen(src->error) + 1 : 0;
    qf_store_image *img = qf_malloc(sizeof *img + lp + lh + le);
    if (!img) return NULL;
    *img = *src;
    char *p = (char *)(img + 1);
    img->path = memcpy(p, src->path, lp);
    p += lp;
    img->content_hash = lh ? memcpy(p, src->content_hash, lh) : NULL;
    p += lh;
    img->error = le ? memcpy(p, src->error, le) : NULL;
    return img;
}

static qf_status image_query_one(qf_store *st, sqlite3_stmt *s, qf_store_image **out) {
    qf_status rc = QF_OK;
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        qf_store_image tmp;
        image_from_row(s, &tmp);
        if (!(*out = image_copy(&tmp))) rc = qf_errorf(QF_ERR_NOMEM, "%s: out of memory", st->path);
    } else if (r != SQLITE_DONE) {
        rc = db_err(st, r, "reading images");
    }
    return rc;
}

qf_status qf_store_image_upsert(qf_store *st, const char *path, int64_t size, int64_t mtime_ns,
                                const char *hash, int64_t *id) {
    sqlite3_stmt *s = NULL;
    qf_status rc;
    if ((rc = prep(st,
            "INSERT INTO images(path, size, mtime_ns, content_hash) VALUES (?1, ?2, ?3, ?4) "
            "ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, "
            "content_hash = excluded.content_hash, width = NULL, height = NULL, "
            "status = 'pending', error = NULL, indexed_at = NULL "
            "RETURNING id", &s)) != QF_OK)
        return rc;
    BIND(sqlite3_bind_text(s, 1, path, -1, SQLITE_STATIC));
    BIND(sqlite3_bind_int64(s, 2, size));
    BIND(sqlite3_bind_int64(s, 3, mtime_ns));
    BIND(bind_opt_text(s, 4, hash));
    int r = sqlite3_step(s);
    if (r != SQLITE_ROW) { rc = db_err(st, r, "registering an image"); goto done; }
    *id = sqlite3_column_int64(s, 0);
    if ((r = sqlite3_step(s)) != SQLITE_DONE) rc = db_err(st, r, "registering an image");
done:
    sqlite3_finalize(s);
    return rc;
}

qf_status qf_store_image_lookup(qf_store *st, const char *path, qf_store_image **out) {
    sqlite3_stmt *s = NULL;
    qf_status rc;
    *out = NULL;
    if ((rc = prep(st, "SELECT " IMAGE_COLUMNS " FROM images WHERE path = ?1", &s)) != QF_OK) return rc;
    BIND(sqlite3_bind_text(s, 1, path, -1, SQLITE_STATIC));
    rc = image_query_one(st, s, out);
done:
    sqlite3_finalize(s);
    return rc;
}

qf_status qf_store_image_get(qf_store *st, int64_t id, qf_store_image **out) {
    sqlite3_stmt *s = NULL;
    qf_status rc;
    *out = NULL;
    if ((rc = prep(st, "SELECT " IMAGE_COLUMNS " FROM images WHERE id = ?1", &s)) != QF_OK) return rc;
    BIND(sqlite3_bind_int64(s, 1, id));
    rc = image_query_one(st, s, out);
done:
    sqlite3_finalize(s);
    return rc;
}

/* Prepares "SELECT <cols> FROM images [WHERE status = ?] ORDER BY id". */
static qf_status prep_by_status(qf_store *st, const char *cols, int status, sqlite3_stmt **s) {
    char sql[256];
    qf_status rc;
    if (status >= QF_IMAGE_STATUS_COUNT || status < -1)
        return qf_errorf(QF_ERR_ARG, "%s: no image status %d", st->path, status);
    snprintf(sql, sizeof sql, "SELECT %s FROM images %s ORDER BY id", cols,
             status >= 0 ? "WHERE status = ?1" : "");
    if ((rc = prep(st, sql, s)) != QF_OK) return rc;
    if (status >= 0) {
        int b = sqlite3_bind_text(*s, 1, status_names[status], -1, SQLITE_STATIC);
        if (b != SQLITE_OK) {
            rc = db_err(st, b, "binding");
            sqlite3_finalize(*s);
            *s = NULL;
        }
    }
    return rc;
}

qf_status qf_store_image_foreach(qf_store *st, int status, qf_store_image_fn fn, void *user) {
    sqlite3_stmt *s = NULL;
    qf_status rc;
    if ((rc = prep_by_status(st, IMAGE_COLUMNS, status, &s)) != QF_OK) return rc;
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        qf_store_image img;
        image_from_row(s, &img);
        if ((rc = fn(&img, user)) != QF_OK) goto done;
    }
    if (r != SQLITE_DONE) rc = db_err(st, r, "listing images");
done:
    sqlite3_finalize(s);
    return rc;
}

qf_status qf_store_image_ids(qf_store *st, int status, int64_t **ids, int64_t *n) {
    sqlite3_stmt *s = NULL;
    qf_status rc;
    int64_t *a = NULL, len = 0, cap = 0;
    *ids = NULL;
    *n = 0;
    if ((rc = prep_by_status(st, "id", status, &s)) != QF_OK) return rc;
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        if (len == cap) {
            cap = cap ? cap * 2 : 256;
            int64_t *b = qf_realloc(a, (size_t)cap * sizeof *a);
            if (!b) { rc = qf_errorf(QF_ERR_NOMEM, "%s: out of memory", st->path); goto done; }
            a = b;
        }
        a[len++] = sqlite3_column_int64(s, 0);
    }
    if (r != SQLITE_DONE) { rc = db_err(st, r, "listing images"); goto done; }
    *ids = len ? a : NULL;
    *n = len;
    if (!len) qf_free(a);
    a = NULL;
done:
    qf_free(a);
    sqlite3_finalize(s);
    return rc;
}

static qf_status image_mark(qf_store *st, int64_t id, qf_image_status status, int width, int height,
                            const char *error) {
    sqlite3_stmt *s = NULL;
    qf_status rc;
    if ((rc = prep(st, "UPDATE images SET status = ?2, width = ?3, height = ?4, error = ?5, "
                       "indexed_at = ?6 WHERE id = ?1", &s)) != QF_OK)
        return rc;
    BIND(sqlite3_bind_int64(s, 1, id));
    BIND(sqlite3_bind_text(s, 2, status_names[status], -1, SQLITE_STATIC));
    BIND(width > 0 ? sqlite3_bind_int(s, 3, width) : sqlite3_bind_null(s, 3));
    BIND(height > 0 ? sqlite3_bind_int(s, 4, height) : sqlite3_bind_null(s, 4));
    BIND(bind_opt_text(s, 5, error));
    BIND(sqlite3_bind_int64(s, 6, (sqlite3_int64)time(NULL)));
    if ((rc = step_done(st, s, "marking an image")) != QF_OK) goto done;
    if (sqlite3_changes(st->db) != 1)
        rc = qf_errorf(QF_ERR_ARG, "%s: no image with id %lld", st->path, (long long)id);
done:
    sqlite3_finalize(s);
    return rc;
}

qf_status qf_store_image_mark_ok(qf_store *st, int64_t id, int width, int height) {
    return image_mark(st, id, QF_IMAGE_OK, width, height, NULL);
}

qf_status qf_store_image_mark_error(qf_store *st, int64_t id, int width, int height,
                                    const char *error) {
    return image_mark(st, id, QF_IMAGE_ERROR, width, height, error ? error : "unknown error");
}

qf_status qf_store_image_set_hash(qf_store *st, int64_t id, const char *hash) {
    sqlite3_stmt *s = NULL;
    qf_status rc;
    if ((rc = prep(st, "UPDATE images SET content_hash = ?2 WHERE id = ?1", &s)) != QF_OK) return rc;
    BIND(sqlite3_bind_int64(s, 1, id));
    BIND(bind_opt_text(s, 2, hash));
    if ((rc = step_done(st, s, "recording a content hash")) != QF_OK) goto done;
    if (sqlite3_changes(st->db) != 1)
        rc = qf_errorf(QF_ERR_ARG, "%s: no image with id %lld", st->path, (long long)id);
done:
    sqlite3_finalize(s);
    return rc;
}

qf_status qf_store_image_delete(qf_store *st, int64_t id) {
    sqlite3_stmt *s = NULL;
    qf_status rc;
    if ((rc = prep(st, "DELETE FROM images WHERE id = ?1", &s)) != QF_OK) return rc;
    BIND(sqlite3_bind_int64(s, 1, id));
    rc = step_done(st, s, "deleting an image");
done:
    sqlite3_finalize(s);
    return rc;
}

qf_status qf_store_image_counts(qf_store *st, int64_t *counts) {
    sqlite3_stmt *s = NULL;
    qf_status rc;
    for (int i = 0; i < QF_IMAGE_STATUS_COUNT; i++) counts[i] = 0;
    if ((rc = prep(st, "SELECT status, count(*) FROM images GROUP BY status", &s)) != QF_OK) return rc;
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW)
        counts[status_parse(sqlite3_column_text(s, 0))] = sqlite3_column_int64(s, 1);
    if (r != SQLITE_DONE) rc = db_err(st, r, "counting images");
    sqlite3_finalize(s);
    return rc;
}

/* ---- ITC features ------------------------------------------------------------------------ */

qf_status qf_store_feats_put(qf_store *st, int64_t image_id, int n_query, int dim, const float *feats) {
    sqlite3_stmt *s = NULL;
    qf_status rc;
    if (n_query <= 0 || dim <= 0 || (int64_t)n_query * dim > (1 << 26))
        return qf_errorf(QF_ERR_ARG, "%s: features: bad shape [%d, %d]", st->path, n_query, dim);
    size_t n = (size_t)n_query * dim;
    uint8_t *half = NULL;
    if (st->feats_f16) {
        if (!(half = qf_malloc(2 * n))) return qf_errorf(QF_ERR_NOMEM, "%s: out of memory", st->path);
        for (size_t i = 0; i < n; i++) {
            uint16_t h = qf_cpu_half_of(feats[i]);
            half[2 * i] = (uint8_t)(h & 0xff);
            half[2 * i + 1] = (uint8_t)(h >> 8);
        }
    }
    if ((rc = prep(st, st->feats_f16 ? "INSERT OR REPLACE INTO image_feats_f16(image_id, n_query, dim, f16) "
                                       "VALUES (?1, ?2, ?3, ?4)"
                                     : "INSERT OR REPLACE INTO image_feats(image_id, n_query, dim, f32) "
                                       "VALUES (?1, ?2, ?3, ?4)", &s)) != QF_OK) {
        qf_free(half);
        return rc;
    }
    BIND(sqlite3_bind_int64(s, 1, image_id));
    BIND(sqlite3_bind_int(s, 2, n_query));
    BIND(sqlite3_bind_int(s, 3, dim));
    if (half) BIND(sqlite3_bind_blob64(s, 4, half, (sqlite3_uint64)n * 2, SQLITE_STATIC));
    else BIND(sqlite3_bind_blob64(s, 4, feats, (sqlite3_uint64)n * sizeof *feats, SQLITE_STATIC));
    rc = step_done(st, s, "storing image features");
done:
    sqlite3_finalize(s);
    qf_free(half);
    return rc;
}

/* n stored values (float32, or half floats in an f16 store) into out[n]. */
static void feats_copy(const qf_store *st, const void *blob, size_t n, float *out) {
    if (!st->feats_f16) { memcpy(out, blob, n * sizeof *out); return; }
    const uint8_t *b = blob;
    for (size_t i = 0; i < n; i++) out[i] = qf_cpu_float_of_half((uint16_t)(b[2 * i] | b[2 * i + 1] << 8));
}

int qf_store_feats_f16(const qf_store *st) { return st->feats_f16; }

qf_status qf_store_set_feats_f16(qf_store *st, int f16) {
    qf_status rc = qf_store_meta_set(st, "store_dtype", f16 ? "f16" : "f32");
    if (!rc) st->feats_f16 = f16 != 0;
    return rc;
}

/* Checks a feature row (columns n_query, dim, f32 from `col`) and returns
 * its blob; NULL after setting the error. */
static const void *feats_row(qf_store *st, sqlite3_stmt *s, int col, int64_t id, int *nq, int *d) {
    *nq = sqlite3_column_int(s, col);
    *d = sqlite3_column_int(s, col + 1);
    const void *blob = sqlite3_column_blob(s, col + 2);
    size_t bytes = (size_t)sqlite3_column_bytes(s, col + 2);
    if (*nq <= 0 || *d <= 0 || !blob || bytes != (size_t)*nq * (size_t)*d * (st->feats_f16 ? 2 : sizeof(float))) {
        qf_errorf(QF_ERR_DB, "%s: features of image %lld are corrupt ([%d, %d], %zu bytes)",
                  st->path, (long long)id, *nq, *d, bytes);
        return NULL;
    }
    return blob;
}

qf_status qf_store_feats_get(qf_store *st, int64_t image_id, int n_query, int dim, float *out) {
    sqlite3_stmt *s = NULL;
    qf_status rc;
    if ((rc = prep(st, st->feats_f16 ? "SELECT n_query, dim, f16 FROM image_feats_f16 WHERE image_id = ?1"
                                   : "SELECT n_query, dim, f32 FROM image_feats WHERE image_id = ?1", &s)) != QF_OK)
        return rc;
    BIND(sqlite3_bind_int64(s, 1, image_id));
    int r = sqlite3_step(s), nq, d;
    if (r == SQLITE_DONE) {
        rc = qf_errorf(QF_ERR_MISSING, "%s: image %lld has no stored features", st->path,
                       (long long)image_id);
        goto done;
    }
    if (r != SQLITE_ROW) { rc = db_err(st, r, "reading image features"); goto done; }
    const void *blob = feats_row(st, s, 0, image_id, &nq, &d);
    if (!blob) { rc = QF_ERR_DB; goto done; }
    if (nq != n_query || d != dim) {
        rc = qf_errorf(QF_ERR_SHAPE, "%s: features of image %lld are [%d, %d], expected [%d, %d]",
                       st->path, (long long)image_id, nq, d, n_query, dim);
        goto done;
    }
    feats_copy(st, blob, (size_t)nq * d, out);
done:
    sqlite3_finalize(s);
    return rc;
}

qf_status qf_store_feats_get_many(qf_store *st, int64_t n, const int64_t *ids, int n_query, int dim,
                                  float *out, int *found) {
    sqlite3_stmt *s = NULL;
    qf_status rc;
    const size_t per = (size_t)n_query * (size_t)dim;
    if ((rc = prep(st, st->feats_f16 ? "SELECT n_query, dim, f16 FROM image_feats_f16 WHERE image_id = ?1"
                                   : "SELECT n_query, dim, f32 FROM image_feats WHERE image_id = ?1", &s)) != QF_OK)
        return rc;
    for (int64_t i = 0; i < n; i++) {
        found[i] = 0;
        sqlite3_reset(s);
        BIND(sqlite3_bind_int64(s, 1, ids[i]));
        int r = sqlite3_step(s), nq, d;
        if (r == SQLITE_DONE) continue;
        if (r != SQLITE_ROW) { rc = db_err(st, r, "reading image features"); goto done; }
        const void *blob = feats_row(st, s, 0, ids[i], &nq, &d);
        if (!blob) { rc = QF_ERR_DB; goto done; }
        if (nq != n_query || d != dim) {
            rc = qf_errorf(QF_ERR_SHAPE, "%s: features of image %lld are [%d, %d], expected [%d, %d]",
                           st->path, (long long)ids[i], nq, d, n_query, dim);
            goto done;
        }
        feats_copy(st, blob, per, out + (size_t)i * per);
        found[i] = 1;
    }
done:
    sqlite3_finalize(s);
    return rc;
}

/* ---- read-ahead of features --------------------------------------------------- */

/* Each thread reads every QF_PREFETCH_THREADS-th blob of the list on its own
 * connection and throws it away: what counts is that the pages are then in
 * the OS page cache when the caller's own connection reads them. A cold
 * 32 KiB blob is ~9 dependent page reads (90-300 us on this VM's disk at
 * a million images); several readers keep several in flight. Measured at
 * 1M images, 243 candidates, page cache dropped (bench/scale.sh --cold):
 * search p50/p95 120/259 ms without, 91/183 ms with 3 readers, 83/121 ms
 * with 8. Warm, the readers only duplicate the reads on the same cores
 * (+2.5 ms at 64 candidates): qf_ann_search starts them only when its
 * first read was slow. */
typedef struct {
    struct qf_store_prefetch *pf;
    prefetch_conn *conn;
    int first;
    pthread_t th;
    int started;
} prefetch_worker;

struct qf_store_prefetch {
    const char *name;
    int flags, f16;
    int64_t n;
    const int64_t *ids;   /* the caller's, valid until qf_store_prefetch_end */
    volatile int stop;
    prefetch_worker w[QF_PREFETCH_THREADS];
};

static void *prefetch_run(void *arg) {
    prefetch_worker *w = arg;
    struct qf_store_prefetch *pf = w->pf;
    prefetch_conn *c = w->conn;
    if (c->db && c->f16 != pf->f16) prefetch_conn_close(c);      /* the store switched tables */
    if (!c->db && (sqlite3_open_v2(pf->name, &c->db, pf->flags & ~SQLITE_OPEN_CREATE, NULL) != SQLITE_OK ||
                   sqlite3_prepare_v2(c->db, pf->f16 ? "SELECT f16 FROM image_feats_f16 WHERE image_id = ?1"
                                                     : "SELECT f32 FROM image_feats WHERE image_id = ?1",
                                      -1, &c->s, NULL) != SQLITE_OK)) {
        prefetch_conn_close(c);
        return NULL;
    }
    c->f16 = pf->f16;
    for (int64_t i = w->first; i < pf->n && !pf->stop; i += QF_PREFETCH_THREADS) {
        sqlite3_bind_int64(c->s, 1, pf->ids[i]);
        if (sqlite3_step(c->s) == SQLITE_ROW) (void)sqlite3_column_blob(c->s, 0);
        sqlite3_reset(c->s);
    }
    return NULL;
}

qf_store_prefetch *qf_store_feats_prefetch(qf_store *st, int64_t n, const int64_t *ids) {
    if (n < 2 || !st->open_name) return NULL;
    struct qf_store_prefetch *pf = qf_calloc(1, sizeof *pf);
    if (!pf) return NULL;
    pf->ids = ids;
    pf->name = st->open_name;
    pf->flags = st->open_flags;
    pf->f16 = st->feats_f16;
    pf->n = n;
    for (int t = 0; t < QF_PREFETCH_THREADS; t++) {
        /* the caller reads item 0 itself; the readers start from item 1 */
        pf->w[t] = (prefetch_worker){ .pf = pf, .conn = &st->pf_conn[t], .first = 1 + t };
        pf->w[t].started = pthread_create(&pf->w[t].th, NULL, prefetch_run, &pf->w[t]) == 0;
    }
    return pf;
}

void qf_store_prefetch_end(qf_store_prefetch *pf) {
    if (!pf) return;
    pf->stop = 1;
    for (int t = 0; t < QF_PREFETCH_THREADS; t++)
        if (pf->w[t].started) pthread_join(pf->w[t].th, NULL);
    qf_free(pf);
}

qf_status qf_store_feats_foreach(qf_store *st, qf_store_feats_fn fn, void *user) {
    sqlite3_stmt *s = NULL;
    qf_status rc;
    float *buf = NULL;
    size_t cap = 0;
    /* CROSS JOIN keeps image_feats the outer loop: its rows come in rowid
     * (= image id) order straight from its B-tree, read sequentially. With
     * images outer (through images_by_status) SQLite sorted every blob
     * through a temporary B-tree for the ORDER BY: 33 GB written and read
     * back per pass at a million images. */
    if ((rc = prep(st, st->feats_f16 ? "SELECT f.image_id, f.n_query, f.dim, f.f16 FROM image_feats_f16 f "
                                     "CROSS JOIN images i ON i.id = f.image_id WHERE i.status = 'ok' "
                                     "ORDER BY f.image_id"
                                   : "SELECT f.image_id, f.n_query, f.dim, f.f32 FROM image_feats f "
                       "CROSS JOIN images i ON i.id = f.image_id WHERE i.status = 'ok' "
                       "ORDER BY f.image_id", &s)) != QF_OK)
        return rc;
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(s, 0);
        int nq, d;
        const void *blob = feats_row(st, s, 1, id, &nq, &d);
        if (!blob) { rc = QF_ERR_DB; goto done; }
        size_t n = (size_t)nq * (size_t)d;
        if (n > cap) {                      /* blobs need not be float-aligned */
            float *b = qf_realloc(buf, n * sizeof *buf);
            if (!b) { rc = qf_errorf(QF_ERR_NOMEM, "%s: out of memory", st->path); goto done; }
            buf = b;
            cap = n;
        }
        feats_copy(st, blob, n, buf);
        if ((rc = fn(id, buf, user)) != QF_OK) goto done;
    }
    if (r != SQLITE_DONE) rc = db_err(st, r, "listing image features");
done:
    qf_free(buf);
    sqlite3_finalize(s);
    return rc;
}

char *qf_store_index_path(const char *db_path) {
    size_t n = strlen(db_path) + sizeof ".faiss";
    char *p = qf_malloc(n);
    if (p) snprintf(p, n, "%s.faiss", db_path);
    return p;
}

/* ---- captions --------------------------------------------------------------------------- */

qf_status qf_store_caption_get(qf_store *st, int64_t image_id, const char *fingerprint,
                               const char *prompt, const char *settings,
                               char **text, char **ids_json) {
    sqlite3_stmt *s = NULL;
    qf_status rc;
    *text = NULL;
    if (ids_json) *ids_json = NULL;
    if ((rc = prep(st, "SELECT text, ids_json FROM captions WHERE image_id = ?1 AND "
                       "model_fingerprint = ?2 AND prompt = ?3 AND settings = ?4", &s)) != QF_OK)
        return rc;
    BIND(sqlite3_bind_int64(s, 1, image_id));
    BIND(sqlite3_bind_text(s, 2, fingerprint, -1, SQLITE_STATIC));
    BIND(sqlite3_bind_text(s, 3, prompt, -1, SQLITE_STATIC));
    BIND(sqlite3_bind_text(s, 4, settings, -1, SQLITE_STATIC));
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        if ((rc = dup_column(st, s, 0, text)) == QF_OK && ids_json &&
            (rc = dup_column(st, s, 1, ids_json)) != QF_OK) {
            qf_free(*text);
            *text = NULL;
        }
    } else if (r != SQLITE_DONE) {
        rc = db_err(st, r, "reading a caption");
    }
done:
    sqlite3_finalize(s);
    return rc;
}

qf_status qf_store_caption_put(qf_store *st, int64_t image_id, const char *fingerprint,
                               const char *prompt, const char *settings,
                               const char *text, const char *ids_json) {
    sqlite3_stmt *s = NULL;
    qf_status rc;
    if ((rc = prep(st, "INSERT OR REPLACE INTO captions(image_id, model_fingerprint, prompt, "
                       "settings, text, ids_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6)", &s)) != QF_OK)
        return rc;
    BIND(sqlite3_bind_int64(s, 1, image_id));
    BIND(sqlite3_bind_text(s, 2, fingerprint, -1, SQLITE_STATIC));
    BIND(sqlite3_bind_text(s, 3, prompt, -1, SQLITE_STATIC));
    BIND(sqlite3_bind_text(s, 4, settings, -1, SQLITE_STATIC));
    BIND(sqlite3_bind_text(s, 5, text, -1, SQLITE_STATIC));
    BIND(sqlite3_bind_text(s, 6, ids_json ? ids_json : "[]", -1, SQLITE_STATIC));
    rc = step_done(st, s, "storing a caption");
done:
    sqlite3_finalize(s);
    return rc;
}

/* ---- half floats ---------------------------------------------------------------------------- */

/* ---- vision cache ----------------------------------------------------------------------------- */

qf_status qf_store_vision_put(qf_store *st, int64_t image_id, int n_tok, int dim, const float *x) {
    sqlite3_stmt *s = NULL;
    qf_status rc;
    if (n_tok <= 0 || dim <= 0 || (int64_t)n_tok * dim > (1 << 28))
        return qf_errorf(QF_ERR_ARG, "%s: vision cache: bad shape [%d, %d]", st->path, n_tok, dim);
    size_t n = (size_t)n_tok * (size_t)dim;
    unsigned char *blob = qf_malloc(2 * n);
    if (!blob) return qf_errorf(QF_ERR_NOMEM, "%s: out of memory (vision cache)", st->path);
    for (size_t i = 0; i < n; i++) {
        uint16_t h = qf_cpu_half_of(x[i]);
        blob[2 * i] = (unsigned char)(h & 0xff);
        blob[2 * i + 1] = (unsigned char)(h >> 8);
    }
    if ((rc = prep(st, "INSERT OR REPLACE INTO vision_cache(image_id, n_tok, dim, f16) "
                       "VALUES (?1, ?2, ?3, ?4)", &s)) != QF_OK)
        goto done;
    BIND(sqlite3_bind_int64(s, 1, image_id));
    BIND(sqlite3_bind_int(s, 2, n_tok));
    BIND(sqlite3_bind_int(s, 3, dim));
    BIND(sqlite3_bind_blob64(s, 4, blob, 2 * n, SQLITE_STATIC));
    rc = step_done(st, s, "storing vision features");
done:
    sqlite3_finalize(s);
    qf_free(blob);
    return rc;
}

qf_status qf_store_vision_get(qf_store *st, int64_t image_id, float **x, int *n_tok, int *dim) {
    sqlite3_stmt *s = NULL;
    qf_status rc;
    *x = NULL;
    *n_tok = *dim = 0;
    if ((rc = prep(st, "SELECT n_tok, dim, f16 FROM vision_cache WHERE image_id = ?1", &s)) != QF_OK)
        return rc;
    BIND(sqlite3_bind_int64(s, 1, image_id));
    int r = sqlite3_step(s);
    if (r == SQLITE_DONE) goto done;
    if (r != SQLITE_ROW) { rc = db_err(st, r, "reading vision features"); goto done; }
    int nt = sqlite3_column_int(s, 0), d = sqlite3_column_int(s, 1);
    const unsigned char *blob = sqlite3_column_blob(s, 2);
    size_t bytes = (size_t)sqlite3_column_bytes(s, 2);
    size_t n = (size_t)nt * (size_t)d;
    if (nt <= 0 || d <= 0 || bytes != 2 * n || !blob) {
        rc = qf_errorf(QF_ERR_DB, "%s: vision cache of image %lld is corrupt ([%d, %d], %zu bytes)",
                       st->path, (long long)image_id, nt, d, bytes);
        goto done;
    }
    float *out = qf_malloc(n * sizeof *out);
    if (!out) { rc = qf_errorf(QF_ERR_NOMEM, "%s: out of memory (vision cache)", st->path); goto done; }
    for (size_t i = 0; i < n; i++)
        out[i] = qf_cpu_float_of_half((uint16_t)(blob[2 * i] | blob[2 * i + 1] << 8));
    *x = out;
    *n_tok = nt;
    *dim = d;
done:
    sqlite3_finalize(s);
    return rc;
}

/* ---- integrity ------------------------------------------------------------------------------------ */

qf_status qf_store_integrity_check(qf_store *st) {
    sqlite3_stmt *s = NULL;
    qf_status rc;
    char report[1024] = "";
    size_t len = 0;
    int ok = 1, r;
    if ((rc = prep(st, "PRAGMA integrity_check", &s)) != QF_OK) return rc;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        if (t && strcmp(t, "ok") == 0) continue;
        ok = 0;
        if (len < sizeof report - 1)
            len += (size_t)snprintf(report + len, sizeof report - len, "%s%s", len ? "; " : "", t ? t : "?");
    }
    sqlite3_finalize(s);
    if (r != SQLITE_DONE) return db_err(st, r, "integrity check");
    if ((rc = prep(st, "PRAGMA foreign_key_check", &s)) != QF_OK) return rc;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        ok = 0;
        if (len < sizeof report - 1)
            len += (size_t)snprintf(report + len, sizeof report - len,
                                    "%srow %lld of %s refers to a missing %s row", len ? "; " : "",
                                    (long long)sqlite3_column_int64(s, 1),
                                    (const char *)sqlite3_column_text(s, 0),
                                    (const char *)sqlite3_column_text(s, 2));
    }
    sqlite3_finalize(s);
    if (r != SQLITE_DONE) return db_err(st, r, "foreign key check");
    if (!ok) return qf_errorf(QF_ERR_DB, "%s: integrity check failed: %s", st->path, report);
    return QF_OK;
}

