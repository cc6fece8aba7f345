/* test_project.c — project files (.medley): round trips through save and
 * load (new file, in-place update, save as), media stored once, undo copies
 * of the board, a save killed midway (SIGKILL to a child process, in both
 * the in-place and the new-file paths) losing nothing saved before, and the
 * refusals: missing, empty, text, PNG, another program's SQLite database,
 * truncated, damaged, newer schema; a schema-1 file migrated. */
#include "check.h"
#include "project.h"

#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[256];

static const char *at(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (uint8_t)(seed >> 56);
    }
}

/* A project with n_media file inputs of `size` bytes each, a text, and a
 * run with two outputs; `tag` makes it distinct. */
static void make_project(md_project *p, int n_media, size_t size, int tag)
{
    md_project_init(p);
    md_project_add_text(p, tag ? "a green two moving up" : "a red seven in the top left corner", 1.0);
    uint8_t *buf = malloc(size);
    for (int i = 0; i < n_media; i++) {
        fill_random(buf, size, (uint64_t)(tag * 100 + i + 1));
        char name[32];
        snprintf(name, sizeof name, "in-%d-%d.png", tag, i);
        md_project_add_media(p, i % 2 ? MD_MOD_AUDIO : MD_MOD_IMAGE, name, buf, size, 0.25 * (i + 1));
    }
    fill_random(buf, size, (uint64_t)tag + 7);
    md_proj_output out[2] = {{MD_MOD_IMAGE, "medley-7-image.png", md_blob_new(buf, size)},
                             {MD_MOD_TEXT, "medley-7-text.txt", md_blob_new("a red 7\n", 8)}};
    md_project_add_run(p, "{\"seed\":7}", MD_RUN_DONE, NULL, out, 2);
    md_project_add_run(p, "{\"seed\":8}", MD_RUN_FAILED, "no generator", NULL, 0);
    md_blob_unref(out[0].media);
    md_blob_unref(out[1].media);
    md_project_set_settings(p, tag ? "{\"outputs\":[\"image\"]}" : "{\"outputs\":[\"text\"]}");
    free(buf);
}

