/* Sealing twice is refused (-1) and changes nothing; so is sealing a freed
 * page, and writing code into a sealed one. */
#include "check.h"

int main(void) {
    struct wildx_stats s0, s1;
    char perms[5];
    void *f = wildx_alloc(64);
    CHECK(10, f != NULL);
    CHECK(11, wildx_install_add_i32(f) == 0);
    CHECK(12, wildx_seal(f) == 0);

    wildx_stats(&s0);
    CHECK(20, wildx_seal(f) == -1); /* already sealed */
    CHECK(21, wildx_seal(f) == -1);
    wildx_stats(&s1);
    CHECK(22, s1.seals == s0.seals);
    CHECK(23, s1.refusals == s0.refusals + 2);
    CHECK(24, wildx_state(f) == WILDX_STATE_EXECUTABLE);
    maps_perms(f, perms);
    CHECK(25, strcmp(perms, "r-xp") == 0);
    CHECK(26, wildx_verify(f) == 0); /* the recorded hash is the first seal's */
    CHECK(27, wildx_call_i32_i32(f, 7, 35) == 42);

    /* install into a sealed page: refused, nothing written (it would fault) */
    CHECK(30, wildx_install_add_i32(f) == -1);
    CHECK(31, wildx_verify(f) == 0);

    CHECK(40, wildx_free(f) == 0);
    CHECK(41, wildx_seal(f) == -1); /* sealing a freed page */
    CHECK(42, wildx_state(f) == WILDX_STATE_NOT_REGISTERED);

    /* a writable page with nothing written may be sealed: it is all int3 */
    void *g = wildx_alloc(1);
    CHECK(50, g != NULL);
    CHECK(51, wildx_seal(g) == 0);
    CHECK(52, wildx_seal(g) == -1);
    CHECK(53, wildx_free(g) == 0);
    return 0;
}
