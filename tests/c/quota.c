/* The quota, counted in mapped bytes: allocate in a loop until wildx_alloc returns
 * NULL, free all, allocate again; lowering the quota below what is live unmaps
 * nothing. */
#include "check.h"

#define QUOTA_PAGES 16

/* Allocates `size`-byte pages into out[] until NULL; returns how many. */
static size_t fill(void **out, size_t cap, size_t size) {
    size_t n = 0;
    while (n < cap) {
        void *p = wildx_alloc(size);
        if (p == NULL) {
            break;
        }
        out[n++] = p;
    }
    return n;
}

static int free_all(void **pages, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (wildx_free(pages[i]) != 0) {
            return -1;
        }
    }
    return 0;
}

int main(void) {
    void *pages[4 * QUOTA_PAGES];
    size_t cap = sizeof pages / sizeof pages[0];
    struct wildx_stats s;

    CHECK(10, wildx_quota() == WILDX_DEFAULT_QUOTA); /* a fresh process */
    wildx_stats(&s);
    CHECK(11, s.quota == WILDX_DEFAULT_QUOTA && s.live_bytes == 0);
    wildx_set_quota(QUOTA_PAGES * 4096);
    CHECK(12, wildx_quota() == QUOTA_PAGES * 4096);

    /* 64-byte allocations each map a whole page: 16 fit */
    size_t n = fill(pages, cap, 64);
    CHECK(20, n == QUOTA_PAGES);
    wildx_stats(&s);
    CHECK(21, s.live_bytes == QUOTA_PAGES * 4096 && s.live_pages == QUOTA_PAGES);
    CHECK(22, s.quota == QUOTA_PAGES * 4096);
    CHECK(23, wildx_alloc(1) == NULL);
    /* a full quota does not stop the live pages from working */
    CHECK(24, wildx_install_add_i32(pages[0]) == 0 && wildx_seal(pages[0]) == 0);
    CHECK(25, wildx_call_i32_i32(pages[0], 21, 21) == 42);
    CHECK(26, free_all(pages, n) == 0);
    wildx_stats(&s);
    CHECK(27, s.live_bytes == 0 && s.live_pages == 0);
    CHECK(28, s.peak_bytes >= QUOTA_PAGES * 4096);

    /* allocate again: the whole quota is back */
    n = fill(pages, cap, 4096);
    CHECK(30, n == QUOTA_PAGES);
    CHECK(31, free_all(pages, n) == 0);

    /* multi-page allocations: 8 pages fit twice, a third does not */
    void *a = wildx_alloc(8 * 4096);
    void *b = wildx_alloc(8 * 4096 - 100);
    CHECK(40, a != NULL && b != NULL);
    CHECK(41, wildx_alloc(1) == NULL);
    CHECK(42, wildx_free(a) == 0);
    CHECK(43, wildx_alloc(8 * 4096 + 1) == NULL); /* 9 pages > 8 free */
    a = wildx_alloc(8 * 4096);
    CHECK(44, a != NULL);
    CHECK(45, wildx_free(a) == 0 && wildx_free(b) == 0);

    /* lowering the quota below what is live unmaps nothing */
    n = fill(pages, 4, 64);
    CHECK(50, n == 4);
    wildx_set_quota(4096);
    CHECK(51, wildx_alloc(1) == NULL);
    for (size_t i = 0; i < n; i++) {
        CHECK(52, wildx_install_add_i32(pages[i]) == 0 && wildx_seal(pages[i]) == 0);
        CHECK(53, wildx_call_i32_i32(pages[i], (int32_t)i, 1) == (int32_t)i + 1);
    }
    CHECK(54, free_all(pages, n) == 0);
    void *one = wildx_alloc(1);
    CHECK(55, one != NULL);
    CHECK(56, wildx_alloc(1) == NULL);
    CHECK(57, wildx_free(one) == 0);

    /* quota 0 refuses everything; restoring it works */
    wildx_set_quota(0);
    CHECK(60, wildx_alloc(1) == NULL);
    wildx_set_quota(WILDX_DEFAULT_QUOTA);
    one = wildx_alloc(1);
    CHECK(61, one != NULL && wildx_free(one) == 0);
    return 0;
}
