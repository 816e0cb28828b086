/*
 * Compiled by tests/c_abi.rs with -std=c99 -Wall -Wextra -Werror -pedantic against
 * include/lungseg.h and linked with the library: every enum value a caller passes or reads,
 * every options struct (struct_size = sizeof), every output struct, and the const handle calls.
 *
 *   abi_usage <model.safetensors> <scratch dir>
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lungseg.h"

#include "check.h"

#define NAME_IS(value) CHECK(strcmp(lungseg_status_name(value), #value) == 0)

static void statuses(void) {
    NAME_IS(LUNGSEG_OK);
    NAME_IS(LUNGSEG_INVALID_ARGUMENT);
    NAME_IS(LUNGSEG_IO);
    NAME_IS(LUNGSEG_FORMAT);
    NAME_IS(LUNGSEG_UNSUPPORTED);
    NAME_IS(LUNGSEG_LIMIT);
    NAME_IS(LUNGSEG_DEVICE);
    NAME_IS(LUNGSEG_OUT_OF_MEMORY);
    NAME_IS(LUNGSEG_PANIC);
    NAME_IS(LUNGSEG_CANCELLED);
    CHECK(strcmp(lungseg_status_name(-1), "LUNGSEG_UNKNOWN_STATUS") == 0);
}

static int is_element_type(uint32_t t) {
    switch ((lungseg_element_type)t) {
    case LUNGSEG_MET_CHAR: case LUNGSEG_MET_UCHAR: case LUNGSEG_MET_SHORT:
    case LUNGSEG_MET_USHORT: case LUNGSEG_MET_INT: case LUNGSEG_MET_UINT:
    case LUNGSEG_MET_LONG: case LUNGSEG_MET_ULONG: case LUNGSEG_MET_LONG_LONG:
    case LUNGSEG_MET_ULONG_LONG: case LUNGSEG_MET_FLOAT: case LUNGSEG_MET_DOUBLE:
        return 1;
    }
    return 0;
}

/* Read-only calls through a const handle: must compile warning-free. */
static void predict(const lungseg_model *model, const lungseg_model_info *info) {
    size_t n = (size_t)info->patch_size[0] * info->patch_size[1] * info->patch_size[2], i;
    float *hu = (float *)malloc(n * sizeof(float));
    float *prob = (float *)malloc(n * sizeof(float));
    lungseg_mc_options opts;
    lungseg_uncertainty out;
    double centre[3] = {0.0, 0.0, 0.0};
    const lungseg_volume *none = NULL;
    if (!hu || !prob) exit(1);
    for (i = 0; i < n; i++) hu[i] = -500.0f;
    CHECK(lungseg_predict(model, hu, n, prob, n) == LUNGSEG_OK);
    memset(&opts, 0, sizeof opts);
    opts.struct_size = sizeof opts;
    opts.n_samples = 2;
    memset(&out, 0, sizeof out);
    out.mean = prob;
    out.len = n;
    CHECK(lungseg_predict_uncertainty(model, hu, n, &opts, &out) == LUNGSEG_OK);
    CHECK(out.summary.n_samples == 2);
    CHECK(lungseg_predict_uncertainty_at(model, none, centre, &opts, &out) ==
          LUNGSEG_INVALID_ARGUMENT);
    opts.struct_size = 4;
    CHECK(lungseg_predict_uncertainty(model, hu, n, &opts, &out) == LUNGSEG_INVALID_ARGUMENT);
    free(hu);
    free(prob);
}

/* The options struct as the 0.1.0 header declared it (V1, 24 bytes): an old binary's call. */
typedef struct {
    uint32_t struct_size;
    uint32_t n_samples;
    uint64_t seed;
    uint32_t override_review_threshold;
    float review_threshold;
} mc_options_v1;

static int is_review_score(uint32_t s) {
    switch ((lungseg_review_score)s) {
    case LUNGSEG_REVIEW_MODEL_DEFAULT: case LUNGSEG_REVIEW_MEAN_MUTUAL_INFO:
    case LUNGSEG_REVIEW_MEAN_ENTROPY: case LUNGSEG_REVIEW_MEAN_VARIANCE:
    case LUNGSEG_REVIEW_VOLUME_DISAGREEMENT: case LUNGSEG_REVIEW_DICE_DISAGREEMENT:
    case LUNGSEG_REVIEW_IOU_DISAGREEMENT: case LUNGSEG_REVIEW_VOLUME_CV:
    case LUNGSEG_REVIEW_MASK_MEAN_ENTROPY:
        return 1;
    }
    return 0;
}

