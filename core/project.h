/* project.h — a Medley project (.medley): the inputs board, the runs with
 * their jobs, and every output, in one SQLite database, so a project file
 * moves as one piece and a saved project never loses work.
 *
 *   md_project p;
 *   md_project_init(&p);
 *   md_project_add_text(&p, "a red seven", 1.0);
 *   md_project_add_media(&p, MD_MOD_IMAGE, "seven.png", bytes, n, 0.5);
 *   md_project_save(&p, "work.medley");        // atomic: all of it or none
 *   md_project_free(&p);
 *   md_project_load(&p, "work.medley");        // refuses foreign/corrupt files
 *
 * In memory a project is plain data. Media are immutable, reference-counted
 * blobs (md_blob), so a copy of the board (md_board_copy, for undo) costs
 * no media bytes; a file stores each distinct blob once (found by hash and
 * size), so a later save of the same file updates the board's rows and adds
 * only what is new, in one transaction. A save to another file (or over a file that is not this
 * project) writes a complete new database beside it and renames it into
 * place. SQLite's journal makes either atomic: a crash or kill during a save
 * leaves the file as the last completed save left it.
 *
 * Loading refuses, with a message naming the file and the reason: a file
 * that is not an SQLite database; an SQLite database of another program
 * (application id); a project from a newer Medley (schema version); a
 * damaged or truncated file (SQLite's integrity check). Older schema
 * versions are migrated in memory (the file itself is upgraded at its next
 * save).
 *
 * Schema (version 2): meta(key, value); inputs(id, position, modality, name,
 * text, weight, muted, blob); runs(id, position, created, job, state, error);
 * outputs(run, position, modality, name, blob); blobs(id, hash, bytes).
 * Version 1 had neither inputs.muted nor runs.error.
 */
#ifndef MEDLEY_PROJECT_H
#define MEDLEY_PROJECT_H

#include "space.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_PROJECT_SCHEMA 2
#define MD_PROJECT_APP_ID 0x4d444c59   /* "MDLY": SQLite's application_id of a Medley project */

/* Immutable media bytes, shared by reference. */
typedef struct md_blob {
    int refs;
    uint64_t hash;                   /* FNV-1a of the bytes */
    size_t size;
    uint8_t *data;
} md_blob;

md_blob *md_blob_new(const void *data, size_t size);   /* copies; NULL: out of memory */
md_blob *md_blob_ref(md_blob *b);
void md_blob_unref(md_blob *b);

typedef struct md_proj_input {
    int64_t id;                      /* unique in the project, kept across saves */
    md_modality modality;
    char *name;                      /* a file's name, or the start of a text */
    char *text;                      /* text inputs (else NULL) */
    md_blob *media;                  /* file inputs: the file's bytes (else NULL) */
    double weight;
    bool muted;
} md_proj_input;

/* The inputs board: what undo and redo restore. */
typedef struct md_board {
    md_proj_input *in;
    int n, cap;
} md_board;

md_status md_board_copy(md_board *dst, const md_board *src);   /* dst uninitialised on entry */
void md_board_free(md_board *b);
bool md_board_equal(const md_board *a, const md_board *b);
/* Moves input i to position j (the others shift). */
void md_board_move(md_board *b, int i, int j);
void md_board_remove(md_board *b, int i);

typedef enum md_run_state { MD_RUN_DONE = 0, MD_RUN_FAILED = 1, MD_RUN_CANCELLED = 2 } md_run_state;

typedef struct md_proj_output {
    md_modality modality;
    char *name;                      /* file name it was exported as ("medley-7-image.png") */
    md_blob *media;                  /* the encoded file: PNG, MP4, WAV or TXT bytes */
} md_proj_output;

typedef struct md_proj_run {
    int64_t id;
    int64_t created;                 /* Unix seconds */
    char *job;                       /* the job, JSON (as outputs carry it) */
    md_run_state state;
    char *error;                     /* FAILED: why */
    md_proj_output *out;
    int nout;
} md_proj_run;

typedef struct md_project {
    md_board board;
    md_proj_run *runs;               /* oldest first */
    int nruns, runs_cap;
    char *settings;                  /* the studio's output choices and parameters, JSON (may be NULL) */
    int64_t next_id;
    char *saved_path;                /* the file the blob ids refer to (the last save or load) */
    int64_t saved_generation;        /* bumped by every save; the studio compares for "dirty" */
} md_project;

void md_project_init(md_project *p);
void md_project_free(md_project *p);

/* Board edits. Weights must be finite. Return the new input's index or -1
 * (out of memory, bad weight: logged). */
int md_project_add_text(md_project *p, const char *text, double weight);
int md_project_add_media(md_project *p, md_modality m, const char *name, const void *data, size_t size,
                         double weight);
/* Appends a run (takes copies); its outputs' media are referenced. Returns
 * its index or -1. */
int md_project_add_run(md_project *p, const char *job, md_run_state state, const char *error,
                       const md_proj_output *out, int nout);
void md_project_remove_run(md_project *p, int i);
md_status md_project_set_settings(md_project *p, const char *json);

/* Saves everything to path, atomically (see above). MD_ERR_IO naming the
 * file on failure; the file is then as it was. */
md_status md_project_save(md_project *p, const char *path);
/* p uninitialised on entry; on failure p is left empty (initialised) and
 * the reason logged: MD_ERR_IO (cannot open), MD_ERR_FORMAT (not a Medley
 * project, damaged, or too new). */
md_status md_project_load(md_project *p, const char *path);

/* True when both hold the same board, runs (jobs, states, output bytes)
 * and settings. */
bool md_project_equal(const md_project *a, const md_project *b);

#ifdef __cplusplus
}
#endif
#endif
