/* The smallest JIT through the C ABI: compile add (alloc 64, install, seal), call
 * f(7, 35) == 42, free == 0, checking the page's state, protection and bytes at each
 * step. A failed install or seal frees the page and yields NULL (check.h). */
#include "check.h"

int main(void) {
#if !defined(__x86_64__)
    return 77; /* skipped: not x86-64 */
#endif
    char perms[5];
    void *f = compile_add_i32();
    CHECK(10, f != NULL);
    CHECK(11, wildx_state(f) == WILDX_STATE_EXECUTABLE);
    maps_perms(f, perms);
    CHECK(12, strcmp(perms, "r-xp") == 0);
    CHECK(13, memcmp(f, "\x89\xf8\x01\xf0\xc3", 5) == 0);
    CHECK(14, all_bytes((const unsigned char *)f + 5, 4096 - 5, 0xCC));
    CHECK(15, wildx_verify(f) == 0);

    int32_t r = wildx_call_i32_i32(f, 7, 35);
    CHECK(20, r == 42);
    CHECK(21, wildx_call_i32_i32(f, -7, 7) == 0);
    CHECK(22, wildx_call_i32_i32(f, INT32_MAX, 1) == INT32_MIN); /* wraps, as add does */

    int32_t rc = wildx_free(f);
    CHECK(30, rc == 0);
    CHECK(31, wildx_state(f) == WILDX_STATE_NOT_REGISTERED);
    maps_perms(f, perms);
    CHECK(32, perms[0] == '\0'); /* unmapped */

    /* The writable stage of the same path: PROT_WRITE alone (readable on x86-64; without
     * PROT_READ, READ_IMPLIES_EXEC cannot add X), never X, filled with int3. */
    void *page = wildx_alloc(64);
    CHECK(40, page != NULL);
    CHECK(41, wildx_state(page) == WILDX_STATE_WRITABLE);
    maps_perms(page, perms);
    CHECK(42, strcmp(perms, "-w-p") == 0);
    CHECK(43, all_bytes(page, 4096, 0xCC));
    CHECK(44, wildx_install_add_i32(page) == 0);
    CHECK(45, memcmp(page, "\x89\xf8\x01\xf0\xc3", 5) == 0);
    CHECK(46, wildx_verify(page) == -1); /* not sealed yet */
    CHECK(47, wildx_free(page) == 0);
    return 0;
}
