/* project.c — Medley project files on SQLite (see project.h). */
#include "project.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- blobs ---- */

md_blob *md_blob_new(const void *data, size_t size)
{
    md_blob *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->data = malloc(size ? size : 1);
    if (!b->data) {
        free(b);
        return NULL;
    }
    if (size)
        memcpy(b->data, data, size);
    b->size = size;
    b->hash = md_fnv1a(MD_FNV1A_INIT, b->data, size);
    b->refs = 1;
    return b;
}

md_blob *md_blob_ref(md_blob *b)
{
    if (b)
        __atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED);
    return b;
}

void md_blob_unref(md_blob *b)
{
    if (b && __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        free(b->data);
        free(b);
    }
}

static bool blob_equal(const md_blob *a, const md_blob *b)
{
    if (!a || !b)
        return a == b;
    return a->size == b->size && a->hash == b->hash && memcmp(a->data, b->data, a->size) == 0;
}

static bool str_equal(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

/* ---- the board ---- */

static void input_free(md_proj_input *in)
{
    free(in->name);
    free(in->text);
    md_blob_unref(in->media);
    memset(in, 0, sizeof *in);
}

static md_status input_copy(md_proj_input *d, const md_proj_input *s)
{
    *d = *s;
    d->name = s->name ? strdup(s->name) : NULL;
    d->text = s->text ? strdup(s->text) : NULL;
    d->media = md_blob_ref(s->media);
    if ((s->name && !d->name) || (s->text && !d->text)) {
        input_free(d);
        return MD_ERR_ALLOC;
    }
    return MD_OK;
}

static bool board_reserve(md_board *b, int n)
{
    if (n <= b->cap)
        return true;
    int cap = b->cap ? b->cap * 2 : 8;
    while (cap < n)
        cap *= 2;
    md_proj_input *p = realloc(b->in, sizeof *p * (size_t)cap);
    if (!p)
        return false;
    b->in = p;
    b->cap = cap;
    return true;
}

md_status md_board_copy(md_board *dst, const md_board *src)
{
    memset(dst, 0, sizeof *dst);
    if (!board_reserve(dst, src->n))
        return MD_ERR_ALLOC;
    for (int i = 0; i < src->n; i++) {
        if (input_copy(&dst->in[i], &src->in[i]) != MD_OK) {
            md_board_free(dst);
            return MD_ERR_ALLOC;
        }
        dst->n = i + 1;
    }
    return MD_OK;
}

void md_board_free(md_board *b)
{
    for (int i = 0; i < b->n; i++)
        input_free(&b->in[i]);
    free(b->in);
    memset(b, 0, sizeof *b);
}

bool md_board_equal(const md_board *a, const md_board *b)
{
    if (a->n != b->n)
        return false;
    for (int i = 0; i < a->n; i++) {
        const md_proj_input *x = &a->in[i], *y = &b->in[i];
        if (x->id != y->id || x->modality != y->modality || x->weight != y->weight || x->muted != y->muted ||
            !str_equal(x->name, y->name) || !str_equal(x->text, y->text) || !blob_equal(x->media, y->media))
            return false;
    }
    return true;
}

void md_board_move(md_board *b, int i, int j)
{
    if (i < 0 || i >= b->n || j < 0 || j >= b->n || i == j)
        return;
    md_proj_input t = b->in[i];
    if (i < j)
        memmove(&b->in[i], &b->in[i + 1], sizeof t * (size_t)(j - i));
    else
        memmove(&b->in[j + 1], &b->in[j], sizeof t * (size_t)(i - j));
    b->in[j] = t;
}

void md_board_remove(md_board *b, int i)
{
    if (i < 0 || i >= b->n)
        return;
    input_free(&b->in[i]);
    memmove(&b->in[i], &b->in[i + 1], sizeof b->in[0] * (size_t)(b->n - i - 1));
    b->n--;
}

/* ---- the project ---- */

void md_project_init(md_project *p)
{
    memset(p, 0, sizeof *p);
    p->next_id = 1;
}

static void run_free(md_proj_run *r)
{
    free(r->job);
    free(r->error);
    for (int k = 0; k < r->nout; k++) {
        free(r->out[k].name);
        md_blob_unref(r->out[k].media);
    }
    free(r->out);
    memset(r, 0, sizeof *r);
}

void md_project_free(md_project *p)
{
    md_board_free(&p->board);
    for (int i = 0; i < p->nruns; i++)
        run_free(&p->runs[i]);
    free(p->runs);
    free(p->settings);
    free(p->saved_path);
    md_project_init(p);
}

static int add_input(md_project *p, md_proj_input *in)
{
    if (!board_reserve(&p->board, p->board.n + 1)) {
        input_free(in);
        md_log(MD_LOG_ERROR, "project: out of memory adding an input");
        return -1;
    }
    in->id = p->next_id++;
    p->board.in[p->board.n] = *in;
    return p->board.n++;
}

/* The first line of a text, cut at 40 bytes on a UTF-8 boundary. */
static char *text_name(const char *t)
{
    size_t n = strcspn(t, "\n");
    if (n > 40) {
        n = 40;
        while (n > 0 && ((unsigned char)t[n] & 0xC0) == 0x80)
            n--;
    }
    return strndup(t, n);
}

int md_project_add_text(md_project *p, const char *text, double weight)
{
    if (!isfinite(weight)) {
        md_log(MD_LOG_ERROR, "project: an input's weight must be a finite number");
        return -1;
    }
    md_proj_input in = {0};
    in.modality = MD_MOD_TEXT;
    in.text = strdup(text);
    in.name = text_name(text);
    in.weight = weight;
    if (!in.text || !in.name) {
        input_free(&in);
        md_log(MD_LOG_ERROR, "project: out of memory adding an input");
        return -1;
    }
    return add_input(p, &in);
}

int md_project_add_media(md_project *p, md_modality m, const char *name, const void *data, size_t size,
                         double weight)
{
    if (!isfinite(weight)) {
        md_log(MD_LOG_ERROR, "project: an input's weight must be a finite number");
        return -1;
    }
    md_proj_input in = {0};
    in.modality = m;
    in.name = strdup(name ? name : "");
    in.media = md_blob_new(data, size);
    in.weight = weight;
    if (!in.name || !in.media) {
        input_free(&in);
        md_log(MD_LOG_ERROR, "project: out of memory adding %s", name ? name : "an input");
        return -1;
    }
    return add_input(p, &in);
}

int md_project_add_run(md_project *p, const char *job, md_run_state state, const char *error,
                       const md_proj_output *out, int nout)
{
    if (p->nruns == p->runs_cap) {
        int cap = p->runs_cap ? p->runs_cap * 2 : 8;
        md_proj_run *r = realloc(p->runs, sizeof *r * (size_t)cap);
        if (!r) {
            md_log(MD_LOG_ERROR, "project: out of memory adding a run");
            return -1;
        }
        p->runs = r;
        p->runs_cap = cap;
    }
    md_proj_run r = {0};
    r.id = p->next_id++;
    r.created = (int64_t)time(NULL);
    r.job = strdup(job ? job : "{}");
    r.state = state;
    r.error = error ? strdup(error) : NULL;
    r.out = nout ? calloc((size_t)nout, sizeof *r.out) : NULL;
    bool ok = r.job && (!error || r.error) && (!nout || r.out);
    for (int k = 0; ok && k < nout; k++) {
        r.out[k].modality = out[k].modality;
        r.out[k].name = strdup(out[k].name ? out[k].name : "");
        r.out[k].media = md_blob_ref(out[k].media);
        r.nout = k + 1;
        ok = r.out[k].name != NULL;
    }
    if (!ok) {
        run_free(&r);
        md_log(MD_LOG_ERROR, "project: out of memory adding a run");
        return -1;
    }
    p->runs[p->nruns] = r;
    return p->nruns++;
}

void md_project_remove_run(md_project *p, int i)
{
    if (i < 0 || i >= p->nruns)
        return;
    run_free(&p->runs[i]);
    memmove(&p->runs[i], &p->runs[i + 1], sizeof p->runs[0] * (size_t)(p->nruns - i - 1));
    p->nruns--;
}

md_status md_project_set_settings(md_project *p, const char *json)
{
    char *s = json ? strdup(json) : NULL;
    if (json && !s)
        return MD_ERR_ALLOC;
    free(p->settings);
    p->settings = s;
    return MD_OK;
}

bool md_project_equal(const md_project *a, const md_project *b)
{
    if (!md_board_equal(&a->board, &b->board) || a->nruns != b->nruns || !str_equal(a->settings, b->settings))
        return false;
    for (int i = 0; i < a->nruns; i++) {
        const md_proj_run *x = &a->runs[i], *y = &b->runs[i];
        if (x->id != y->id || x->created != y->created || x->state != y->state || !str_equal(x->job, y->job) ||
            !str_equal(x->error, y->error) || x->nout != y->nout)
            return false;
        for (int k = 0; k < x->nout; k++)
            if (x->out[k].modality != y->out[k].modality || !str_equal(x->out[k].name, y->out[k].name) ||
                !blob_equal(x->out[k].media, y->out[k].media))
                return false;
    }
    return true;
}

/* ---- SQLite ---- */

static const char *const schema_sql =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);"
    "CREATE TABLE blobs(id INTEGER PRIMARY KEY, hash INTEGER NOT NULL, size INTEGER NOT NULL, bytes BLOB NOT NULL);"
    "CREATE INDEX blobs_hash ON blobs(hash, size);"
    "CREATE TABLE inputs(id INTEGER PRIMARY KEY, position INTEGER NOT NULL, modality INTEGER NOT NULL,"
    " name TEXT, text TEXT, weight REAL NOT NULL, muted INTEGER NOT NULL DEFAULT 0, blob INTEGER);"
    "CREATE TABLE runs(id INTEGER PRIMARY KEY, position INTEGER NOT NULL, created INTEGER NOT NULL,"
    " job TEXT NOT NULL, state INTEGER NOT NULL, error TEXT);"
    "CREATE TABLE outputs(run INTEGER NOT NULL, position INTEGER NOT NULL, modality INTEGER NOT NULL,"
    " name TEXT, blob INTEGER NOT NULL, PRIMARY KEY(run, position));";

