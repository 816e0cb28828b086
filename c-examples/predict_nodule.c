/*
 * predict_nodule: the device-software use of lungseg. Opens a model and a CT scan, runs
 * Monte-Carlo dropout on the patch around a world point, prints the uncertainty summary and
 * whether a radiologist should look, then checks that four threads sharing one model handle
 * get bit-identical maps (POSIX threads, as a PACS worker pool would).
 *
 * With an output folder it also writes the mean probability, the entropy and the mask
 * (mean >= the model's mask threshold) as MetaImage placed on the scan, for a viewer to
 * overlay (3D Slicer).
 *
 *   predict_nodule <scan.mhd> <x_mm> <y_mm> <z_mm> [model.safetensors|-] [out_dir]
 *
 * Without a model (or with "-") it uses the default model installed with the library
 * (LUNGSEG_DEFAULT_MODEL, from pkg-config or CMake).
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lungseg.h"

#define THREADS 4

#ifndef LUNGSEG_DEFAULT_MODEL
#error "build with -DLUNGSEG_DEFAULT_MODEL=\"<prefix>/share/lungseg/lungseg-default.safetensors\""
#endif

static int fail(const char *what, lungseg_status st) {
    char msg[512];
    lungseg_last_error(msg, sizeof msg);
    fprintf(stderr, "%s failed: %s: %s\n", what, lungseg_status_name(st), msg);
    return 1;
}

struct job {
    const lungseg_model *model; /* read-only: one handle serves every thread */
    const lungseg_volume *volume;
    const double *world;
    size_t voxels;
    float *mean;
    lungseg_status status;
    lungseg_patch_summary summary;
};

static lungseg_mc_options mc_options(void) {
    lungseg_mc_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.n_samples = 8;
    o.seed = 2026;
    return o;
}

static void *run_job(void *arg) {
    struct job *j = (struct job *)arg;
    lungseg_mc_options o = mc_options();
    lungseg_uncertainty out;
    memset(&out, 0, sizeof out);
    out.mean = j->mean;
    out.len = j->voxels;
    j->status = lungseg_predict_uncertainty_at(j->model, j->volume, j->world, &o, &out);
    j->summary = out.summary;
    return NULL;
}

/* The mask the call counts, written by the call itself (lungseg_mc_options V5): a model with a
 * second look joins a look at half its spacing there (thin scans); without one, the mask is
 * lungseg_final_mask of the mean (`library_mask`). Prints what made it; 1 on a mismatch. */
static int check_call_mask(const lungseg_model *model, const lungseg_volume *vol,
                           const double *world, size_t voxels, const unsigned char *library_mask,
                           uint64_t summary_voxels) {
    lungseg_mc_options o = mc_options();
    lungseg_second_look look;
    lungseg_uncertainty out;
    uint32_t source = 0;
    uint64_t on = 0;
    size_t i;
    int bad = 0;
    lungseg_status st;
    unsigned char *mask = (unsigned char *)malloc(voxels);
    if (!mask) return 1;
    memset(&look, 0, sizeof look);
    look.struct_size = sizeof look;
    st = lungseg_model_get_second_look(model, &look);
    if (st != LUNGSEG_OK) bad |= fail("lungseg_model_get_second_look", st);
    memset(&out, 0, sizeof out);
    o.final_mask = mask;
    o.final_mask_len = voxels;
    o.mask_source = &source;
    st = lungseg_predict_uncertainty_at(model, vol, world, &o, &out);
    if (st != LUNGSEG_OK) {
        free(mask);
        return bad | fail("lungseg_predict_uncertainty_at (final mask)", st);
    }
    for (i = 0; i < voxels; i++) on += mask[i];
    printf("final mask from the call: %lu voxels (%s)\n", (unsigned long)on,
           source == LUNGSEG_MASK_JOINED            ? "joined with the second look"
           : source == LUNGSEG_MASK_FIRST_LOOK_ONLY ? "second look: nothing to join"
           : source == LUNGSEG_MASK_SCAN_TOO_COARSE ? "scan too coarse for the second look"
                                                    : "the model's mask");
    if (on != out.summary.foreground_voxels) {
        fprintf(stderr, "the call's mask has %lu voxels, its summary %lu\n", (unsigned long)on,
                (unsigned long)out.summary.foreground_voxels);
        bad = 1;
    }
    if (!look.present && (source != LUNGSEG_MASK_MODEL || on != summary_voxels ||
                          memcmp(mask, library_mask, voxels) != 0)) {
        fprintf(stderr, "without a second look the call's mask is not lungseg_final_mask's\n");
        bad = 1;
    }
    free(mask);
    return bad;
}

