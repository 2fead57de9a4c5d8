/* Redrive jobs: each runs in a thread of its own, paced at its rate,
 * reports its progress and stops when cancelled. The last CONSOLE_JOBS_MAX
 * are kept (a finished one makes room for a new one), and GET /api/jobs
 * lists them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console.h"

static const char *state_name(console_job_state s)
{
    static const char *const names[] = {"running", "done", "cancelled", "failed"};
    return names[s];
}

/* The job as JSON. Called with c->lock held. */
static json_t *job_json(const console_job *j)
{
    char id[16];
    snprintf(id, sizeof id, "%u", j->id);
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:s, s:I, s:I, s:f, s:o, s:o, s:o}", "id", id,
                     "kind", "redrive", "queue", j->queue, "group",
                     j->group[0] != '\0' ? json_string(j->group) : json_null(), "match",
                     j->match[0] != '\0' ? json_string(j->match) : json_null(), "message_id",
                     j->message_id[0] != '\0' ? json_string(j->message_id) : json_null(), "state",
                     state_name(j->state), "moved", (json_int_t)j->moved, "total",
                     (json_int_t)j->total, "rate", j->rate, "error",
                     j->error[0] != '\0' ? console_json_text(j->error) : json_null(), "started",
                     console_time_json(j->started_us), "ended", console_time_json(j->ended_us));
}

static bool job_should_stop(void *arg)
{
    const console_job *j = arg;
    return atomic_load(&j->cancel);
}

static void job_progress(void *arg, size_t moved, size_t total)
{
    console_job *j = arg;
    pthread_mutex_lock(&j->c->lock);
    j->moved = moved;
    j->total = total;
    pthread_mutex_unlock(&j->c->lock);
}

static void *job_main(void *arg)
{
    console_job *j = arg;
    console *c = j->c;
    txm_error err = {0};
    size_t moved = 0;
    txm_status st;
    if (j->message_id[0] != '\0') {
        st = txm_transport_dlq_redrive(c->t, j->queue, j->message_id, &moved, &err);
        if (st == TXM_OK && moved == 0)
            st = txm_errf(&err, TXM_NOT_FOUND, "no dead letter %s in %s", j->message_id, j->queue);
    } else {
        txm_dlq_redrive_options o;
        txm_dlq_redrive_options_init(&o);
        o.group_id = j->group[0] != '\0' ? j->group : NULL;
        o.match = j->match[0] != '\0' ? j->match : NULL;
        o.rate_per_s = j->rate;
        o.should_stop = job_should_stop;
        o.progress = job_progress;
        o.ctx = j;
        st = txm_transport_dlq_redrive_group(c->t, j->queue, &o, &moved, &err);
    }
    pthread_mutex_lock(&c->lock);
    j->moved = moved;
    if (j->message_id[0] != '\0' || j->total < moved)
        j->total = moved;
    j->state = st != TXM_OK ? JOB_FAILED : atomic_load(&j->cancel) ? JOB_CANCELLED : JOB_DONE;
    snprintf(j->error, sizeof j->error, "%s", st == TXM_OK ? "" : err.text);
    j->ended_us = txm_now_us();
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* Makes room for one more job: drops the oldest finished one when the list
 * is full. Returns it (to join and free outside the lock), or NULL; *full
 * when every job is still running. Called with c->lock held. */
static console_job *evict(console *c, bool *full)
{
    *full = false;
    if (c->n_jobs < CONSOLE_JOBS_MAX)
        return NULL;
    for (size_t i = 0; i < c->n_jobs; i++) {
        if (c->jobs[i]->state == JOB_RUNNING)
            continue;
        console_job *old = c->jobs[i];
        memmove(&c->jobs[i], &c->jobs[i + 1], (c->n_jobs - i - 1) * sizeof c->jobs[0]);
        c->n_jobs--;
        return old;
    }
    *full = true;
    return NULL;
}

static void job_free(console_job *j)
{
    if (j != NULL && j->joinable)
        pthread_join(j->thread, NULL);
    free(j);
}

void console_job_start(console *c, txm_http_request *req, const console_job *tmpl)
{
    console_job *j = malloc(sizeof *j);
    if (j == NULL) {
        console_reply_error(req, 500, "SYSTEM_ERROR", "out of memory");
        return;
    }
    *j = *tmpl;
    j->c = c;
    atomic_init(&j->cancel, false);
    j->state = JOB_RUNNING;
    j->started_us = txm_now_us();
    bool full = false;
    pthread_mutex_lock(&c->lock);
    console_job *old = evict(c, &full);
    if (!full) {
        j->id = ++c->next_job_id;
        c->jobs[c->n_jobs++] = j;
        /* Started under the lock, so the job is listed before it runs. */
        j->joinable = pthread_create(&j->thread, NULL, job_main, j) == 0;
        if (!j->joinable) {
            j->state = JOB_FAILED;
            snprintf(j->error, sizeof j->error, "cannot start a thread");
            j->ended_us = txm_now_us();
        }
    }
    json_t *doc = full ? NULL : job_json(j);
    pthread_mutex_unlock(&c->lock);
    job_free(old);
    if (full) {
        free(j);
        console_reply_error(req, 429, "TOO_MANY_JOBS", "%d jobs are running already",
                            CONSOLE_JOBS_MAX);
        return;
    }
    console_reply_json(req, 202, doc);
}

void console_jobs_stop(console *c)
{
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->n_jobs; i++)
        atomic_store(&c->jobs[i]->cancel, true);
    pthread_mutex_unlock(&c->lock);
    /* No request runs any more (the server stopped), so no job is added. */
    for (size_t i = 0; i < c->n_jobs; i++)
        job_free(c->jobs[i]);
    c->n_jobs = 0;
}

