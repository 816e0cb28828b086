/*
 * scan_patch: what device software does first with lungseg. Opens a CT scan, prints its
 * geometry, maps a world point (mm) to voxels and cuts a normalised 64^3 patch around it.
 *
 *   scan_patch <scan.mhd> <x_mm> <y_mm> <z_mm>
 *
 * Also exercises the error paths a host relies on (bad path, NULL arguments, wrong sizes):
 * each must return its status and a message, never crash.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lungseg.h"

#define PATCH 64

static int fail(const char *what, lungseg_status st) {
    char msg[512];
    lungseg_last_error(msg, sizeof msg);
    fprintf(stderr, "%s failed: %s: %s\n", what, lungseg_status_name(st), msg);
    return 1;
}

/* An expected failure: the status must match and a message must be set. */
static int expect(const char *what, lungseg_status got, lungseg_status want) {
    char msg[512];
    size_t n = lungseg_last_error(msg, sizeof msg);
    if (got != want || n == 0) {
        fprintf(stderr, "%s: expected %s, got %s (message length %lu)\n", what,
                lungseg_status_name(want), lungseg_status_name(got), (unsigned long)n);
        return 1;
    }
    printf("bad input ok: %s -> %s: %s\n", what, lungseg_status_name(got), msg);
    return 0;
}

int main(int argc, char **argv) {
    lungseg_volume *vol = NULL;
    lungseg_volume_info info;
    lungseg_patch_spec spec;
    double world[3], voxel[3], back[3];
    float *patch;
    double sum = 0.0;
    float lo = 1e30f, hi = -1e30f;
    size_t i, n = (size_t)PATCH * PATCH * PATCH;
    lungseg_status st;
    int bad = 0;

    if (argc != 5) {
        fprintf(stderr, "usage: %s <scan.mhd> <x_mm> <y_mm> <z_mm>\n", argv[0]);
        return 2;
    }
    printf("lungseg %s (header %d.%d.%d)\n", lungseg_version(), LUNGSEG_VERSION_MAJOR,
           LUNGSEG_VERSION_MINOR, LUNGSEG_VERSION_PATCH);

    st = lungseg_volume_open(argv[1], &vol);
    if (st != LUNGSEG_OK) return fail("lungseg_volume_open", st);
    st = lungseg_volume_get_info(vol, &info);
    if (st != LUNGSEG_OK) return fail("lungseg_volume_get_info", st);
    printf("dims %lu %lu %lu\n", (unsigned long)info.dims[0], (unsigned long)info.dims[1],
           (unsigned long)info.dims[2]);
    printf("spacing %.6f %.6f %.6f\n", info.spacing[0], info.spacing[1], info.spacing[2]);
    printf("origin %.6f %.6f %.6f\n", info.origin[0], info.origin[1], info.origin[2]);
    printf("direction");
    for (i = 0; i < 9; i++) printf(" %g", info.direction[i]);
    printf("\nelement_type %u channels %u%s\n", info.element_type, info.channels,
           info.element_type == LUNGSEG_MET_SHORT ? " (int16)" : "");

    for (i = 0; i < 3; i++) world[i] = strtod(argv[2 + i], NULL);
    st = lungseg_world_to_voxel(vol, world, voxel);
    if (st != LUNGSEG_OK) return fail("lungseg_world_to_voxel", st);
    st = lungseg_voxel_to_world(vol, voxel, back);
    if (st != LUNGSEG_OK) return fail("lungseg_voxel_to_world", st);
    printf("world %.3f %.3f %.3f -> voxel %.4f %.4f %.4f\n", world[0], world[1], world[2],
           voxel[0], voxel[1], voxel[2]);

    memset(&spec, 0, sizeof spec);
    spec.struct_size = sizeof spec;
    spec.size[0] = spec.size[1] = spec.size[2] = PATCH;
    spec.spacing_mm[0] = spec.spacing_mm[1] = spec.spacing_mm[2] = 1.0;
    spec.outside_hu = -1000.0f;
    patch = (float *)malloc(n * sizeof *patch);
    if (!patch) return 1;
    st = lungseg_volume_extract_patch(vol, world, &spec, patch, n);
    if (st != LUNGSEG_OK) return fail("lungseg_volume_extract_patch", st);
    printf("patch centre HU %.1f\n", patch[(PATCH / 2 * PATCH + PATCH / 2) * PATCH + PATCH / 2]);
    st = lungseg_normalize_hu(patch, n, -1000.0f, 400.0f, patch);
    if (st != LUNGSEG_OK) return fail("lungseg_normalize_hu", st);
    for (i = 0; i < n; i++) {
        sum += patch[i];
        if (patch[i] < lo) lo = patch[i];
        if (patch[i] > hi) hi = patch[i];
    }
    printf("normalised patch min %.4f mean %.4f max %.4f\n", lo, sum / (double)n, hi);

    /* The host must survive every one of these. */
    {
        lungseg_volume *none = (lungseg_volume *)&bad; /* must be reset to NULL on failure */
        bad |= expect("open missing file", lungseg_volume_open("/nonexistent/scan.mhd", &none),
                      LUNGSEG_IO);
        if (none != NULL) { fprintf(stderr, "out not reset to NULL\n"); bad = 1; }
    }
    {
        lungseg_volume *other = NULL;
        bad |= expect("open NULL path", lungseg_volume_open(NULL, &other), LUNGSEG_INVALID_ARGUMENT);
    }
    bad |= expect("info NULL out", lungseg_volume_get_info(vol, NULL), LUNGSEG_INVALID_ARGUMENT);
    bad |= expect("patch wrong length", lungseg_volume_extract_patch(vol, world, &spec, patch, n - 1),
                  LUNGSEG_INVALID_ARGUMENT);
    spec.struct_size = 4;
    bad |= expect("patch spec too small", lungseg_volume_extract_patch(vol, world, &spec, patch, n),
                  LUNGSEG_INVALID_ARGUMENT);
    bad |= expect("copy_hu wrong length", lungseg_volume_copy_hu(vol, patch, 3), LUNGSEG_INVALID_ARGUMENT);
    {
        char small[8];
        size_t full = lungseg_last_error(small, sizeof small);
        if (full <= sizeof small - 1 || strlen(small) != sizeof small - 1) {
            fprintf(stderr, "lungseg_last_error truncation broken\n");
            bad = 1;
        }
    }
    lungseg_volume_free(NULL);
    lungseg_volume_free(vol);
    free(patch);
    if (bad) return 1;
    printf("ok\n");
    return 0;
}