int main(int argc, char **argv) {
    lungseg_model *model = NULL;
    lungseg_volume *vol = NULL;
    lungseg_model_info info;
    lungseg_uncertainty out;
    lungseg_mc_options opts = mc_options();
    lungseg_status st;
    double world[3];
    size_t voxels, i;
    float *mean, *variance, *entropy, *mi;
    struct job jobs[THREADS];
    pthread_t tid[THREADS];
    int t, bad = 0;
    bool admitted = true;
    const char *model_path;

    if (argc < 5 || argc > 7) {
        fprintf(stderr, "usage: %s <scan.mhd> <x_mm> <y_mm> <z_mm> [model.safetensors|-] [out_dir]\n",
                argv[0]);
        return 2;
    }
    model_path = argc >= 6 && strcmp(argv[5], "-") != 0 ? argv[5] : LUNGSEG_DEFAULT_MODEL;
    for (i = 0; i < 3; i++) world[i] = strtod(argv[2 + i], NULL);

    printf("model file: %s\n", model_path);
    st = lungseg_model_open(model_path, NULL, &model);
    if (st != LUNGSEG_OK) return fail("lungseg_model_open", st);
    st = lungseg_model_get_info(model, &info);
    if (st != LUNGSEG_OK) return fail("lungseg_model_get_info", st);
    printf("model: patch %u x %u x %u at %.2f mm, %u levels, %lu parameters, dropout %.2f, "
           "review threshold %.4f\n",
           info.patch_size[0], info.patch_size[1], info.patch_size[2], info.spacing_mm[0],
           info.levels, (unsigned long)info.parameter_count, info.dropout_p, info.review_threshold);
    printf("device: %s\n", info.device_name);
    {
        uint32_t flips = 0;
        st = lungseg_model_get_test_time_flips(model, &flips);
        if (st != LUNGSEG_OK) return fail("lungseg_model_get_test_time_flips", st);
        printf("MC samples: each sees one of %u mirrored orientations of the patch\n",
               (unsigned)flips);
    }
    voxels = (size_t)info.patch_size[0] * info.patch_size[1] * info.patch_size[2];

    st = lungseg_volume_open(argv[1], &vol);
    if (st != LUNGSEG_OK) return fail("lungseg_volume_open", st);
    {
        /* A scan coarser than the model was trained on (e.g. 5 mm slices) is outside its
         * intended use: every patch of it comes back with needs_review set. */
        double max_spacing = 0.0;
        st = lungseg_model_get_max_scan_spacing_mm(model, &max_spacing);
        if (st != LUNGSEG_OK) return fail("lungseg_model_get_max_scan_spacing_mm", st);
        st = lungseg_model_admits_volume(model, vol, &admitted);
        if (st != LUNGSEG_OK) return fail("lungseg_model_admits_volume", st);
        if (max_spacing > 0.0)
            printf("intended use: scans up to %.17g mm voxel spacing; this scan: %s\n", max_spacing,
                   admitted ? "within" : "COARSER, every patch needs review");
        else
            printf("intended use: any voxel spacing\n");
    }

    mean = (float *)malloc(voxels * sizeof(float));
    variance = (float *)malloc(voxels * sizeof(float));
    entropy = (float *)malloc(voxels * sizeof(float));
    mi = (float *)malloc(voxels * sizeof(float));
    if (!mean || !variance || !entropy || !mi) return 1;
    memset(&out, 0, sizeof out);
    out.mean = mean;
    out.variance = variance;
    out.entropy = entropy;
    out.mutual_info = mi;
    out.len = voxels;
    st = lungseg_predict_uncertainty_at(model, vol, world, &opts, &out);
    if (st != LUNGSEG_OK) return fail("lungseg_predict_uncertainty_at", st);
    printf("summary: samples %u, foreground voxels %lu, volume %.1f mm3, diameter %.2f mm\n",
           out.summary.n_samples, (unsigned long)out.summary.foreground_voxels,
           out.summary.volume_mm3, out.summary.equivalent_diameter_mm);
    printf("summary: mean probability %.4f, mean entropy %.4f bits, mean MI %.4f bits\n",
           out.summary.mean_probability, out.summary.mean_entropy, out.summary.mean_mutual_info);
    /* The point was asked for as a nodule: an empty mask means the model did not segment one
     * there, which no uncertainty score flags (docs/c-abi.md, "An empty mask"). */
    printf("summary: uncertainty score %.5f vs threshold %.5f -> %s\n", out.summary.uncertainty_score,
           out.summary.review_threshold,
           out.summary.foreground_voxels == 0 ? "NOT SEGMENTED at this point: NEEDS REVIEW"
           : !admitted ? "NEEDS REVIEW by a radiologist (scan outside the model's intended use)"
           : out.summary.needs_review        ? "NEEDS REVIEW by a radiologist"
                                             : "confident");
    if (!admitted && !out.summary.needs_review) {
        fprintf(stderr, "a scan outside the intended use came back without needs_review\n");
        bad = 1;
    }
    for (i = 0; i < voxels; i++) {
        if (!(mean[i] >= 0.0f && mean[i] <= 1.0f) || !(variance[i] >= 0.0f) ||
            !(entropy[i] >= 0.0f && entropy[i] <= 1.0001f) || !(mi[i] >= -1e-6f && mi[i] <= entropy[i] + 1e-5f)) {
            fprintf(stderr, "voxel %lu out of range: %g %g %g %g\n", (unsigned long)i, mean[i],
                    variance[i], entropy[i], mi[i]);
            bad = 1;
            break;
        }
    }

    if (argc == 7 && !bad) {
        /* The maps on the grid the model saw: its patch size and spacing around `world`. */
        lungseg_patch_spec spec;
        unsigned char *mask = (unsigned char *)malloc(voxels);
        char path[4096];
        float mask_threshold = 0.5f;
        double min_component_mm3 = 0.0;
        double spare_radius_mm = 0.0;
        float point_threshold = 0.0f;
        double point_radius_mm = 0.0;
        uint64_t mask_voxels = 0;
        if (!mask) return 1;
        memset(&spec, 0, sizeof spec);
        spec.struct_size = sizeof spec;
        for (i = 0; i < 3; i++) {
            spec.size[i] = info.patch_size[i];
            spec.spacing_mm[i] = info.spacing_mm[i];
        }
        st = lungseg_model_get_mask_threshold(model, &mask_threshold);
        if (st != LUNGSEG_OK) bad |= fail("lungseg_model_get_mask_threshold", st);
        st = lungseg_model_get_min_component_mm3(model, &min_component_mm3);
        if (st != LUNGSEG_OK) bad |= fail("lungseg_model_get_min_component_mm3", st);
        st = lungseg_model_get_min_component_spare_radius_mm(model, &spare_radius_mm);
        if (st != LUNGSEG_OK) bad |= fail("lungseg_model_get_min_component_spare_radius_mm", st);
        st = lungseg_model_get_point_mask_threshold(model, &point_threshold);
        if (st != LUNGSEG_OK) bad |= fail("lungseg_model_get_point_mask_threshold", st);
        st = lungseg_model_get_point_radius_mm(model, &point_radius_mm);
        if (st != LUNGSEG_OK) bad |= fail("lungseg_model_get_point_radius_mm", st);
        /* The library's own mask: the threshold (with the components of the point's lower
         * threshold that reach the asked-for point), then components below the minimum
         * dropped unless they come closer than the spare radius to that point. */
        st = lungseg_final_mask(model, mean, voxels, mask, &mask_voxels);
        if (st != LUNGSEG_OK) bad |= fail("lungseg_final_mask", st);
        if (st == LUNGSEG_OK && mask_voxels != out.summary.foreground_voxels) {
            fprintf(stderr, "final mask has %lu voxels, the summary %lu\n",
                    (unsigned long)mask_voxels, (unsigned long)out.summary.foreground_voxels);
            bad = 1;
        }
        if (st == LUNGSEG_OK)
            bad |= check_call_mask(model, vol, world, voxels, mask, out.summary.foreground_voxels);
        /* %.9g round-trips a float, %.17g a double: a reader can redo the mask exactly. */
        printf("mask threshold: %.9g\n", mask_threshold);
        printf("minimum component: %.17g mm3\n", min_component_mm3);
        printf("component spare radius: %.17g mm\n", spare_radius_mm);
        printf("point threshold: %.9g\n", point_threshold);
        printf("point radius: %.17g mm\n", point_radius_mm);
        snprintf(path, sizeof path, "%s/mean.mha", argv[6]);
        st = lungseg_write_patch_map(&spec, world, mean, voxels, path, LUNGSEG_WRITE_COMPRESS);
        if (st != LUNGSEG_OK) bad |= fail("lungseg_write_patch_map (mean)", st);
        snprintf(path, sizeof path, "%s/entropy.mhd", argv[6]);
        st = lungseg_write_patch_map(&spec, world, entropy, voxels, path, 0);
        if (st != LUNGSEG_OK) bad |= fail("lungseg_write_patch_map (entropy)", st);
        snprintf(path, sizeof path, "%s/mask.mha", argv[6]);
        st = lungseg_write_patch_mask(&spec, world, mask, voxels, path, LUNGSEG_WRITE_COMPRESS);
        if (st != LUNGSEG_OK) bad |= fail("lungseg_write_patch_mask", st);
        snprintf(path, sizeof path, "%s/scan.mha", argv[6]);
        st = lungseg_volume_write(vol, path, LUNGSEG_WRITE_COMPRESS);
        if (st != LUNGSEG_OK) bad |= fail("lungseg_volume_write", st);
        free(mask);
        if (!bad) printf("wrote mean.mha, entropy.mhd, mask.mha and scan.mha to %s\n", argv[6]);
    }

    /* One model handle, many threads: same seed, bit-identical maps. */
    for (t = 0; t < THREADS; t++) {
        jobs[t].model = model;
        jobs[t].volume = vol;
        jobs[t].world = world;
        jobs[t].voxels = voxels;
        jobs[t].mean = (float *)malloc(voxels * sizeof(float));
        if (!jobs[t].mean || pthread_create(&tid[t], NULL, run_job, &jobs[t]) != 0) return 1;
    }
    for (t = 0; t < THREADS; t++) {
        pthread_join(tid[t], NULL);
        if (jobs[t].status != LUNGSEG_OK) bad |= fail("threaded prediction", jobs[t].status);
        else if (memcmp(jobs[t].mean, mean, voxels * sizeof(float)) != 0 ||
                 jobs[t].summary.needs_review != out.summary.needs_review) {
            fprintf(stderr, "thread %d disagrees with the single-threaded result\n", t);
            bad = 1;
        }
        free(jobs[t].mean);
    }
    printf("threads: %d concurrent predictions on one handle agree bit for bit\n", THREADS);

    /* Bad input must come back as a status with a message. */
    opts.n_samples = 5000;
    st = lungseg_predict_uncertainty_at(model, vol, world, &opts, &out);
    if (st != LUNGSEG_INVALID_ARGUMENT) {
        fprintf(stderr, "5000 samples were accepted\n");
        bad = 1;
    } else {
        char msg[256];
        lungseg_last_error(msg, sizeof msg);
        printf("bad input ok: %s\n", msg);
    }

    free(mean);
    free(variance);
    free(entropy);
    free(mi);
    lungseg_volume_free(vol);
    lungseg_model_free(model);
    if (bad) return 1;
    printf("ok\n");
    return 0;
}