/* Steps from schema version v to v + 1, applied in a transaction. */
static const char *const migrations[] = {
    NULL,
    /* 1 -> 2: mute inputs; keep a failed run's reason */
    "ALTER TABLE inputs ADD COLUMN muted INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE runs ADD COLUMN error TEXT;",
};

typedef struct db {
    sqlite3 *h;
    const char *path;
} db;

static md_status db_fail(const db *d, const char *what)
{
    md_log(MD_LOG_ERROR, "%s: %s: %s", d->path, what, d->h ? sqlite3_errmsg(d->h) : "cannot open");
    return MD_ERR_IO;
}

static md_status exec(const db *d, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(d->h, sql, NULL, NULL, &err) != SQLITE_OK) {
        md_log(MD_LOG_ERROR, "%s: %s", d->path, err ? err : sqlite3_errmsg(d->h));
        sqlite3_free(err);
        return MD_ERR_IO;
    }
    return MD_OK;
}

static sqlite3_stmt *prep(const db *d, const char *sql)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(d->h, sql, -1, &s, NULL) != SQLITE_OK) {
        md_log(MD_LOG_ERROR, "%s: %s", d->path, sqlite3_errmsg(d->h));
        return NULL;
    }
    return s;
}

static void bind_text(sqlite3_stmt *s, int i, const char *t)
{
    if (t)
        sqlite3_bind_text(s, i, t, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

static char *col_text(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? strdup((const char *)t) : NULL;
}

/* The row id of b in the file: found by hash and size (and equal bytes),
 * else inserted. 0 on failure. */
static int64_t put_blob(const db *d, const md_blob *b)
{
    sqlite3_stmt *q = prep(d, "SELECT id, bytes FROM blobs WHERE hash = ?1 AND size = ?2");
    if (!q)
        return 0;
    sqlite3_bind_int64(q, 1, (sqlite3_int64)b->hash);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)b->size);
    int64_t id = 0;
    while (!id && sqlite3_step(q) == SQLITE_ROW)
        if ((size_t)sqlite3_column_bytes(q, 1) == b->size &&
            (b->size == 0 || memcmp(sqlite3_column_blob(q, 1), b->data, b->size) == 0))
            id = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    if (id)
        return id;
    q = prep(d, "INSERT INTO blobs(hash, size, bytes) VALUES(?1, ?2, ?3)");
    if (!q)
        return 0;
    sqlite3_bind_int64(q, 1, (sqlite3_int64)b->hash);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)b->size);
    sqlite3_bind_blob64(q, 3, b->data, b->size, SQLITE_STATIC);
    if (sqlite3_step(q) == SQLITE_DONE)
        id = sqlite3_last_insert_rowid(d->h);
    else
        db_fail(d, "cannot store media");
    sqlite3_finalize(q);
    return id;
}

