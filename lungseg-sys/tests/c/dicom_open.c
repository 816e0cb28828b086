/*
 * Compiled by tests/c_abi.rs with -std=c99 -Wall -Wextra -Werror -pedantic against
 * include/lungseg.h and linked with the library: lungseg_volume_open_dicom as a C caller uses
 * it. With -DLUNGSEG_WITH_DICOM (a library built with the `dicom` feature) the series are read
 * or refused with their reason; without, every call answers LUNGSEG_UNSUPPORTED and says why.
 *
 *   dicom_open <tests/fixtures/dicom>
 */
#include <stdio.h>
#include <string.h>

#include "lungseg.h"

#include "check.h"

static int last_error_has(const char *needle) {
    char msg[1024];
    lungseg_last_error(msg, sizeof msg);
    return strstr(msg, needle) != NULL;
}

/* Opens `fixtures/name`; `*v` is set to a non-NULL junk value first to see it reset. */
static lungseg_status open_series(const char *fixtures, const char *name, const char *uid,
                                  lungseg_volume **v) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", fixtures, name);
    *v = (lungseg_volume *)dir;
    return lungseg_volume_open_dicom(dir, uid, v);
}

int main(int argc, char **argv) {
    lungseg_volume *v = NULL;
    lungseg_status st;
    if (argc != 2) {
        fprintf(stderr, "usage: %s <tests/fixtures/dicom>\n", argv[0]);
        return 2;
    }
    st = open_series(argv[1], "two_series", NULL, &v);
#ifdef LUNGSEG_WITH_DICOM
    {
        lungseg_volume_info info;
        static float hu[12 * 10 * 6];
        CHECK(st == LUNGSEG_OK && v != NULL);
        if (v) {
            CHECK(lungseg_volume_get_info(v, &info) == LUNGSEG_OK);
            CHECK(info.dims[0] == 12 && info.dims[1] == 10 && info.dims[2] == 6);
            CHECK(info.element_type == LUNGSEG_MET_SHORT && info.channels == 1);
            CHECK(info.spacing[2] == 2.5 && info.origin[2] == -300.0);
            CHECK(lungseg_volume_copy_hu(v, hu, 12 * 10 * 6) == LUNGSEG_OK);
            lungseg_volume_free(v);
        }
        CHECK(open_series(argv[1], "gantry_tilt", NULL, &v) == LUNGSEG_UNSUPPORTED && !v);
        CHECK(last_error_has("gantry tilt"));
        CHECK(open_series(argv[1], "two_ct", NULL, &v) == LUNGSEG_INVALID_ARGUMENT && !v);
        CHECK(last_error_has("2 CT series"));
        CHECK(open_series(argv[1], "two_ct", "1.2.3", &v) == LUNGSEG_INVALID_ARGUMENT && !v);
        CHECK(last_error_has("no series 1.2.3"));
    }
#else
    CHECK(st == LUNGSEG_UNSUPPORTED && v == NULL);
    CHECK(last_error_has("built without the `dicom` feature"));
#endif
    v = (lungseg_volume *)argv;
    CHECK(lungseg_volume_open_dicom(NULL, NULL, &v) == LUNGSEG_INVALID_ARGUMENT && !v);
    CHECK(lungseg_volume_open_dicom(argv[1], NULL, NULL) == LUNGSEG_INVALID_ARGUMENT);
    if (failures) return 1;
    printf("ok\n");
    return 0;
}
