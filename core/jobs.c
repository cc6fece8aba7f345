/* jobs.c — see jobs.h. */
#include "jobs.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct job {
    int64_t id;
    md_job_state state;
    md_job_fn run;
    void *task;
    void (*task_free)(void *);
    volatile int cancel;
    md_status result;
    char error[512];
    struct job *next;
} job;

struct md_job_ctx {
    md_jobs *q;
    job *j;
};

struct md_jobs {
    pthread_mutex_t mu;
    pthread_cond_t wake;      /* work queued, or shutting down */
    pthread_cond_t done;      /* a job finished */
    pthread_t worker;
    job *head;                /* every job not yet freed, in submission order */
    int64_t next_id;
    bool stop;
    md_job_report_fn on_report;
    void *user;
};

static const char *const state_names[] = {"queued", "running", "done", "failed", "cancelled"};

const char *md_job_state_name(md_job_state s)
{
    return (unsigned)s < 5 ? state_names[s] : "unknown";
}

static void report(md_jobs *q, const md_job_report *r)
{
    if (q->on_report)
        q->on_report(r, q->user);
}

static job *find(md_jobs *q, int64_t id)
{
    for (job *j = q->head; j; j = j->next)
        if (j->id == id)
            return j;
    return NULL;
}

/* With q->mu held: the job, or NULL after unlocking and logging. */
static job *find_locked(md_jobs *q, int64_t id)
{
    job *j = find(q, id);
    if (!j) {
        pthread_mutex_unlock(&q->mu);
        md_log(MD_LOG_ERROR, "jobs: no job %lld", (long long)id);
    }
    return j;
}

static void *worker_main(void *arg)
{
    md_jobs *q = arg;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        job *j = q->head;
        while (j && j->state != MD_JOB_QUEUED)
            j = j->next;
        if (!j) {
            if (q->stop)
                break;
            pthread_cond_wait(&q->wake, &q->mu);
            continue;
        }
        j->state = MD_JOB_RUNNING;
        pthread_mutex_unlock(&q->mu);

        md_job_report r = {.id = j->id, .state = MD_JOB_RUNNING};
        report(q, &r);
        md_job_ctx ctx = {q, j};
        md_clear_error();
        md_status st = j->cancel ? MD_ABORTED : j->run(j->task, &ctx);
        if (st != MD_OK && st != MD_ABORTED)
            snprintf(j->error, sizeof j->error, "%s", md_last_error()[0] ? md_last_error() : md_status_str(st));
        if (j->task_free)
            j->task_free(j->task);
        j->task = NULL;

        pthread_mutex_lock(&q->mu);
        j->result = st;
        j->state = st == MD_OK ? MD_JOB_DONE : st == MD_ABORTED ? MD_JOB_CANCELLED : MD_JOB_FAILED;
        md_job_report fin = {.id = j->id, .state = j->state, .progress = st == MD_OK ? 1.0 : 0.0,
                             .error = j->state == MD_JOB_FAILED ? j->error : NULL};
        pthread_mutex_unlock(&q->mu);
        report(q, &fin);
        pthread_mutex_lock(&q->mu);
        pthread_cond_broadcast(&q->done);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

md_jobs *md_jobs_new(md_job_report_fn on_report, void *user)
{
    md_jobs *q = calloc(1, sizeof *q);
    if (!q) {
        md_log(MD_LOG_ERROR, "jobs: out of memory");
        return NULL;
    }
    q->on_report = on_report;
    q->user = user;
    q->next_id = 1;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->wake, NULL);
    pthread_cond_init(&q->done, NULL);
    if (pthread_create(&q->worker, NULL, worker_main, q) != 0) {
        md_log(MD_LOG_ERROR, "jobs: cannot start the worker thread");
        pthread_cond_destroy(&q->done);
        pthread_cond_destroy(&q->wake);
        pthread_mutex_destroy(&q->mu);
        free(q);
        return NULL;
    }
    return q;
}