static long long scalar(const char *path, const char *sql)
{
    sqlite3 *h;
    long long v = -1;
    if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_stmt *q;
        if (sqlite3_prepare_v2(h, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
            v = sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
    }
    sqlite3_close(h);
    return v;
}

static void run_sql(const char *path, const char *sql)
{
    sqlite3 *h;
    sqlite3_open(path, &h);
    char *err = NULL;
    if (sqlite3_exec(h, sql, NULL, NULL, &err) != SQLITE_OK)
        fprintf(stderr, "sql: %s\n", err);
    sqlite3_free(err);
    sqlite3_close(h);
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (n)
        fwrite(p, 1, n, f);
    fclose(f);
}

static size_t read_all(const char *path, uint8_t **out)
{
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *out = malloc((size_t)n);
    size_t got = fread(*out, 1, (size_t)n, f);
    fclose(f);
    return got;
}

/* load must fail with MD_ERR_FORMAT (or IO) and a message naming the file
 * and holding `why`. */
static void check_refused(const char *path, md_status want, const char *why, const char *what)
{
    md_project p;
    md_clear_error();
    md_status st = md_project_load(&p, path);
    const char *msg = md_last_error();
    CHECK(st == want && strstr(msg, path) && strstr(msg, why) && p.board.n == 0 && p.nruns == 0,
          "%s is refused: \"%s\"", what, msg);
    md_project_free(&p);
}

static void round_trips(void)
{
    md_project a, b;
    make_project(&a, 3, 5000, 0);
    /* the same media twice: stored once */
    md_project_add_media(&a, MD_MOD_IMAGE, "again.png", a.board.in[1].media->data, a.board.in[1].media->size, 1.0);
    a.board.in[2].muted = true;
    CHECK(md_project_save(&a, at("a.medley")) == MD_OK, "a new project saves");
    CHECK(md_project_load(&b, at("a.medley")) == MD_OK && md_project_equal(&a, &b),
          "it loads back equal (%d inputs, %d runs, settings, muted flag)", b.board.n, b.nruns);
    long long blobs = scalar(at("a.medley"), "SELECT count(*) FROM blobs");
    CHECK(blobs == 5, "each distinct media is stored once (%lld blobs for 4 file inputs, one a duplicate, and 2 "
                      "outputs)", blobs);
    CHECK(access(at("a.medley.saving"), F_OK) != 0, "no temporary file is left");

    /* edit the loaded copy, save in place, load again */
    b.board.in[0].weight = -0.5;
    md_board_remove(&b.board, 1);
    md_board_move(&b.board, 0, 2);
    md_project_remove_run(&b, 1);
    md_project_add_text(&b, "a blue nine", 2.0);
    uint8_t wav[300];
    fill_random(wav, sizeof wav, 99);
    md_proj_output o = {MD_MOD_AUDIO, "medley-9-audio.wav", md_blob_new(wav, sizeof wav)};
    md_project_add_run(&b, "{\"seed\":9}", MD_RUN_CANCELLED, NULL, &o, 1);
    md_blob_unref(o.media);
    int64_t gen = b.saved_generation;
    CHECK(md_project_save(&b, at("a.medley")) == MD_OK && b.saved_generation == gen + 1, "an edited project saves "
                                                                                         "in place");
    md_project c;
    CHECK(md_project_load(&c, at("a.medley")) == MD_OK && md_project_equal(&b, &c) && !md_project_equal(&a, &c),
          "the in-place save holds the edits (%d inputs, %d runs)", c.board.n, c.nruns);
    long long orphans = scalar(at("a.medley"), "SELECT count(*) FROM blobs WHERE id NOT IN (SELECT blob FROM inputs "
                                               "WHERE blob IS NOT NULL UNION SELECT blob FROM outputs)");
    CHECK(orphans == 0, "media no longer used leave the file (%lld left)", orphans);
    int ai = md_project_add_text(&c, "one more", 1.0);
    CHECK(ai >= 0 && c.board.in[ai].id > c.runs[c.nruns - 1].id, "new ids after a load do not reuse saved ones");
    md_project_free(&c);

    /* save as: another file, equal */
    CHECK(md_project_save(&b, at("b.medley")) == MD_OK && strcmp(b.saved_path, at("b.medley")) == 0,
          "save as writes another file");
    CHECK(md_project_load(&c, at("b.medley")) == MD_OK && md_project_equal(&b, &c), "and it loads back equal");
    md_project_free(&c);

    /* undo copies share media and compare */
    md_board undo;
    CHECK(md_board_copy(&undo, &b.board) == MD_OK && md_board_equal(&undo, &b.board) &&
              undo.in[0].media == b.board.in[0].media,
          "a board copy (undo) equals the board and shares its media");
    b.board.in[0].weight += 1.0;
    CHECK(!md_board_equal(&undo, &b.board), "an edit makes them differ");
    md_board_free(&b.board);
    b.board = undo;
    md_project_free(&a);
    md_project_free(&b);
}

/* A child saves project A and project B in turn, forever; we kill it at
 * random moments. The file must then load as A or as B (never an error,
 * never a mix), and at least one save must have completed. */
static void killed_saves(bool in_place)
{
    const char *path = at(in_place ? "kill-inplace.medley" : "kill-new.medley");
    md_project A, B;
    make_project(&A, 6, 600000, 0);   /* ~4 MB a save */
    make_project(&B, 6, 600000, 1);
    CHECK(md_project_save(&A, path) == MD_OK, "%s: the first save", in_place ? "in place" : "new file");
    int rounds = 8, good = 0, as_a = 0, as_b = 0;
    uint64_t seed = 12345;
    for (int r = 0; r < rounds; r++) {
        int fds[2];
        if (pipe(fds) != 0)
            break;
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            md_project *p[2] = {&A, &B};
            for (int k = 0;; k++) {
                md_project *q = p[k % 2];
                free(q->saved_path);
                q->saved_path = in_place ? strdup(path) : NULL;
                if (md_project_save(q, path) != MD_OK)
                    _exit(3);
                char c = 'x';
                if (write(fds[1], &c, 1) != 1)
                    _exit(4);
            }
        }
        close(fds[1]);
        /* wait for a couple of completed saves, then kill at a random moment */
        char c;
        for (int k = 0; k < 2; k++)
            if (read(fds[0], &c, 1) != 1)
                break;
        seed = seed * 6364136223846793005ull + 1;
        struct timespec ts = {0, (long)((seed >> 33) % 40000) * 1000L};   /* 0..40 ms */
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        close(fds[0]);
        md_project L;
        md_log_set_callback(check_quiet_log, NULL);
        md_status st = md_project_load(&L, path);
        md_log_set_callback(NULL, NULL);
        bool is_a = st == MD_OK && md_project_equal(&L, &A), is_b = st == MD_OK && md_project_equal(&L, &B);
        good += is_a || is_b;
        as_a += is_a;
        as_b += is_b;
        if (!is_a && !is_b)
            printf("     round %d: %s\n", r, st == MD_OK ? "a project that is neither A nor B" : md_last_error());
        md_project_free(&L);
    }
    CHECK(good == rounds, "%s: killed mid-save %d times, the file loads as a completed save every time (%d/%d; "
                          "%d as A, %d as B)",
          in_place ? "in place" : "new file", rounds, good, rounds, as_a, as_b);
    md_project_free(&A);
    md_project_free(&B);
}