/* Structure-wise measures and the review score through the grown lungseg_mc_options. */
static void structure(const lungseg_model *model, size_t n) {
    float *hu = (float *)malloc(n * sizeof(float));
    lungseg_mc_options opts;
    mc_options_v1 old;
    lungseg_structure_measures sm, big[2];
    lungseg_uncertainty out;
    size_t i;
    if (!hu) exit(1);
    for (i = 0; i < n; i++) hu[i] = (float)(i % 31) * 45.0f - 900.0f;
    CHECK(offsetof(lungseg_mc_options, structure_measures) == sizeof(mc_options_v1));
    memset(&out, 0, sizeof out);
    memset(&opts, 0, sizeof opts);
    opts.struct_size = sizeof opts;
    opts.n_samples = 6;
    opts.seed = 3;
    memset(&sm, 0xAB, sizeof sm);
    sm.struct_size = sizeof sm;
    opts.structure_measures = &sm;
    opts.review_score = LUNGSEG_REVIEW_VOLUME_CV;
    opts.override_review_threshold = 1;
    opts.review_threshold = 0.5f;
    CHECK(lungseg_predict_uncertainty(model, hu, n, &opts, &out) == LUNGSEG_OK);
    CHECK(sm.struct_size == sizeof sm);
    CHECK(sm.review_score == LUNGSEG_REVIEW_VOLUME_CV && is_review_score(sm.review_score));
    CHECK(out.summary.uncertainty_score == sm.volume_cv);
    CHECK(out.summary.review_threshold == 0.5f);
    CHECK(out.summary.needs_review == (sm.volume_cv > 0.5f));
    CHECK(sm.dice_agreement >= 0.0f && sm.dice_agreement <= 1.0f);
    CHECK(sm.iou >= 0.0f && sm.iou <= 1.0f && sm.intersection_voxels <= sm.union_voxels);
    CHECK(sm.empty_samples <= 6 && sm.sample_voxels_std >= 0.0);

    /* Another score than the model's without a threshold: refused, nothing written. */
    opts.review_score = LUNGSEG_REVIEW_DICE_DISAGREEMENT;
    opts.override_review_threshold = 0;
    sm.struct_size = sizeof sm;
    sm.review_score = 77;
    CHECK(lungseg_predict_uncertainty(model, hu, n, &opts, &out) == LUNGSEG_INVALID_ARGUMENT);
    CHECK(sm.review_score == 77);
    opts.review_score = 99;
    CHECK(lungseg_predict_uncertainty(model, hu, n, &opts, &out) == LUNGSEG_INVALID_ARGUMENT);

    /* The model's own score: its threshold, reported as the score used. */
    opts.review_score = LUNGSEG_REVIEW_MODEL_DEFAULT;
    CHECK(lungseg_predict_uncertainty(model, hu, n, &opts, &out) == LUNGSEG_OK);
    CHECK(sm.review_score != LUNGSEG_REVIEW_MODEL_DEFAULT && is_review_score(sm.review_score));

    /* A struct_size below the measures' V1 is refused before anything runs. */
    sm.struct_size = 8;
    CHECK(lungseg_predict_uncertainty(model, hu, n, &opts, &out) == LUNGSEG_INVALID_ARGUMENT);
    /* A newer caller's larger struct: the known bytes are written, struct_size says how many. */
    memset(big, 0xCD, sizeof big);
    big[0].struct_size = sizeof big;
    opts.structure_measures = &big[0];
    CHECK(lungseg_predict_uncertainty(model, hu, n, &opts, &out) == LUNGSEG_OK);
    CHECK(big[0].struct_size == sizeof big[0] && big[1].struct_size == 0xCDCDCDCDu);
    /* Overlapping the patch: refused (a valid struct_size there, so the overlap is why). */
    {
        uint32_t size = sizeof sm;
        char msg[512];
        memcpy(hu, &size, sizeof size);
        opts.structure_measures = (lungseg_structure_measures *)(void *)hu;
        CHECK(lungseg_predict_uncertainty(model, hu, n, &opts, &out) == LUNGSEG_INVALID_ARGUMENT);
        lungseg_last_error(msg, sizeof msg);
        CHECK(strstr(msg, "overlap") != NULL);
    }

    /* An old binary: V1-sized options; the fields past them are neither read nor needed. */
    memset(&old, 0, sizeof old);
    old.struct_size = sizeof old;
    old.n_samples = 3;
    old.seed = 3;
    memset(&out, 0, sizeof out);
    CHECK(lungseg_predict_uncertainty(model, hu, n, (const lungseg_mc_options *)(const void *)&old,
                                      &out) == LUNGSEG_OK);
    CHECK(out.summary.n_samples == 3);
    /* The same through the new struct with V1 size and garbage past it: never read. */
    memset(&opts, 0xEE, sizeof opts);
    opts.struct_size = sizeof old;
    opts.n_samples = 3;
    opts.seed = 3;
    opts.override_review_threshold = 0;
    CHECK(lungseg_predict_uncertainty(model, hu, n, &opts, &out) == LUNGSEG_OK);
    /* The scan's resolution stated for a patch from memory: all 0 or each > 0. */
    memset(&opts, 0, sizeof opts);
    opts.struct_size = sizeof opts;
    opts.n_samples = 2;
    opts.scan_resolution_mm[0] = opts.scan_resolution_mm[1] = 0.7;
    opts.scan_resolution_mm[2] = 1.25;
    CHECK(lungseg_predict_uncertainty(model, hu, n, &opts, &out) == LUNGSEG_OK);
    opts.scan_resolution_mm[2] = -1.0;
    CHECK(lungseg_predict_uncertainty(model, hu, n, &opts, &out) == LUNGSEG_INVALID_ARGUMENT);
    free(hu);
}

