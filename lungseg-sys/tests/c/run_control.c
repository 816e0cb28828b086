/*
 * Compiled by tests/c_abi.rs with -std=c11 -Wall -Wextra -Werror -pedantic -pthread against
 * include/lungseg.h and linked with the library, as a host would use the run options:
 * a worker thread runs a long MC call while the main thread cancels it through a C11 atomic,
 * progress and log callbacks report to the host, and a batch of points runs in one call.
 *
 *   run_control <model.safetensors>
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lungseg.h"

#include "check.h"

/* What the host's callbacks record. */
typedef struct host {
    atomic_int cancel;
    atomic_uint_fast64_t done;
    uint64_t total;
    int log_lines[5]; /* per lungseg_log_level */
    char last_log[512];
} host;

static void on_progress(void *user, uint64_t done, uint64_t total) {
    host *h = (host *)user;
    atomic_store(&h->done, done);
    h->total = total;
}

static void on_log(void *user, uint32_t level, const char *message) {
    host *h = (host *)user;
    if (level >= LUNGSEG_LOG_ERROR && level <= LUNGSEG_LOG_DEBUG) {
        h->log_lines[level]++;
    }
    snprintf(h->last_log, sizeof h->last_log, "%s", message);
}

static lungseg_run_options run_options(host *h, lungseg_log_level level) {
    lungseg_run_options r;
    memset(&r, 0, sizeof r);
    r.struct_size = sizeof r;
    r.log_level = level;
    r.cancel = (const int32_t *)&h->cancel;
    r.progress = on_progress;
    r.log = on_log;
    r.user = h;
    return r;
}

typedef struct job {
    const lungseg_model *model;
    const float *hu;
    size_t n;
    lungseg_mc_options opts;
    lungseg_status status;
} job;

static void *run_job(void *arg) {
    job *j = (job *)arg;
    lungseg_uncertainty out;
    memset(&out, 0, sizeof out);
    j->status = lungseg_predict_uncertainty(j->model, j->hu, j->n, &j->opts, &out);
    return NULL;
}

/* 1024 samples on a worker; the main thread cancels once two have finished. */
static void cancel_from_another_thread(const lungseg_model *m, size_t n) {
    host h;
    pthread_t worker;
    job j;
    float *hu = (float *)malloc(n * sizeof(float));
    size_t i;
    lungseg_run_options run;
    for (i = 0; i < n; i++) hu[i] = -700.0f + (float)(i % 13) * 60.0f;
    memset(&h, 0, sizeof h);
    atomic_init(&h.cancel, 0);
    atomic_init(&h.done, 0);
    run = run_options(&h, LUNGSEG_LOG_INFO);
    memset(&j, 0, sizeof j);
    j.model = m;
    j.hu = hu;
    j.n = n;
    j.opts.struct_size = sizeof j.opts;
    j.opts.n_samples = 1024;
    j.opts.run = &run;
    CHECK(pthread_create(&worker, NULL, run_job, &j) == 0);
    while (atomic_load(&h.done) < 2) {
        /* spin: the worker reports after each sample */
    }
    atomic_store(&h.cancel, 1);
    CHECK(pthread_join(worker, NULL) == 0);
    CHECK(j.status == LUNGSEG_CANCELLED);
    CHECK(strcmp(lungseg_status_name(j.status), "LUNGSEG_CANCELLED") == 0);
    CHECK(atomic_load(&h.done) >= 2 && atomic_load(&h.done) < 1024);
    CHECK(h.total == 1024);
    CHECK(h.log_lines[LUNGSEG_LOG_ERROR] == 1 && strstr(h.last_log, "cancelled") != NULL);
    free(hu);
}

/* Three points of a scan from memory in one call, each with its own mean map. */
static void batch(const lungseg_model *m, size_t n) {
    enum { NX = 32, NY = 30, NZ = 24 };
    static int16_t px[NX * NY * NZ];
    lungseg_volume_desc d;
    lungseg_volume *v = NULL;
    double centers[9] = {0, 0, 0, 4.5, -3, 1.5, -6, 6, 0};
    lungseg_uncertainty out[3];
    float *maps = (float *)malloc(3 * n * sizeof(float));
    lungseg_mc_options opts;
    lungseg_run_options run;
    host h;
    size_t i, done = 0;
    for (i = 0; i < NX * NY * NZ; i++) px[i] = (int16_t)(i % 7 == 0 ? 30 : -820);
    memset(&d, 0, sizeof d);
    d.struct_size = sizeof d;
    d.pixel_type = LUNGSEG_PIXEL_INT16;
    d.dims[0] = NX, d.dims[1] = NY, d.dims[2] = NZ;
    d.spacing[0] = d.spacing[1] = d.spacing[2] = 1.5;
    d.origin[0] = -24, d.origin[1] = -22.5, d.origin[2] = -18;
    CHECK(lungseg_volume_create(&d, px, sizeof px, &v) == LUNGSEG_OK);
    memset(&h, 0, sizeof h);
    run = run_options(&h, LUNGSEG_LOG_DEBUG);
    memset(out, 0, sizeof out);
    for (i = 0; i < 3; i++) {
        out[i].mean = maps + i * n;
        out[i].len = n;
    }
    memset(&opts, 0, sizeof opts);
    opts.struct_size = sizeof opts;
    opts.n_samples = 3;
    opts.run = &run;
    CHECK(lungseg_predict_uncertainty_batch(m, v, centers, 3, &opts, out, &done) == LUNGSEG_OK);
    CHECK(done == 3);
    CHECK(atomic_load(&h.done) == 9 && h.total == 9);
    CHECK(h.log_lines[LUNGSEG_LOG_DEBUG] == 3 && h.log_lines[LUNGSEG_LOG_INFO] == 4);
    CHECK(strncmp(h.last_log, "batch: 3 points", 15) == 0);
    for (i = 0; i < 3; i++) {
        CHECK(out[i].summary.n_samples == 3);
        CHECK(out[i].mean[0] >= 0.0f && out[i].mean[0] <= 1.0f);
    }
    lungseg_volume_free(v);
    free(maps);
}

int main(int argc, char **argv) {
    lungseg_model *m = NULL;
    lungseg_model_info info;
    size_t n;
    if (argc != 2) {
        fprintf(stderr, "usage: %s <model.safetensors>\n", argv[0]);
        return 2;
    }
    CHECK(lungseg_model_open(argv[1], NULL, &m) == LUNGSEG_OK);
    if (m == NULL) return 1;
    CHECK(lungseg_model_get_info(m, &info) == LUNGSEG_OK);
    n = (size_t)info.patch_size[0] * info.patch_size[1] * info.patch_size[2];
    cancel_from_another_thread(m, n);
    batch(m, n);
    lungseg_model_free(m);
    if (failures) return 1;
    printf("ok\n");
    return 0;
}