static void refusals(void)
{
    md_log_set_callback(check_quiet_log, NULL);
    check_refused(at("missing.medley"), MD_ERR_IO, "cannot open", "a missing file");
    write_bytes(at("empty.medley"), "", 0);
    check_refused(at("empty.medley"), MD_ERR_FORMAT, "empty", "an empty file");
    write_bytes(at("text.medley"), "this is a note, not a project\n", 30);
    check_refused(at("text.medley"), MD_ERR_FORMAT, "not an SQLite database", "a text file");
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R', 0, 0};
    write_bytes(at("png.medley"), png, sizeof png);
    check_refused(at("png.medley"), MD_ERR_FORMAT, "not an SQLite database", "a PNG");
    run_sql(at("other.medley"), "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes(body) "
                                "VALUES('hello');");
    check_refused(at("other.medley"), MD_ERR_FORMAT, "not a Medley project", "another program's SQLite database");

    md_project a;
    make_project(&a, 4, 20000, 0);
    md_project_save(&a, at("good.medley"));
    uint8_t *bytes;
    size_t n = read_all(at("good.medley"), &bytes);
    write_bytes(at("truncated.medley"), bytes, n / 2);
    check_refused(at("truncated.medley"), MD_ERR_FORMAT, "damaged", "a truncated project");
    /* damage: overwrite a page in the middle (not the header page) */
    uint8_t *bad = malloc(n);
    memcpy(bad, bytes, n);
    size_t page = 4096, mid = (n / page / 2) * page;
    fill_random(bad + mid, page, 5);
    write_bytes(at("damaged.medley"), bad, n);
    check_refused(at("damaged.medley"), MD_ERR_FORMAT, "damaged", "a project with a damaged page");
    free(bad);
    free(bytes);
    md_project_save(&a, at("newer.medley"));
    run_sql(at("newer.medley"), "UPDATE meta SET value = '99' WHERE key = 'schema'");
    check_refused(at("newer.medley"), MD_ERR_FORMAT, "newer Medley", "a project from a newer Medley");
    md_project_free(&a);
    md_log_set_callback(NULL, NULL);
}

/* A schema-1 file (no inputs.muted, no runs.error) written by hand. */
static void migration(void)
{
    const char *path = at("v1.medley");
    char sql[4096];
    snprintf(sql, sizeof sql,
             "PRAGMA application_id = %d;"
             "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);"
             "CREATE TABLE blobs(id INTEGER PRIMARY KEY, hash INTEGER NOT NULL, size INTEGER NOT NULL, bytes BLOB "
             "NOT NULL);"
             "CREATE INDEX blobs_hash ON blobs(hash, size);"
             "CREATE TABLE inputs(id INTEGER PRIMARY KEY, position INTEGER NOT NULL, modality INTEGER NOT NULL,"
             " name TEXT, text TEXT, weight REAL NOT NULL, blob INTEGER);"
             "CREATE TABLE runs(id INTEGER PRIMARY KEY, position INTEGER NOT NULL, created INTEGER NOT NULL,"
             " job TEXT NOT NULL, state INTEGER NOT NULL);"
             "CREATE TABLE outputs(run INTEGER NOT NULL, position INTEGER NOT NULL, modality INTEGER NOT NULL,"
             " name TEXT, blob INTEGER NOT NULL, PRIMARY KEY(run, position));"
             "INSERT INTO meta VALUES('schema', '1'), ('app', 'medley'), ('next_id', '4');"
             "INSERT INTO blobs VALUES(1, 0, 4, x'01020304');"
             "INSERT INTO inputs VALUES(1, 0, 0, 'a red seven', 'a red seven', 1.0, NULL);"
             "INSERT INTO inputs VALUES(2, 1, 1, 'seven.png', NULL, 0.5, 1);"
             "INSERT INTO runs VALUES(3, 0, 1700000000, '{\"seed\":1}', 0);"
             "INSERT INTO outputs VALUES(3, 0, 1, 'medley-1-image.png', 1);",
             MD_PROJECT_APP_ID);
    run_sql(path, sql);
    md_project p;
    md_status st = md_project_load(&p, path);
    CHECK(st == MD_OK && p.board.n == 2 && !p.board.in[0].muted && p.board.in[1].weight == 0.5 &&
              p.board.in[1].media && p.board.in[1].media->size == 4 && p.nruns == 1 && !p.runs[0].error &&
              p.runs[0].nout == 1 && p.runs[0].created == 1700000000,
          "a schema-1 project loads (%d inputs, %d runs)", p.board.n, p.nruns);
    if (st != MD_OK)
        return;
    p.board.in[1].muted = true;
    CHECK(md_project_save(&p, path) == MD_OK, "and saves in place");
    long long schema = scalar(path, "SELECT value FROM meta WHERE key = 'schema'");
    md_project q;
    CHECK(schema == MD_PROJECT_SCHEMA && md_project_load(&q, path) == MD_OK && md_project_equal(&p, &q) &&
              q.board.in[1].muted,
          "the file is migrated to schema %lld and keeps everything, the new mute flag too", schema);
    md_project_free(&q);
    md_project_free(&p);
}

int main(void)
{
    snprintf(dir, sizeof dir, "project-test-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    round_trips();
    refusals();
    migration();
    killed_saves(true);
    killed_saves(false);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("note: could not remove %s\n", dir);
    return check_done();
}