static void model(const char *path) {
    lungseg_model_options o;
    lungseg_model_info info;
    lungseg_model *m = NULL;
    uint32_t kernel = LUNGSEG_CPU_KERNEL_AUTO;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.device = LUNGSEG_DEVICE_CUDA;
#ifndef LUNGSEG_WITH_CUDA
    CHECK(lungseg_model_open(path, &o, &m) == LUNGSEG_DEVICE);
#endif
    o.device = LUNGSEG_DEVICE_AUTO;
    CHECK(lungseg_model_open(path, &o, &m) == LUNGSEG_OK);
    lungseg_model_free(m);
    o.cpu_kernel = 99;
    CHECK(lungseg_model_open(path, &o, &m) == LUNGSEG_INVALID_ARGUMENT);
    o.cpu_kernel = LUNGSEG_CPU_KERNEL_PORTABLE;
    o.device = LUNGSEG_DEVICE_CPU;
    o.threads = 1;
    CHECK(lungseg_model_open(path, &o, &m) == LUNGSEG_OK);
    if (!m) return;
    CHECK(lungseg_model_get_cpu_kernel(m, &kernel) == LUNGSEG_OK);
    CHECK(kernel == LUNGSEG_CPU_KERNEL_PORTABLE);
    CHECK(lungseg_model_get_cpu_kernel(m, NULL) == LUNGSEG_INVALID_ARGUMENT);
    /* The FMA kernels: each either runs here or is refused as a device this CPU is not. */
    {
        lungseg_model *k = NULL;
        uint32_t fma[3] = {LUNGSEG_CPU_KERNEL_AVX512, LUNGSEG_CPU_KERNEL_AVX2,
                           LUNGSEG_CPU_KERNEL_NEON};
        int i;
        for (i = 0; i < 3; i++) {
            enum lungseg_status st;
            o.cpu_kernel = fma[i];
            st = lungseg_model_open(path, &o, &k);
            CHECK(st == LUNGSEG_OK || st == LUNGSEG_DEVICE);
            lungseg_model_free(k);
            k = NULL;
        }
    }
    CHECK(lungseg_model_get_info(m, &info) == LUNGSEG_OK);
    CHECK(info.device == LUNGSEG_DEVICE_CPU);
    CHECK(info.dropout_kind == LUNGSEG_DROPOUT_CHANNEL ||
          info.dropout_kind == LUNGSEG_DROPOUT_ELEMENT);
    CHECK(lungseg_model_get_info(m, NULL) == LUNGSEG_INVALID_ARGUMENT);
    predict(m, &info);
    structure(m, (size_t)info.patch_size[0] * info.patch_size[1] * info.patch_size[2]);
    lungseg_model_free(m);
}

static void volume(const char *dir) {
    lungseg_patch_spec spec;
    lungseg_open_options o;
    lungseg_volume_info info;
    lungseg_volume *v = NULL;
    double centre[3] = {0.0, 0.0, 0.0};
    unsigned char mask[4 * 4 * 4];
    char path[4096];
    memset(mask, 1, sizeof mask);
    memset(&spec, 0, sizeof spec);
    spec.struct_size = sizeof spec;
    spec.size[0] = spec.size[1] = spec.size[2] = 4;
    snprintf(path, sizeof path, "%s/mask.mha", dir);
    CHECK(lungseg_write_patch_mask(&spec, centre, mask, sizeof mask, path,
                                   LUNGSEG_WRITE_COMPRESS) == LUNGSEG_OK);
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    CHECK(lungseg_volume_open_ex(path, &o, &v) == LUNGSEG_OK);
    if (!v) return;
    CHECK(lungseg_volume_get_info(v, &info) == LUNGSEG_OK);
    CHECK(info.element_type == LUNGSEG_MET_UCHAR && is_element_type(info.element_type));
    CHECK(info.dims[0] == 4 && info.channels == 1);
    lungseg_volume_free(v);
}

