/* Every refusal has a reason: each *_ex call that is refused returns NULL or -1 and
 * stores its WILDX_E_* code through `err`, a success stores WILDX_OK, a NULL `err` is
 * allowed, and wildx_strerror names every code. Then prints one line per code,
 * "NAME VALUE MESSAGE", and the version, for tests/capi.rs to compare with the
 * library's Rust side. */
#define _XOPEN_SOURCE 700 /* pwrite */

#include <fcntl.h>
#include <unistd.h>

#include "check.h"

/* Writes one byte through /proc/self/mem, which ignores page protections. */
static int poke(void *addr, unsigned char byte) {
    int fd = open("/proc/self/mem", O_RDWR);
    if (fd < 0) {
        return -1;
    }
    ssize_t n = pwrite(fd, &byte, 1, (off_t)(uintptr_t)addr);
    close(fd);
    return n == 1 ? 0 : -1;
}

#define CODE(name) {#name, name}
static const struct {
    const char *name;
    int32_t value;
} codes[] = {
    CODE(WILDX_OK),
    CODE(WILDX_E_ZERO_LENGTH),
    CODE(WILDX_E_LENGTH_OVERFLOW),
    CODE(WILDX_E_QUOTA),
    CODE(WILDX_E_NULL),
    CODE(WILDX_E_NOT_REGISTERED),
    CODE(WILDX_E_WRONG_STATE),
    CODE(WILDX_E_TOO_SMALL),
    CODE(WILDX_E_HELD_BY_HANDLE),
    CODE(WILDX_E_INTEGRITY),
    CODE(WILDX_E_REGISTRY_STORAGE),
    CODE(WILDX_E_NO_MEMORY),
    CODE(WILDX_E_DENIED),
    CODE(WILDX_E_OS),
    CODE(WILDX_E_ARENA_FULL),
    CODE(WILDX_E_FOREIGN_FN),
    CODE(WILDX_E_RETIRED),
    CODE(WILDX_E_ENTRY_ALIVE),
    CODE(WILDX_E_REENTRANT),
    CODE(WILDX_E_REJECTED),
    CODE(WILDX_E_READ_IMPLIES_EXEC),
    CODE(WILDX_E_WOULD_BLOCK),
    CODE(WILDX_E_EXEC_DENIED),
    CODE(WILDX_E_INHERITED),
};

int main(void) {
    int32_t err = -99;
    char local[16];

    /* alloc */
    CHECK(10, wildx_alloc_ex(0, &err) == NULL && err == WILDX_E_ZERO_LENGTH);
    CHECK(11, wildx_alloc_ex(SIZE_MAX, &err) == NULL && err == WILDX_E_LENGTH_OVERFLOW);
    wildx_set_quota(4096);
    void *only = wildx_alloc_ex(4096, &err);
    CHECK(12, only != NULL && err == WILDX_OK);
    err = -99;
    CHECK(13, wildx_alloc_ex(1, &err) == NULL && err == WILDX_E_QUOTA);
    CHECK(14, wildx_free_ex(only, &err) == 0 && err == WILDX_OK);
    wildx_set_quota(WILDX_DEFAULT_QUOTA);

    /* bad pointers, on every pointer-taking call */
    void *bad[3] = {NULL, local, NULL};
    int32_t want[3] = {WILDX_E_NULL, WILDX_E_NOT_REGISTERED, WILDX_E_NOT_REGISTERED};
    void *p = wildx_alloc_ex(64, &err);
    CHECK(20, p != NULL && err == WILDX_OK);
    bad[2] = (char *)p + 1; /* interior */
    for (int i = 0; i < 3; i++) {
        err = -99;
        CHECK(21, wildx_seal_ex(bad[i], &err) == -1 && err == want[i]);
        err = -99;
        CHECK(22, wildx_free_ex(bad[i], &err) == -1 && err == want[i]);
        err = -99;
        CHECK(23, wildx_verify_ex(bad[i], &err) == -1 && err == want[i]);
        err = -99;
        CHECK(24, wildx_install_add_i32_ex(bad[i], &err) == -1 && err == want[i]);
    }

    /* states */
    CHECK(30, wildx_verify_ex(p, &err) == -1 && err == WILDX_E_WRONG_STATE); /* not sealed */
    CHECK(31, wildx_install_add_i32_ex(p, &err) == 0 && err == WILDX_OK);
    CHECK(32, wildx_seal_ex(p, &err) == 0 && err == WILDX_OK);
    err = -99;
    CHECK(33, wildx_seal_ex(p, &err) == -1 && err == WILDX_E_WRONG_STATE); /* twice */
    err = -99;
    CHECK(34, wildx_install_add_i32_ex(p, &err) == -1 && err == WILDX_E_WRONG_STATE);
    CHECK(35, wildx_state(p) == WILDX_STATE_EXECUTABLE && wildx_call_i32_i32(p, 40, 2) == 42);
    void *tiny = wildx_alloc_ex(1, &err);
    CHECK(36, tiny != NULL && err == WILDX_OK);
    CHECK(37, wildx_install_add_i32_ex(tiny, &err) == -1 && err == WILDX_E_TOO_SMALL);

    /* integrity: change one byte behind the protection */
    CHECK(40, wildx_verify_ex(p, &err) == 0 && err == WILDX_OK);
    CHECK(41, poke((char *)p + 2, 0x29) == 0); /* add eax, esi -> sub eax, esi */
    err = -99;
    CHECK(42, wildx_verify_ex(p, &err) == -1 && err == WILDX_E_INTEGRITY);
    CHECK(43, poke((char *)p + 2, 0x01) == 0 && wildx_verify_ex(p, &err) == 0 && err == WILDX_OK);

    /* free, double free, and a NULL err */
    CHECK(50, wildx_free_ex(p, &err) == 0 && err == WILDX_OK);
    err = -99;
    CHECK(51, wildx_free_ex(p, &err) == -1 && err == WILDX_E_NOT_REGISTERED);
    CHECK(52, wildx_free_ex(p, NULL) == -1 && wildx_seal_ex(p, NULL) == -1);
    CHECK(53, wildx_alloc_ex(0, NULL) == NULL);
    CHECK(54, wildx_free_ex(tiny, NULL) == 0);

    /* messages: every code has its own; anything else is "unknown" */
    size_t n = sizeof codes / sizeof codes[0];
    const char *unknown = wildx_strerror(-1);
    CHECK(60, unknown != NULL && strcmp(unknown, wildx_strerror(9999)) == 0);
    for (size_t i = 0; i < n; i++) {
        const char *m = wildx_strerror(codes[i].value);
        CHECK(61, m != NULL && m[0] != '\0' && strcmp(m, unknown) != 0);
        for (size_t j = 0; j < i; j++) {
            CHECK(62, codes[i].value != codes[j].value);
            CHECK(63, strcmp(m, wildx_strerror(codes[j].value)) != 0);
        }
        printf("%s %d %s\n", codes[i].name, (int)codes[i].value, m);
    }
    CHECK(64, strcmp(wildx_strerror((int32_t)n), unknown) == 0); /* the codes are 0..n-1 */

    CHECK(70, wildx_version() == WILDX_VERSION);
    printf("WILDX_VERSION %d.%d.%d\n", WILDX_VERSION_MAJOR, WILDX_VERSION_MINOR, WILDX_VERSION_PATCH);
    return 0;
}
