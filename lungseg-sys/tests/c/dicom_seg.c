/*
 * Compiled by tests/c_abi.rs with -std=c99 -Wall -Wextra -Werror -pedantic against
 * include/lungseg.h and linked with the library: lungseg_write_dicom_seg as a C host uses it,
 * with a mask made from the series' own HU. With -DLUNGSEG_WITH_DICOM (a library built with the
 * `dicom` feature) the SEG is written (tests/dicom_seg.rs checks its content with highdicom);
 * without, the call answers LUNGSEG_UNSUPPORTED and says why.
 *
 *   dicom_seg <tests/fixtures/dicom> <scratch folder>
 */
#include <stdio.h>
#include <string.h>

#include "lungseg.h"

#define VOXELS (12 * 10 * 6)

#include "check.h"

static int last_error_has(const char *needle) {
    char msg[1024];
    lungseg_last_error(msg, sizeof msg);
    return strstr(msg, needle) != NULL;
}

/* A Part-10 file: 128 bytes of preamble, then "DICM". */
static int is_dicom_file(const char *path) {
    char head[132];
    FILE *f = fopen(path, "rb");
    size_t n;
    if (!f) return 0;
    n = fread(head, 1, sizeof head, f);
    fclose(f);
    return n == sizeof head && memcmp(head + 128, "DICM", 4) == 0;
}

int main(int argc, char **argv) {
    static uint8_t mask[VOXELS];
    static float hu[VOXELS];
    char dir[4096], out[4096];
    lungseg_seg_segment segs[2];
    lungseg_status st;
    lungseg_volume *v = NULL;
    size_t i;
    if (argc != 3) {
        fprintf(stderr, "usage: %s <tests/fixtures/dicom> <scratch folder>\n", argv[0]);
        return 2;
    }
    snprintf(dir, sizeof dir, "%s/axial_int16", argv[1]);
    snprintf(out, sizeof out, "%s/seg.dcm", argv[2]);
    remove(out);
#ifdef LUNGSEG_WITH_DICOM
    CHECK(lungseg_volume_open_dicom(dir, NULL, &v) == LUNGSEG_OK);
    if (v) {
        CHECK(lungseg_volume_copy_hu(v, hu, VOXELS) == LUNGSEG_OK);
        lungseg_volume_free(v);
    }
#else
    (void)v;
#endif
    for (i = 0; i < VOXELS; i++) mask[i] = hu[i] > 0.0f;
    memset(segs, 0, sizeof segs);
    for (i = 0; i < 2; i++) {
        segs[i].struct_size = sizeof segs[i];
        segs[i].mask = mask;
        segs[i].mask_len = VOXELS;
    }
    segs[0].label = "Nodule 1";
    segs[0].description = "needs review: no; 12 mm\xc2\xb3";
    segs[1].label = "Nodule 2";
    segs[1].description = NULL;
    st = lungseg_write_dicom_seg(dir, NULL, segs, 2, out);
#ifdef LUNGSEG_WITH_DICOM
    CHECK(st == LUNGSEG_OK);
    CHECK(is_dicom_file(out));
    segs[1].mask_len = VOXELS - 1;
    CHECK(lungseg_write_dicom_seg(dir, NULL, segs, 2, out) == LUNGSEG_INVALID_ARGUMENT);
    CHECK(last_error_has("segment 2: the mask holds"));
#else
    CHECK(st == LUNGSEG_UNSUPPORTED);
    CHECK(last_error_has("built without the `dicom` feature"));
    CHECK(!is_dicom_file(out));
#endif
    CHECK(lungseg_write_dicom_seg(dir, NULL, segs, 0, out) == LUNGSEG_INVALID_ARGUMENT);
    CHECK(lungseg_write_dicom_seg(dir, NULL, NULL, 1, out) == LUNGSEG_INVALID_ARGUMENT);
    if (failures) return 1;
    printf("ok\n");
    return 0;
}