static md_status put_meta(const db *d, const char *key, const char *value)
{
    sqlite3_stmt *q = prep(d, "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)");
    if (!q)
        return MD_ERR_IO;
    bind_text(q, 1, key);
    bind_text(q, 2, value);
    md_status st = sqlite3_step(q) == SQLITE_DONE ? MD_OK : db_fail(d, "cannot write");
    sqlite3_finalize(q);
    return st;
}

/* 1 when the file holds run r as it is in memory (a run does not change
 * once made, so a save leaves it be); 0 when it differs or is absent (any
 * row of that id is then removed, to be written anew); -1 on error. */
static int run_in_file(const db *d, const md_proj_run *r)
{
    sqlite3_stmt *q = prep(d, "SELECT created, job, state, error FROM runs WHERE id = ?1");
    if (!q)
        return -1;
    sqlite3_bind_int64(q, 1, r->id);
    int rc = sqlite3_step(q);
    bool present = rc == SQLITE_ROW;
    bool same = present && sqlite3_column_int64(q, 0) == r->created &&
                str_equal((const char *)sqlite3_column_text(q, 1), r->job) && sqlite3_column_int(q, 2) == (int)r->state &&
                str_equal((const char *)sqlite3_column_text(q, 3), r->error);
    sqlite3_finalize(q);
    if (!present)
        return rc == SQLITE_DONE ? 0 : -1;
    if (same) {
        q = prep(d, "SELECT o.modality, o.name, b.hash, b.size FROM outputs o JOIN blobs b ON b.id = o.blob "
                    "WHERE o.run = ?1 ORDER BY o.position");
        if (!q)
            return -1;
        sqlite3_bind_int64(q, 1, r->id);
        int k = 0;
        while (same && sqlite3_step(q) == SQLITE_ROW) {
            const md_proj_output *o = k < r->nout ? &r->out[k] : NULL;
            same = o && sqlite3_column_int(q, 0) == (int)o->modality &&
                   str_equal((const char *)sqlite3_column_text(q, 1), o->name) &&
                   (uint64_t)sqlite3_column_int64(q, 2) == o->media->hash &&
                   (size_t)sqlite3_column_int64(q, 3) == o->media->size;
            k++;
        }
        same = same && k == r->nout;
        sqlite3_finalize(q);
        if (same)
            return 1;
    }
    char sql[160];
    snprintf(sql, sizeof sql, "DELETE FROM outputs WHERE run = %lld; DELETE FROM runs WHERE id = %lld;",
             (long long)r->id, (long long)r->id);
    return exec(d, sql) == MD_OK ? 0 : -1;
}

