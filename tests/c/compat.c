/* The compatibility names (docs/c.md) are the same functions as their wildx_* names:
 * npk_jit_install_add_i32 is wildx_install_add_i32, npk_jit_call_i32_i32 is
 * wildx_call_i32_i32, npk_wildx_free is wildx_free, with the same refusals. */
#include "check.h"

int main(void) {
    struct wildx_stats s0, s1;
    wildx_stats(&s0);
    void *f = wildx_alloc(64);
    CHECK(10, f != NULL);
    CHECK(11, npk_jit_install_add_i32(f) == 0);
    CHECK(12, memcmp(f, "\x89\xf8\x01\xf0\xc3", 5) == 0);
    CHECK(13, wildx_seal(f) == 0);
    CHECK(14, npk_jit_install_add_i32(f) == -1); /* sealed: refused, nothing written */
    CHECK(15, npk_jit_call_i32_i32(f, 7, 35) == 42);
    CHECK(16, npk_jit_call_i32_i32(f, INT32_MAX, 1) == INT32_MIN);
    CHECK(20, npk_wildx_free(f) == 0);
    CHECK(21, npk_wildx_free(f) == -1 && wildx_free(f) == -1);
    CHECK(22, npk_wildx_free(NULL) == -1 && npk_jit_install_add_i32(NULL) == -1);
    wildx_stats(&s1);
    CHECK(30, s1.allocs == s0.allocs + 1 && s1.seals == s0.seals + 1 && s1.frees == s0.frees + 1);
    CHECK(31, s1.refusals == s0.refusals + 5);
    CHECK(32, s1.live_pages == s0.live_pages);
    return 0;
}