/* A 5 x 4 x 3 int16 scan with padded rows (8 samples) and slices (5 rows), DICOM rescale
 * 2 * stored - 1024: copied and borrowed give the same HU and patches. */
static void memory_volume(void) {
    enum { NX = 5, NY = 4, NZ = 3, ROW = 8, SLICE = ROW * 5 };
    static int16_t px[SLICE * NZ];
    float hu[NX * NY * NZ], hu2[NX * NY * NZ], patch[27], patch2[27];
    lungseg_volume_desc d;
    lungseg_patch_spec spec;
    lungseg_volume_info info;
    lungseg_volume *copied = NULL, *borrowed = NULL, *bad = (lungseg_volume *)&d;
    double centre[3] = {2.0, 1.5, 1.0};
    int i, j, k;
    for (i = 0; i < SLICE * NZ; i++) px[i] = 32767; /* padding: never read */
    for (k = 0; k < NZ; k++)
        for (j = 0; j < NY; j++)
            for (i = 0; i < NX; i++) px[k * SLICE + j * ROW + i] = (int16_t)(100 * k + 10 * j + i);
    memset(&d, 0, sizeof d);
    d.struct_size = sizeof d;
    d.pixel_type = LUNGSEG_PIXEL_INT16;
    d.dims[0] = NX; d.dims[1] = NY; d.dims[2] = NZ;
    d.spacing[0] = d.spacing[1] = 0.5; d.spacing[2] = 2.0;
    d.row_stride_bytes = ROW * sizeof px[0];
    d.slice_stride_bytes = SLICE * sizeof px[0];
    d.rescale_slope = 2.0;
    d.rescale_intercept = -1024.0;
    d.slice_thickness_mm = 3.0; /* 3 mm slices every 2 mm */
    CHECK(lungseg_volume_create(&d, px, sizeof px, &copied) == LUNGSEG_OK);
    d.struct_size = 192; /* a caller built before slice_thickness_mm: not read */
    CHECK(lungseg_volume_create_borrowed(&d, px, sizeof px, &borrowed) == LUNGSEG_OK);
    d.struct_size = sizeof d;
    if (!copied || !borrowed) return;
    {
        double t = -1.0;
        CHECK(lungseg_volume_get_slice_thickness(copied, &t) == LUNGSEG_OK && t == 3.0);
        CHECK(lungseg_volume_get_slice_thickness(borrowed, &t) == LUNGSEG_OK && t == 0.0);
    }
    CHECK(lungseg_volume_get_info(borrowed, &info) == LUNGSEG_OK);
    CHECK(info.element_type == LUNGSEG_MET_SHORT && info.direction[0] == 1.0 && info.dims[2] == NZ);
    CHECK(lungseg_volume_copy_hu(copied, hu, NX * NY * NZ) == LUNGSEG_OK);
    CHECK(lungseg_volume_copy_hu(borrowed, hu2, NX * NY * NZ) == LUNGSEG_OK);
    CHECK(memcmp(hu, hu2, sizeof hu) == 0);
    CHECK(hu[(2 * NY + 3) * NX + 4] == 2.0f * 234 - 1024.0f);
    memset(&spec, 0, sizeof spec);
    spec.struct_size = sizeof spec;
    spec.size[0] = spec.size[1] = spec.size[2] = 3;
    spec.spacing_mm[0] = spec.spacing_mm[1] = spec.spacing_mm[2] = 0.5;
    CHECK(lungseg_volume_extract_patch(copied, centre, &spec, patch, 27) == LUNGSEG_OK);
    CHECK(lungseg_volume_extract_patch(borrowed, centre, &spec, patch2, 27) == LUNGSEG_OK);
    CHECK(memcmp(patch, patch2, sizeof patch) == 0);
    /* Centre voxel (index 13) is voxel (4, 3, 0.5): halfway between 34 and 134 stored. */
    CHECK(patch[13] == 2.0f * 84 - 1024.0f);
    lungseg_volume_free(copied);
    lungseg_volume_free(borrowed);
    d.pixel_type = 0;
    CHECK(lungseg_volume_create(&d, px, sizeof px, &bad) == LUNGSEG_INVALID_ARGUMENT && !bad);
    d.pixel_type = LUNGSEG_PIXEL_UINT16;
    d.row_stride_bytes = 3;
    CHECK(lungseg_volume_create_borrowed(&d, px, sizeof px, &bad) == LUNGSEG_INVALID_ARGUMENT);
    CHECK(LUNGSEG_PIXEL_INT32 == 3 && LUNGSEG_PIXEL_FLOAT32 == 4);
}