/* Writes p's rows into an open database whose schema is current, inside the
 * caller's transaction: the board replaces the file's, runs the file lacks
 * are added, runs p lacks are dropped, then unreferenced media. */
static md_status write_rows(const db *d, const md_project *p)
{
    md_status st = exec(d, "DELETE FROM inputs");
    char num[32];
    snprintf(num, sizeof num, "%d", MD_PROJECT_SCHEMA);
    if (st == MD_OK)
        st = put_meta(d, "schema", num);
    if (st == MD_OK)
        st = put_meta(d, "app", "medley");
    if (st == MD_OK)
        st = put_meta(d, "settings", p->settings);
    snprintf(num, sizeof num, "%lld", (long long)p->next_id);
    if (st == MD_OK)
        st = put_meta(d, "next_id", num);
    sqlite3_stmt *q = st == MD_OK ? prep(d, "INSERT INTO inputs(id, position, modality, name, text, weight, muted, "
                                            "blob) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
                                  : NULL;
    if (st == MD_OK && !q)
        st = MD_ERR_IO;
    for (int i = 0; st == MD_OK && i < p->board.n; i++) {
        const md_proj_input *in = &p->board.in[i];
        int64_t blob = in->media ? put_blob(d, in->media) : 0;
        if (in->media && !blob) {
            st = MD_ERR_IO;
            break;
        }
        sqlite3_reset(q);
        sqlite3_bind_int64(q, 1, in->id);
        sqlite3_bind_int(q, 2, i);
        sqlite3_bind_int(q, 3, (int)in->modality);
        bind_text(q, 4, in->name);
        bind_text(q, 5, in->text);
        sqlite3_bind_double(q, 6, in->weight);
        sqlite3_bind_int(q, 7, in->muted);
        if (blob)
            sqlite3_bind_int64(q, 8, blob);
        else
            sqlite3_bind_null(q, 8);
        if (sqlite3_step(q) != SQLITE_DONE)
            st = db_fail(d, "cannot write an input");
    }
    sqlite3_finalize(q);
    /* runs: drop those p no longer has; a run is immutable, so the others
     * stay as they are and only new ones are written */
    if (st == MD_OK)
        st = exec(d, "CREATE TEMP TABLE IF NOT EXISTS keep(id INTEGER PRIMARY KEY); DELETE FROM keep;");
    q = st == MD_OK ? prep(d, "INSERT INTO keep(id) VALUES(?1)") : NULL;
    if (st == MD_OK && !q)
        st = MD_ERR_IO;
    for (int i = 0; st == MD_OK && i < p->nruns; i++) {
        sqlite3_reset(q);
        sqlite3_bind_int64(q, 1, p->runs[i].id);
        if (sqlite3_step(q) != SQLITE_DONE)
            st = db_fail(d, "cannot write");
    }
    sqlite3_finalize(q);
    if (st == MD_OK)
        st = exec(d, "DELETE FROM outputs WHERE run NOT IN (SELECT id FROM keep);"
                     "DELETE FROM runs WHERE id NOT IN (SELECT id FROM keep);");
    sqlite3_stmt *pos = st == MD_OK ? prep(d, "UPDATE runs SET position = ?2 WHERE id = ?1") : NULL;
    sqlite3_stmt *ins = st == MD_OK ? prep(d, "INSERT INTO runs(id, position, created, job, state, error) "
                                              "VALUES(?1, ?2, ?3, ?4, ?5, ?6)")
                                    : NULL;
    sqlite3_stmt *out = st == MD_OK ? prep(d, "INSERT INTO outputs(run, position, modality, name, blob) "
                                              "VALUES(?1, ?2, ?3, ?4, ?5)")
                                    : NULL;
    if (st == MD_OK && (!pos || !ins || !out))
        st = MD_ERR_IO;
    for (int i = 0; st == MD_OK && i < p->nruns; i++) {
        const md_proj_run *r = &p->runs[i];
        int same = run_in_file(d, r);
        if (same < 0) {
            st = MD_ERR_IO;
            break;
        }
        if (same) {
            sqlite3_reset(pos);
            sqlite3_bind_int64(pos, 1, r->id);
            sqlite3_bind_int(pos, 2, i);
            if (sqlite3_step(pos) != SQLITE_DONE)
                st = db_fail(d, "cannot write a run");
            continue;
        }
        sqlite3_reset(ins);
        sqlite3_bind_int64(ins, 1, r->id);
        sqlite3_bind_int(ins, 2, i);
        sqlite3_bind_int64(ins, 3, r->created);
        bind_text(ins, 4, r->job);
        sqlite3_bind_int(ins, 5, (int)r->state);
        bind_text(ins, 6, r->error);
        if (sqlite3_step(ins) != SQLITE_DONE) {
            st = db_fail(d, "cannot write a run");
            break;
        }
        for (int k = 0; st == MD_OK && k < r->nout; k++) {
            int64_t blob = put_blob(d, r->out[k].media);
            if (!blob) {
                st = MD_ERR_IO;
                break;
            }
            sqlite3_reset(out);
            sqlite3_bind_int64(out, 1, r->id);
            sqlite3_bind_int(out, 2, k);
            sqlite3_bind_int(out, 3, (int)r->out[k].modality);
            bind_text(out, 4, r->out[k].name);
            sqlite3_bind_int64(out, 5, blob);
            if (sqlite3_step(out) != SQLITE_DONE)
                st = db_fail(d, "cannot write an output");
        }
    }
    sqlite3_finalize(pos);
    sqlite3_finalize(ins);
    sqlite3_finalize(out);
    if (st == MD_OK)
        st = exec(d, "DELETE FROM blobs WHERE id NOT IN (SELECT blob FROM inputs WHERE blob IS NOT NULL "
                     "UNION SELECT blob FROM outputs)");
    return st;
}

static void db_close(db *d)
{
    if (d->h)
        sqlite3_close_v2(d->h);
    d->h = NULL;
}

/* Why path is not a project we can read, or MD_OK with its schema version
 * in *version. The database stays open in d on success. */
static md_status db_open_project(db *d, const char *path, bool write, int *version)
{
    d->path = path;
    d->h = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        md_log(MD_LOG_ERROR, "%s: cannot open: %s", path, strerror(errno));
        return MD_ERR_IO;
    }
    char head[16] = {0};
    size_t got = fread(head, 1, sizeof head, f);
    fclose(f);
    if (got < sizeof head || memcmp(head, "SQLite format 3", 16) != 0) {
        md_log(MD_LOG_ERROR, "%s: not a Medley project (%s)", path,
               got == 0 ? "the file is empty" : "it is not an SQLite database");
        return MD_ERR_FORMAT;
    }
    /* read-write where allowed even to read: a save killed midway leaves a
     * journal that only a writer can roll back */
    int rc = sqlite3_open_v2(path, &d->h, SQLITE_OPEN_READWRITE, NULL);
    if (rc != SQLITE_OK && !write) {
        db_close(d);
        rc = sqlite3_open_v2(path, &d->h, SQLITE_OPEN_READONLY, NULL);
    }
    if (rc != SQLITE_OK) {
        md_status st = db_fail(d, "cannot open");
        db_close(d);
        return st;
    }
    sqlite3_busy_timeout(d->h, 2000);
    sqlite3_stmt *q = prep(d, "PRAGMA application_id");
    int app = -1;
    rc = q ? sqlite3_step(q) : SQLITE_ERROR;
    if (rc == SQLITE_ROW)
        app = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    if (rc != SQLITE_ROW) {
        md_log(MD_LOG_ERROR, "%s: not a readable Medley project: the database is damaged (%s)", path,
               sqlite3_errmsg(d->h));
        db_close(d);
        return MD_ERR_FORMAT;
    }
    if (app != MD_PROJECT_APP_ID) {
        md_log(MD_LOG_ERROR, "%s: an SQLite database, but not a Medley project", path);
        db_close(d);
        return MD_ERR_FORMAT;
    }
    q = prep(d, "PRAGMA quick_check");
    char *verdict = NULL;
    rc = q ? sqlite3_step(q) : SQLITE_ERROR;
    if (rc == SQLITE_ROW)
        verdict = col_text(q, 0);
    sqlite3_finalize(q);
    if (!verdict || strcmp(verdict, "ok") != 0) {
        /* SQLite lists every problem, a line each, after a heading: the
         * first problem says enough */
        const char *why = verdict ? verdict : sqlite3_errmsg(d->h);
        if (verdict && strncmp(verdict, "***", 3) == 0 && strchr(verdict, '\n'))
            why = strchr(verdict, '\n') + 1;
        md_log(MD_LOG_ERROR, "%s: the project file is damaged (%.*s)", path, (int)strcspn(why, "\n"), why);
        free(verdict);
        db_close(d);
        return MD_ERR_FORMAT;
    }
    free(verdict);
    q = prep(d, "SELECT value FROM meta WHERE key = 'schema'");
    *version = 0;
    if (q && sqlite3_step(q) == SQLITE_ROW)
        *version = atoi((const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    if (*version < 1) {
        md_log(MD_LOG_ERROR, "%s: the project file is damaged (no schema version)", path);
        db_close(d);
        return MD_ERR_FORMAT;
    }
    if (*version > MD_PROJECT_SCHEMA) {
        md_log(MD_LOG_ERROR, "%s: made by a newer Medley (project schema %d; this one reads up to %d)", path,
               *version, MD_PROJECT_SCHEMA);
        db_close(d);
        return MD_ERR_FORMAT;
    }
    return MD_OK;
}

static md_status migrate(const db *d, int version)
{
    for (int v = version; v < MD_PROJECT_SCHEMA; v++) {
        md_status st = exec(d, migrations[v]);
        if (st != MD_OK)
            return st;
    }
    return MD_OK;
}

/* A new, complete database at tmp. */
static md_status write_new(const md_project *p, const char *tmp)
{
    unlink(tmp);
    db d = {NULL, tmp};
    if (sqlite3_open_v2(tmp, &d.h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        md_status st = db_fail(&d, "cannot create");
        db_close(&d);
        return st;
    }
    char pragma[64];
    snprintf(pragma, sizeof pragma, "PRAGMA application_id = %d;", MD_PROJECT_APP_ID);
    md_status st = exec(&d, pragma);
    if (st == MD_OK)
        st = exec(&d, "BEGIN");
    if (st == MD_OK)
        st = exec(&d, schema_sql);
    if (st == MD_OK)
        st = write_rows(&d, p);
    if (st == MD_OK)
        st = exec(&d, "COMMIT");
    if (sqlite3_close(d.h) != SQLITE_OK && st == MD_OK)
        st = db_fail(&d, "cannot close");
    return st;
}

static void fsync_dir_of(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

md_status md_project_save(md_project *p, const char *path)
{
    md_status st;
    bool same = p->saved_path && strcmp(p->saved_path, path) == 0 && access(path, F_OK) == 0;
    if (same) {
        /* the file this project came from: update it in one transaction */
        db d;
        int version;
        st = db_open_project(&d, path, true, &version);
        if (st == MD_OK) {
            st = exec(&d, "PRAGMA synchronous = FULL; BEGIN IMMEDIATE");
            if (st == MD_OK)
                st = migrate(&d, version);
            if (st == MD_OK)
                st = write_rows(&d, p);
            if (st == MD_OK)
                st = exec(&d, "COMMIT");
            else
                sqlite3_exec(d.h, "ROLLBACK", NULL, NULL, NULL);
            db_close(&d);
        }
        if (st == MD_OK) {
            p->saved_generation++;
            return MD_OK;
        }
        /* the file went bad under us: fall back to a complete rewrite */
    }
    size_t n = strlen(path) + 16;
    char *tmp = malloc(n);
    if (!tmp)
        return MD_ERR_ALLOC;
    snprintf(tmp, n, "%s.saving", path);
    st = write_new(p, tmp);
    if (st == MD_OK && rename(tmp, path) != 0) {
        md_log(MD_LOG_ERROR, "%s: cannot save: %s", path, strerror(errno));
        st = MD_ERR_IO;
    }
    if (st != MD_OK)
        unlink(tmp);
    else
        fsync_dir_of(path);
    free(tmp);
    if (st == MD_OK) {
        char *sp = strdup(path);
        if (sp) {
            free(p->saved_path);
            p->saved_path = sp;
        }
        p->saved_generation++;
    }
    return st;
}

/* Blob row -> shared md_blob, cached by row id for the load. */
typedef struct blob_cache {
    int64_t *ids;
    md_blob **b;
    int n, cap;
} blob_cache;

static md_blob *load_blob(const db *d, blob_cache *c, int64_t id)
{
    for (int i = 0; i < c->n; i++)
        if (c->ids[i] == id)
            return md_blob_ref(c->b[i]);
    sqlite3_stmt *q = prep(d, "SELECT bytes FROM blobs WHERE id = ?1");
    if (!q)
        return NULL;
    sqlite3_bind_int64(q, 1, id);
    md_blob *b = NULL;
    if (sqlite3_step(q) == SQLITE_ROW)
        b = md_blob_new(sqlite3_column_blob(q, 0), (size_t)sqlite3_column_bytes(q, 0));
    else
        md_log(MD_LOG_ERROR, "%s: the project file is damaged (media %lld is missing)", d->path, (long long)id);
    sqlite3_finalize(q);
    if (b && c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 16;
        int64_t *ids = realloc(c->ids, sizeof *ids * (size_t)cap);
        md_blob **bs = ids ? realloc(c->b, sizeof *bs * (size_t)cap) : NULL;
        if (ids)
            c->ids = ids;
        if (bs) {
            c->b = bs;
            c->cap = cap;
        }
    }
    if (b && c->n < c->cap) {
        c->ids[c->n] = id;
        c->b[c->n++] = md_blob_ref(b);
    }
    return b;
}

static bool modality_ok(int m) { return m >= MD_MOD_TEXT && m <= MD_MOD_VIDEO; }

md_status md_project_load(md_project *p, const char *path)
{
    md_project_init(p);
    db d;
    int version;
    md_status st = db_open_project(&d, path, false, &version);
    if (st != MD_OK)
        return st;
    blob_cache bc = {0};
    st = MD_OK;
    int64_t next_id = 1;
    sqlite3_stmt *q = prep(&d, "SELECT key, value FROM meta");
    while (q && sqlite3_step(q) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(q, 0);
        if (k && strcmp(k, "settings") == 0 && sqlite3_column_type(q, 1) != SQLITE_NULL)
            p->settings = col_text(q, 1);
        else if (k && strcmp(k, "next_id") == 0)
            next_id = sqlite3_column_int64(q, 1);
    }
    sqlite3_finalize(q);
    q = prep(&d, version >= 2 ? "SELECT id, modality, name, text, weight, muted, blob FROM inputs ORDER BY position"
                              : "SELECT id, modality, name, text, weight, 0, blob FROM inputs ORDER BY position");
    if (!q)
        st = MD_ERR_FORMAT;
    int64_t max_id = 0;
    while (st == MD_OK && sqlite3_step(q) == SQLITE_ROW) {
        md_proj_input in = {0};
        in.id = sqlite3_column_int64(q, 0);
        int m = sqlite3_column_int(q, 1);
        in.name = col_text(q, 2);
        in.text = col_text(q, 3);
        in.weight = sqlite3_column_double(q, 4);
        in.muted = sqlite3_column_int(q, 5) != 0;
        if (!modality_ok(m) || !isfinite(in.weight) || (m == MD_MOD_TEXT) != (in.text != NULL) ||
            (m != MD_MOD_TEXT && sqlite3_column_type(q, 6) == SQLITE_NULL)) {
            md_log(MD_LOG_ERROR, "%s: the project file is damaged (input %lld is inconsistent)", path,
                   (long long)in.id);
            input_free(&in);
            st = MD_ERR_FORMAT;
            break;
        }
        in.modality = (md_modality)m;
        if (m != MD_MOD_TEXT && !(in.media = load_blob(&d, &bc, sqlite3_column_int64(q, 6)))) {
            input_free(&in);
            st = MD_ERR_FORMAT;
            break;
        }
        if (!board_reserve(&p->board, p->board.n + 1)) {
            input_free(&in);
            st = MD_ERR_ALLOC;
            break;
        }
        max_id = MD_MAX(max_id, in.id);
        p->board.in[p->board.n++] = in;
    }
    sqlite3_finalize(q);
    q = st == MD_OK ? prep(&d, version >= 2 ? "SELECT id, created, job, state, error FROM runs ORDER BY position"
                                            : "SELECT id, created, job, state, NULL FROM runs ORDER BY position")
                    : NULL;
    sqlite3_stmt *oq = q ? prep(&d, "SELECT modality, name, blob FROM outputs WHERE run = ?1 ORDER BY position")
                         : NULL;
    if (st == MD_OK && (!q || !oq))
        st = MD_ERR_FORMAT;
    while (st == MD_OK && sqlite3_step(q) == SQLITE_ROW) {
        md_proj_output outs[8];
        int nout = 0;
        int64_t id = sqlite3_column_int64(q, 0);
        int state = sqlite3_column_int(q, 3);
        sqlite3_reset(oq);
        sqlite3_bind_int64(oq, 1, id);
        while (st == MD_OK && sqlite3_step(oq) == SQLITE_ROW) {
            int m = sqlite3_column_int(oq, 0);
            if (nout == 8 || !modality_ok(m)) {
                md_log(MD_LOG_ERROR, "%s: the project file is damaged (run %lld's outputs)", path, (long long)id);
                st = MD_ERR_FORMAT;
                break;
            }
            outs[nout].modality = (md_modality)m;
            outs[nout].name = (char *)sqlite3_column_text(oq, 1);
            outs[nout].name = outs[nout].name ? strdup(outs[nout].name) : NULL;
            outs[nout].media = load_blob(&d, &bc, sqlite3_column_int64(oq, 2));
            nout++;
            if (!outs[nout - 1].media)
                st = MD_ERR_FORMAT;
        }
        if (st == MD_OK && (state < MD_RUN_DONE || state > MD_RUN_CANCELLED)) {
            md_log(MD_LOG_ERROR, "%s: the project file is damaged (run %lld's state)", path, (long long)id);
            st = MD_ERR_FORMAT;
        }
        if (st == MD_OK) {
            char *job = col_text(q, 2), *err = col_text(q, 4);
            int i = md_project_add_run(p, job, (md_run_state)state, err, outs, nout);
            free(job);
            free(err);
            if (i < 0)
                st = MD_ERR_ALLOC;
            else {
                p->runs[i].id = id;
                p->runs[i].created = sqlite3_column_int64(q, 1);
                max_id = MD_MAX(max_id, id);
            }
        }
        for (int k = 0; k < nout; k++) {
            free(outs[k].name);
            md_blob_unref(outs[k].media);
        }
    }
    sqlite3_finalize(q);
    sqlite3_finalize(oq);
    for (int i = 0; i < bc.n; i++)
        md_blob_unref(bc.b[i]);
    free(bc.ids);
    free(bc.b);
    db_close(&d);
    if (st != MD_OK) {
        md_project_free(p);
        return st;
    }
    p->next_id = MD_MAX(next_id, max_id + 1);
    p->saved_path = strdup(path);
    return MD_OK;
}
