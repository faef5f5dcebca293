/* Double free: the second wildx_free of a page returns -1, touches
 * no memory, and leaves every other page alone. */
#include "check.h"

int main(void) {
    struct wildx_stats s0, s1;
    void *keep = wildx_alloc(64);
    void *p = wildx_alloc(64);
    CHECK(10, keep != NULL && p != NULL);
    CHECK(11, wildx_install_add_i32(keep) == 0 && wildx_seal(keep) == 0);

    CHECK(20, wildx_free(p) == 0);
    wildx_stats(&s0);
    CHECK(21, wildx_free(p) == -1);
    CHECK(22, wildx_free(p) == -1);
    CHECK(23, wildx_free(p) == -1);
    CHECK(24, wildx_seal(p) == -1);
    CHECK(25, wildx_install_add_i32(p) == -1);
    CHECK(26, wildx_verify(p) == -1);
    CHECK(27, wildx_state(p) == WILDX_STATE_NOT_REGISTERED);
    wildx_stats(&s1);
    CHECK(28, s1.frees == s0.frees);
    CHECK(29, s1.refusals == s0.refusals + 5); /* verify and state are not refusals */
    CHECK(30, s1.live_pages == s0.live_pages);

    /* the sealed page next to it is untouched */
    CHECK(40, wildx_verify(keep) == 0);
    CHECK(41, wildx_call_i32_i32(keep, 40, 2) == 42);

    /* freed once (say by generated drop code); then the user's free is -1 */
    CHECK(50, wildx_free(keep) == 0);
    CHECK(51, wildx_free(keep) == -1);

    /* the kernel may hand the same address out again: the new page is a fresh,
     * writable, int3-filled page, and freeing it once works once */
    void *q = wildx_alloc(64);
    CHECK(60, q != NULL);
    CHECK(61, wildx_state(q) == WILDX_STATE_WRITABLE);
    CHECK(62, all_bytes(q, 4096, 0xCC));
    CHECK(63, wildx_free(q) == 0);
    CHECK(64, wildx_free(q) == -1);
    return 0;
}
