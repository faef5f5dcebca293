/* wildx_alloc at the edges: 0 and SIZE_MAX (and sizes that overflow when rounded up to
 * pages) give NULL and change nothing but the refusal count; small and odd sizes map
 * whole int3-filled pages. */
#include "check.h"

int main(void) {
    struct wildx_stats s0, s1;
    wildx_stats(&s0);
    CHECK(10, wildx_alloc(0) == NULL);
    CHECK(11, wildx_alloc(SIZE_MAX) == NULL);
    CHECK(12, wildx_alloc(SIZE_MAX - 4095) == NULL);
    CHECK(13, wildx_alloc((size_t)PTRDIFF_MAX) == NULL);
    wildx_stats(&s1);
    CHECK(14, s1.allocs == s0.allocs);
    CHECK(15, s1.refusals == s0.refusals + 4);
    CHECK(16, s1.live_pages == s0.live_pages && s1.live_bytes == s0.live_bytes);

    /* 1 byte: one page, all int3; too small for the 5-byte add */
    unsigned char *one = (unsigned char *)wildx_alloc(1);
    CHECK(20, one != NULL);
    CHECK(21, ((uintptr_t)one & 4095) == 0);
    CHECK(22, all_bytes(one, 4096, 0xCC));
    CHECK(23, wildx_install_add_i32(one) == -1);
    CHECK(24, all_bytes(one, 4096, 0xCC));

    /* 4 bytes: still too small; 5 bytes: exactly enough */
    void *four = wildx_alloc(4);
    void *five = wildx_alloc(5);
    CHECK(30, four != NULL && five != NULL);
    CHECK(31, wildx_install_add_i32(four) == -1);
    CHECK(32, wildx_install_add_i32(five) == 0 && wildx_seal(five) == 0);
    CHECK(33, wildx_call_i32_i32(five, 40, 2) == 42);

    /* 4097 bytes: two whole pages */
    struct wildx_stats s2, s3;
    wildx_stats(&s2);
    unsigned char *big = (unsigned char *)wildx_alloc(4097);
    CHECK(40, big != NULL);
    wildx_stats(&s3);
    CHECK(41, s3.live_bytes == s2.live_bytes + 8192);
    CHECK(42, all_bytes(big, 8192, 0xCC));
    CHECK(43, wildx_seal(big) == 0);
    CHECK(44, wildx_verify(big) == 0);

    CHECK(50, wildx_free(one) == 0 && wildx_free(four) == 0);
    CHECK(51, wildx_free(five) == 0 && wildx_free(big) == 0);
    return 0;
}
