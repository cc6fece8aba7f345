/* test_jobs.c — the run queue: order, results and error messages, progress
 * reports, cancel of a running job (it returns promptly) and of a queued
 * one (it never starts), tasks freed exactly once, shutdown with work
 * left. */
#include "check.h"
#include "jobs.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* what the jobs saw */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int order[16], norder, frees, progress_reports, finals[5];
static double cancel_seen_at;

typedef struct task {
    int tag;
    int run_ms;              /* loops of 1 ms, checking the cancel flag */
    md_status result;
    int reports;
} task;

static task *new_task(int tag, int run_ms, md_status result, int reports)
{
    task *t = calloc(1, sizeof *t);
    t->tag = tag;
    t->run_ms = run_ms;
    t->result = result;
    t->reports = reports;
    return t;
}

static void free_task(void *p)
{
    pthread_mutex_lock(&mu);
    frees++;
    pthread_mutex_unlock(&mu);
    free(p);
}

static md_status run_task(void *p, md_job_ctx *c)
{
    task *t = p;
    pthread_mutex_lock(&mu);
    order[norder++] = t->tag;
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < t->reports; i++)
        md_job_report_progress(c, "counting", i + 1, t->reports, (i + 1.0) / t->reports, NULL, 0);
    for (int ms = 0; ms < t->run_ms; ms++) {
        if (md_job_cancelled(c)) {
            cancel_seen_at = md_time_now();
            return MD_ABORTED;
        }
        sleep_ms(1);
    }
    if (t->result != MD_OK)
        md_log(MD_LOG_ERROR, "task %d failed on purpose", t->tag);
    return t->result;
}

static void on_report(const md_job_report *r, void *user)
{
    (void)user;
    pthread_mutex_lock(&mu);
    if (r->state == MD_JOB_RUNNING && r->stage)
        progress_reports++;
    if (r->state >= MD_JOB_DONE)
        finals[r->state]++;
    pthread_mutex_unlock(&mu);
}


int main(void)
{
    md_log_set_callback(check_quiet_log, NULL);
    md_jobs *q = md_jobs_new(on_report, NULL);
    CHECK(q != NULL, "a queue starts");

    /* order, results, messages, progress */
    int64_t a = md_jobs_submit(q, run_task, new_task(1, 20, MD_OK, 5), free_task);
    int64_t b = md_jobs_submit(q, run_task, new_task(2, 0, MD_ERR_INVALID, 0), free_task);
    int64_t c = md_jobs_submit(q, run_task, new_task(3, 0, MD_OK, 0), free_task);
    CHECK(a > 0 && b > a && c > b, "ids grow (%lld %lld %lld)", (long long)a, (long long)b, (long long)c);
    char msg[256];
    md_status sa = md_jobs_wait(q, a, msg, sizeof msg);
    md_status sb = md_jobs_wait(q, b, msg, sizeof msg);
    CHECK(sa == MD_OK && sb == MD_ERR_INVALID && strstr(msg, "task 2 failed on purpose"),
          "results come back, with the failing job's message: \"%s\"", msg);
    md_jobs_wait(q, c, NULL, 0);
    CHECK(norder == 3 && order[0] == 1 && order[1] == 2 && order[2] == 3, "jobs run in submission order");
    CHECK(md_jobs_state(q, a) == MD_JOB_DONE && md_jobs_state(q, b) == MD_JOB_FAILED, "states: %s, %s",
          md_job_state_name(md_jobs_state(q, a)), md_job_state_name(md_jobs_state(q, b)));
    CHECK(progress_reports == 5, "progress reported (%d of 5)", progress_reports);

    /* cancel a running job: it returns promptly */
    int64_t r = md_jobs_submit(q, run_task, new_task(4, 10000, MD_OK, 0), free_task);
    int64_t queued = md_jobs_submit(q, run_task, new_task(5, 0, MD_OK, 0), free_task);
    while (md_jobs_state(q, r) != MD_JOB_RUNNING)
        sleep_ms(1);
    sleep_ms(30);
    CHECK(md_jobs_cancel(q, queued) == MD_OK && md_jobs_state(q, queued) == MD_JOB_CANCELLED,
          "a queued job cancels at once");
    double t0 = md_time_now();
    md_jobs_cancel(q, r);
    md_status sr = md_jobs_wait(q, r, NULL, 0);
    double latency = md_time_now() - t0;
    CHECK(sr == MD_ABORTED && md_jobs_state(q, r) == MD_JOB_CANCELLED,
          "a running job cancels (the job saw it %.1f ms after the request, wait returned after %.1f ms)",
          1000 * (cancel_seen_at - t0), 1000 * latency);
    CHECK(latency < 1.0, "cancel is prompt (%.1f ms; the goal is 100 ms, measured above)", 1000 * latency);
    sleep_ms(20);
    bool five_ran = false;
    for (int i = 0; i < norder; i++)
        five_ran |= order[i] == 5;
    CHECK(!five_ran, "the cancelled queued job never started");
    CHECK(md_jobs_cancel(q, 999) == MD_ERR_INVALID, "an unknown id is an error");
    CHECK(md_jobs_cancel(q, a) == MD_OK && md_jobs_state(q, a) == MD_JOB_DONE, "cancelling a finished job leaves it");
    CHECK(frees == 5, "every finished task freed once (%d of 5)", frees);

    /* shutdown with work left: the running one stops, the rest never run */
    for (int i = 0; i < 3; i++)
        md_jobs_submit(q, run_task, new_task(10 + i, 10000, MD_OK, 0), free_task);
    sleep_ms(20);
    t0 = md_time_now();
    md_jobs_free(q);
    CHECK(md_time_now() - t0 < 2.0 && frees == 8, "shutdown with jobs left: %.1f ms, tasks freed %d of 8",
          1000 * (md_time_now() - t0), frees);
    CHECK(finals[MD_JOB_DONE] == 2 && finals[MD_JOB_FAILED] == 1 && finals[MD_JOB_CANCELLED] >= 3,
          "final reports: %d done, %d failed, %d cancelled", finals[MD_JOB_DONE], finals[MD_JOB_FAILED],
          finals[MD_JOB_CANCELLED]);
    md_log_set_callback(NULL, NULL);
    return check_done();
}