void md_jobs_free(md_jobs *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->mu);
    q->stop = true;
    for (job *j = q->head; j; j = j->next)
        if (j->state == MD_JOB_QUEUED || j->state == MD_JOB_RUNNING)
            j->cancel = 1;
    pthread_cond_broadcast(&q->wake);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->worker, NULL);
    for (job *j = q->head, *n; j; j = n) {
        n = j->next;
        if (j->task_free && j->task)
            j->task_free(j->task);
        free(j);
    }
    pthread_cond_destroy(&q->done);
    pthread_cond_destroy(&q->wake);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

int64_t md_jobs_submit(md_jobs *q, md_job_fn run, void *task, void (*task_free)(void *))
{
    job *j = calloc(1, sizeof *j);
    if (!j) {
        md_log(MD_LOG_ERROR, "jobs: out of memory");
        return -1;
    }
    j->run = run;
    j->task = task;
    j->task_free = task_free;
    pthread_mutex_lock(&q->mu);
    if (q->stop) {
        pthread_mutex_unlock(&q->mu);
        free(j);
        md_log(MD_LOG_ERROR, "jobs: the queue is shutting down");
        return -1;
    }
    j->id = q->next_id++;
    j->state = MD_JOB_QUEUED;
    job **tail = &q->head;
    while (*tail)
        tail = &(*tail)->next;
    *tail = j;
    int64_t id = j->id;
    pthread_cond_broadcast(&q->wake);
    pthread_mutex_unlock(&q->mu);
    md_job_report r = {.id = id, .state = MD_JOB_QUEUED};
    report(q, &r);
    return id;
}

md_status md_jobs_cancel(md_jobs *q, int64_t id)
{
    pthread_mutex_lock(&q->mu);
    job *j = find_locked(q, id);
    if (!j)
        return MD_ERR_INVALID;
    bool was_queued = j->state == MD_JOB_QUEUED;
    if (was_queued || j->state == MD_JOB_RUNNING)
        j->cancel = 1;
    if (was_queued) {
        /* it never starts: finished here, its task freed */
        j->state = MD_JOB_CANCELLED;
        j->result = MD_ABORTED;
        void *task = j->task;
        void (*tf)(void *) = j->task_free;
        j->task = NULL;
        pthread_cond_broadcast(&q->done);
        pthread_mutex_unlock(&q->mu);
        if (tf && task)
            tf(task);
        md_job_report r = {.id = id, .state = MD_JOB_CANCELLED};
        report(q, &r);
        return MD_OK;
    }
    pthread_mutex_unlock(&q->mu);
    return MD_OK;
}

md_status md_jobs_wait(md_jobs *q, int64_t id, char *msg, size_t cap)
{
    pthread_mutex_lock(&q->mu);
    job *j = find_locked(q, id);
    if (!j)
        return MD_ERR_INVALID;
    while (j->state == MD_JOB_QUEUED || j->state == MD_JOB_RUNNING)
        pthread_cond_wait(&q->done, &q->mu);
    md_status st = j->result;
    if (msg && cap)
        snprintf(msg, cap, "%s", j->error);
    pthread_mutex_unlock(&q->mu);
    return st;
}

md_job_state md_jobs_state(md_jobs *q, int64_t id)
{
    pthread_mutex_lock(&q->mu);
    job *j = find(q, id);
    md_job_state s = j ? j->state : MD_JOB_FAILED;
    pthread_mutex_unlock(&q->mu);
    return s;
}

int md_jobs_pending(md_jobs *q)
{
    int n = 0;
    pthread_mutex_lock(&q->mu);
    for (job *j = q->head; j; j = j->next)
        n += j->state == MD_JOB_QUEUED || j->state == MD_JOB_RUNNING;
    pthread_mutex_unlock(&q->mu);
    return n;
}

bool md_job_cancelled(const md_job_ctx *c)
{
    return c->j->cancel != 0;
}

const volatile int *md_job_cancel_flag(const md_job_ctx *c)
{
    return &c->j->cancel;
}

void md_job_report_progress(md_job_ctx *c, const char *stage, int64_t step, int64_t steps, double progress,
                            const void *preview, int preview_kind)
{
    md_job_report r = {.id = c->j->id, .state = MD_JOB_RUNNING, .stage = stage, .step = step, .steps = steps,
                       .progress = progress < 0 ? 0 : progress > 1 ? 1 : progress, .preview = preview,
                       .preview_kind = preview ? preview_kind : 0};
    report(c->q, &r);
}
