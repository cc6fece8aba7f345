/* jobs.h — the run queue behind `medley generate` and the studio: jobs run
 * one at a time, in the order submitted, on one worker thread; each reports
 * its stage, step and progress (with an optional preview) through a
 * callback, and can be cancelled whether it waits or runs.
 *
 * A job is a function and its task data. The function checks
 * md_job_cancelled() often (the generators do at every step, so a cancel
 * lands within 100 ms) and returns MD_ABORTED when it stops early. Reports
 * come on the worker thread: a UI hands them to its main loop (the studio
 * uses g_idle_add), the command line prints them. A job's error message is
 * kept with it (md_last_error is per thread).
 *
 *   md_jobs *q = md_jobs_new(on_report, ui);
 *   int64_t id = md_jobs_submit(q, run_generation, task, task_free);
 *   md_jobs_cancel(q, id);                    // from any thread
 *   md_status st = md_jobs_wait(q, id, msg, sizeof msg);
 *   md_jobs_free(q);                          // cancels what is left, joins
 */
#ifndef MEDLEY_JOBS_H
#define MEDLEY_JOBS_H

#include "md.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum md_job_state {
    MD_JOB_QUEUED = 0,
    MD_JOB_RUNNING,
    MD_JOB_DONE,
    MD_JOB_FAILED,
    MD_JOB_CANCELLED
} md_job_state;

const char *md_job_state_name(md_job_state s);

typedef struct md_job_report {
    int64_t id;
    md_job_state state;
    const char *stage;        /* what runs now ("image tokens", "decoding"); may be NULL */
    int64_t step, steps;      /* within the stage */
    double progress;          /* 0..1 over the whole job */
    const void *preview;      /* the job's own preview (for example an md_image), valid during the call; may be NULL */
    int preview_kind;         /* the job's tag for what preview points at (0: none) */
    const char *error;        /* FAILED: the message */
} md_job_report;

typedef void (*md_job_report_fn)(const md_job_report *r, void *user);

typedef struct md_jobs md_jobs;
typedef struct md_job_ctx md_job_ctx;
typedef md_status (*md_job_fn)(void *task, md_job_ctx *ctx);

/* A queue and its worker thread; on_report may be NULL. */
md_jobs *md_jobs_new(md_job_report_fn on_report, void *user);
/* Cancels every job, waits for the running one to return, frees all. */
void md_jobs_free(md_jobs *q);

/* Queues run(task, ctx); task_free(task) (may be NULL) runs once the job is
 * finished with. Returns the job id (> 0), or -1 (out of memory, or the
 * queue is shutting down). */
int64_t md_jobs_submit(md_jobs *q, md_job_fn run, void *task, void (*task_free)(void *));
/* Cancels a queued job (it never starts) or asks a running one to stop.
 * MD_ERR_INVALID for an unknown id; a finished job is left as it is. */
md_status md_jobs_cancel(md_jobs *q, int64_t id);
/* Blocks until the job finishes; returns its result (MD_ABORTED when
 * cancelled) and copies its error message into msg (may be NULL). */
md_status md_jobs_wait(md_jobs *q, int64_t id, char *msg, size_t cap);
/* MD_JOB_FAILED for an unknown id. */
md_job_state md_jobs_state(md_jobs *q, int64_t id);
/* Jobs queued or running. */
int md_jobs_pending(md_jobs *q);

/* For the job function. */
bool md_job_cancelled(const md_job_ctx *c);
/* The cancel flag itself, for code that takes a `const volatile int *`. */
const volatile int *md_job_cancel_flag(const md_job_ctx *c);
void md_job_report_progress(md_job_ctx *c, const char *stage, int64_t step, int64_t steps, double progress,
                            const void *preview, int preview_kind);

#ifdef __cplusplus
}
#endif
#endif
