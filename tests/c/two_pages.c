/* Two pages, one process: two compile_add_i32() pages are independent;
 * call both, free them in the opposite order, exit 0 only if everything held. */
#include "check.h"

int main(void) {
    struct wildx_stats before, during, after;
    wildx_stats(&before);

    void *f1 = compile_add_i32();
    void *f2 = compile_add_i32();
    CHECK(10, f1 != NULL && f2 != NULL);
    CHECK(11, f1 != f2);
    wildx_stats(&during);
    CHECK(12, during.live_pages == before.live_pages + 2);
    CHECK(13, during.live_bytes == before.live_bytes + 2 * 4096);

    int32_t r1 = wildx_call_i32_i32(f1, 20, 22);
    int32_t r2 = wildx_call_i32_i32(f2, 17, 25);
    int32_t rc2 = wildx_free(f2);
    /* f2 gone, f1 untouched and still callable */
    CHECK(20, wildx_state(f2) == WILDX_STATE_NOT_REGISTERED);
    CHECK(21, wildx_state(f1) == WILDX_STATE_EXECUTABLE);
    CHECK(22, wildx_verify(f1) == 0);
    CHECK(23, wildx_call_i32_i32(f1, 1, 2) == 3);
    int32_t rc1 = wildx_free(f1);

    wildx_stats(&after);
    CHECK(30, after.live_pages == before.live_pages);
    CHECK(31, after.live_bytes == before.live_bytes);
    CHECK(32, after.allocs == before.allocs + 2);
    CHECK(33, after.seals == before.seals + 2);
    CHECK(34, after.frees == before.frees + 2);
    CHECK(35, after.refusals == before.refusals);

    if (r1 == 42 && r2 == 42 && rc1 == 0 && rc2 == 0) {
        return 0;
    }
    return 2; /* a failure not caught by a CHECK above */
}
