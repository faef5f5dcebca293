/* Foreign, NULL and interior pointers: every operation refuses them (-1, or
 * WILDX_STATE_NOT_REGISTERED) without reading or writing through them, and the real
 * pages they point into or near are left exactly as they were. */
#include <stdlib.h>

#include "check.h"

static char static_buf[64];

/* Runs every pointer-taking function on `p`; returns 0 if all refused, else which one
 * accepted it. */
static int refuses_all(void *p) {
    if (wildx_seal(p) != -1) return 1;
    if (wildx_free(p) != -1) return 2;
    if (wildx_free(p) != -1) return 3;
    if (wildx_install_add_i32(p) != -1) return 4;
    if (wildx_verify(p) != -1) return 5;
    if (wildx_state(p) != WILDX_STATE_NOT_REGISTERED) return 6;
    return 0;
}

int main(void) {
    struct wildx_stats s0, s1;
    char stack_buf[64];
    unsigned char *heap = (unsigned char *)malloc(64);
    CHECK(1, heap != NULL);
    memset(heap, 0x11, 64);
    memset(stack_buf, 0x22, sizeof stack_buf);
    memset(static_buf, 0x33, sizeof static_buf);

    unsigned char *w = (unsigned char *)wildx_alloc(2 * 4096); /* writable, two pages */
    unsigned char *x = (unsigned char *)wildx_alloc(64);       /* sealed */
    CHECK(2, w != NULL && x != NULL);
    CHECK(3, wildx_install_add_i32(x) == 0 && wildx_seal(x) == 0);

    void *bad[] = {
        NULL,                    /* null */
        stack_buf,               /* foreign: stack */
        static_buf,              /* foreign: static */
        heap,                    /* foreign: malloc */
        (void *)1,               /* foreign: never mapped */
        (void *)UINTPTR_MAX,     /* foreign: not even canonical */
        w + 1,                   /* interior */
        w + 5,                   /* interior */
        w + 4095,                /* interior, last byte of the first page */
        w + 4096,                /* interior: second page of the same allocation */
        x + 1,                   /* interior of a sealed page */
        x + 64,                  /* interior of a sealed page, past its 64 bytes */
    };
    size_t n = sizeof bad / sizeof bad[0];

    wildx_stats(&s0);
    for (size_t i = 0; i < n; i++) {
        int which = refuses_all(bad[i]);
        if (which != 0) {
            fprintf(stderr, "bad pointer #%zu (%p) accepted by function %d\n", i, bad[i], which);
            return 10 + (int)i;
        }
    }
    wildx_stats(&s1);
    /* seal, free and install count as refusals; verify and state not */
    CHECK(30, s1.refusals == s0.refusals + 4 * n);
    CHECK(31, s1.seals == s0.seals && s1.frees == s0.frees);
    CHECK(32, s1.live_pages == s0.live_pages && s1.live_bytes == s0.live_bytes);

    /* nothing was written anywhere */
    CHECK(40, all_bytes(heap, 64, 0x11));
    CHECK(41, all_bytes(stack_buf, sizeof stack_buf, 0x22));
    CHECK(42, all_bytes(static_buf, sizeof static_buf, 0x33));
    CHECK(43, all_bytes(w, 2 * 4096, 0xCC));

    /* the real pages are in their states and fully usable */
    CHECK(50, wildx_state(w) == WILDX_STATE_WRITABLE);
    CHECK(51, wildx_state(x) == WILDX_STATE_EXECUTABLE);
    CHECK(52, wildx_verify(x) == 0);
    CHECK(53, wildx_call_i32_i32(x, 2, 40) == 42);
    CHECK(54, wildx_install_add_i32(w) == 0 && wildx_seal(w) == 0);
    CHECK(55, wildx_call_i32_i32(w, 3, 4) == 7);
    CHECK(56, wildx_free(w) == 0 && wildx_free(x) == 0);

    free(heap);
    return 0;
}
