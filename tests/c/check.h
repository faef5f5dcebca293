/* Shared by the hosted C test programs in tests/c (driven by tests/capi.rs).
 *
 * CHECK(code, cond): if cond is false, print where to stderr and return `code` from
 * the calling function (main), so every failed check has its own exit status. */
#ifndef WILDX_TEST_CHECK_H
#define WILDX_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

#include "wildx.h"

#define CHECK(code, cond)                                                              \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: check %d failed: %s\n", __FILE__, __LINE__, (code), \
                    #cond);                                                            \
            return (code);                                                             \
        }                                                                              \
    } while (0)

/* compile add(i32, i32) over the C ABI: alloc 64, install, seal; on a failed install
 * or seal, free the page and return NULL (never a freed page). */
static inline void *compile_add_i32(void) {
    void *page = wildx_alloc(64);
    if (page == NULL) {
        return NULL;
    }
    if (wildx_install_add_i32(page) != 0 || wildx_seal(page) != 0) {
        wildx_free(page);
        return NULL;
    }
    return page;
}

/* The permissions column of the /proc/self/maps line that contains `addr`, e.g.
 * "rw-p", copied into out[5]; "" if no mapping contains it. */
static inline void maps_perms(const void *addr, char out[5]) {
    unsigned long want = (unsigned long)addr;
    char line[512];
    FILE *maps = fopen("/proc/self/maps", "r");
    out[0] = '\0';
    if (maps == NULL) {
        return;
    }
    while (fgets(line, sizeof line, maps) != NULL) {
        unsigned long lo = 0, hi = 0;
        char perms[5] = {0};
        if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) == 3 && lo <= want && want < hi) {
            memcpy(out, perms, 5);
            break;
        }
    }
    fclose(maps);
}

/* Whether `n` bytes from `p` all equal `byte`. */
static inline int all_bytes(const void *p, size_t n, unsigned char byte) {
    const unsigned char *b = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++) {
        if (b[i] != byte) {
            return 0;
        }
    }
    return 1;
}

#endif