/* Two 2 x 2 x 2 patches (1 mm) on a 6 x 4 x 4 scan at 1 mm, one voxel apart in x: the mean
 * map is their weighted mean where both cover a voxel, the mask map their maximum. */
static void scan_map(void) {
    static const int16_t px[6 * 4 * 4] = {0};
    float a[8], b[8], out[6 * 4 * 4];
    double ca[3] = {2.0, 2.0, 2.0}, cb[3] = {3.0, 2.0, 2.0};
    lungseg_volume_desc d;
    lungseg_patch_spec spec;
    lungseg_volume *v = NULL;
    lungseg_scan_map *mean = NULL, *max = NULL;
    const lungseg_scan_map *view;
    int i;
    memset(&d, 0, sizeof d);
    d.struct_size = sizeof d;
    d.pixel_type = LUNGSEG_PIXEL_INT16;
    d.dims[0] = 6; d.dims[1] = 4; d.dims[2] = 4;
    d.spacing[0] = d.spacing[1] = d.spacing[2] = 1.0;
    CHECK(lungseg_volume_create_borrowed(&d, px, sizeof px, &v) == LUNGSEG_OK);
    if (!v) return;
    memset(&spec, 0, sizeof spec);
    spec.struct_size = sizeof spec;
    spec.size[0] = spec.size[1] = spec.size[2] = 2;
    for (i = 0; i < 8; i++) { a[i] = 0.25f; b[i] = (i % 2) ? 1.0f : 0.0f; }
    CHECK(lungseg_scan_map_new(v, LUNGSEG_SCAN_MAP_MEAN, &mean) == LUNGSEG_OK);
    CHECK(lungseg_scan_map_new(v, LUNGSEG_SCAN_MAP_MAX, &max) == LUNGSEG_OK);
    if (!mean || !max) return;
    CHECK(lungseg_scan_map_add_patch(mean, &spec, ca, a, 8, 1.0f) == LUNGSEG_OK);
    CHECK(lungseg_scan_map_add_patch(mean, &spec, cb, a, 8, 3.0f) == LUNGSEG_OK);
    CHECK(lungseg_scan_map_add_patch(max, &spec, ca, a, 8, 1.0f) == LUNGSEG_OK);
    CHECK(lungseg_scan_map_add_patch(max, &spec, cb, b, 8, 1.0f) == LUNGSEG_OK);
    CHECK(lungseg_scan_map_add_patch(mean, &spec, ca, a, 7, 1.0f) == LUNGSEG_INVALID_ARGUMENT);
    view = mean; /* reading takes a const handle */
    CHECK(lungseg_scan_map_read(view, out, 6 * 4 * 4) == LUNGSEG_OK);
    /* Patch a covers voxels x 1..2, y 1..2, z 1..2; patch b x 2..3. Both are 0.25. */
    CHECK(out[(1 * 4 + 1) * 6 + 2] == 0.25f && out[(1 * 4 + 1) * 6 + 1] == 0.25f);
    CHECK(out[0] == 0.0f && out[(1 * 4 + 1) * 6 + 5] == 0.0f);
    CHECK(lungseg_scan_map_read(max, out, 6 * 4 * 4) == LUNGSEG_OK);
    /* x = 2 is b's first voxel (0) and a's second (0.25): max 0.25; x = 3 is b's second (1). */
    CHECK(out[(1 * 4 + 1) * 6 + 2] == 0.25f && out[(1 * 4 + 1) * 6 + 3] == 1.0f);
    CHECK(lungseg_scan_map_read(max, out, 5) == LUNGSEG_INVALID_ARGUMENT);
    CHECK(lungseg_scan_map_new(v, 0, &mean) == LUNGSEG_INVALID_ARGUMENT);
    lungseg_scan_map_free(max);
    lungseg_scan_map_free(NULL);
    lungseg_volume_free(v);
    lungseg_scan_map_free((lungseg_scan_map *)view);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s <model.safetensors> <scratch dir>\n", argv[0]);
        return 2;
    }
    statuses();
    model(argv[1]);
    volume(argv[2]);
    memory_volume();
    scan_map();
    if (failures) return 1;
    printf("ok\n");
    return 0;
}
