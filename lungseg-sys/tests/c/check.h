/* check.h — the failure counter and CHECK macro shared by the C test programs: a failed
 * condition prints where it failed and the library's last error, and the test goes on so one
 * run reports every failure; main returns non-zero when `failures` is. */
#ifndef LUNGSEG_TEST_CHECK_H
#define LUNGSEG_TEST_CHECK_H

#include <stdio.h>

#include "lungseg.h"

static int failures = 0;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            char msg_[512];                                                      \
            lungseg_last_error(msg_, sizeof msg_);                               \
            fprintf(stderr, "%s:%d: %s (last error: %s)\n", __FILE__, __LINE__, \
                    #cond, msg_);                                                \
            failures++;                                                          \
        }                                                                        \
    } while (0)

#endif