/* The job of the path's id, answering 404 when there is none. Called with
 * c->lock held. */
static console_job *find_job(console *c, txm_http_request *req)
{
    const char *id = txm_http_request_param(req, "id");
    char *end = NULL;
    unsigned long n = id != NULL ? strtoul(id, &end, 10) : 0;
    for (size_t i = 0; id != NULL && *end == '\0' && id[0] != '\0' && i < c->n_jobs; i++)
        if (c->jobs[i]->id == n)
            return c->jobs[i];
    return NULL;
}

static void get_jobs(void *ctx, txm_http_request *req)
{
    console *c = ctx;
    if (!console_host_ok(c, req))
        return;
    json_t *arr = json_array();
    pthread_mutex_lock(&c->lock);
    for (size_t i = c->n_jobs; arr != NULL && i > 0; i--)
        json_array_append_new(arr, job_json(c->jobs[i - 1]));
    pthread_mutex_unlock(&c->lock);
    console_reply_json(req, 200, json_pack("{s:o}", "jobs", arr));
}

/* Answers the job of the path (cancelling it first when cancel is set),
 * or 404. */
static void answer_job(console *c, txm_http_request *req, bool cancel)
{
    pthread_mutex_lock(&c->lock);
    console_job *j = find_job(c, req);
    if (j != NULL && cancel)
        atomic_store(&j->cancel, true);
    json_t *doc = j != NULL ? job_json(j) : NULL;
    pthread_mutex_unlock(&c->lock);
    if (j == NULL)
        console_reply_error(req, 404, "UNKNOWN_JOB", "no such job");
    else
        console_reply_json(req, 200, doc);
}

static void get_job(void *ctx, txm_http_request *req)
{
    if (console_host_ok(ctx, req))
        answer_job(ctx, req, false);
}

static void post_cancel(void *ctx, txm_http_request *req)
{
    if (console_action_ok(ctx, req))
        answer_job(ctx, req, true);
}

txm_status console_api_jobs_routes(console *c, txm_error *err)
{
    txm_status st = txm_http_route(c->srv, "GET", "/api/jobs", get_jobs, c, err);
    if (st == TXM_OK)
        st = txm_http_route(c->srv, "GET", "/api/jobs/:id", get_job, c, err);
    if (st == TXM_OK)
        st = txm_http_route(c->srv, "POST", "/api/jobs/:id/cancel", post_cancel, c, err);
    return st;
}
