/* Faults, one per run, chosen by argv[1]; tests/capi.rs asserts how each run ends.
 *
 *   mode            plain libwildx.a          verify-on-call libwildx.a
 *   write-sealed    SIGSEGV (the MMU)         SIGSEGV
 *   int3            SIGTRAP (0xCC fill)       SIGTRAP
 *   call-writable   SIGSEGV (never X)         SIGABRT, before any byte runs
 *   call-freed      SIGSEGV (unmapped)        SIGABRT
 *   call-foreign    SIGSEGV (NX stack)        SIGABRT
 *   tamper          exit 0: the changed       SIGABRT, one line on stderr
 *                   bytes ran (7 - 35)
 *
 * A run that survives what should have killed it exits 3. */
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

int main(int argc, char **argv) {
    CHECK(1, argc == 2);
    const char *mode = argv[1];
    /* make sure the report of the run reaches the test even if we die right after */
    setvbuf(stdout, NULL, _IONBF, 0);

    if (strcmp(mode, "write-sealed") == 0) {
        volatile unsigned char *f = (volatile unsigned char *)compile_add_i32();
        CHECK(10, f != NULL);
        f[0] = 0xC3; /* must trap */
        return 3;
    }
    if (strcmp(mode, "int3") == 0) {
        void *page = wildx_alloc(64);
        CHECK(20, page != NULL && wildx_seal(page) == 0);
        (void)wildx_call_i32_i32(page, 1, 2); /* must trap on the first int3 */
        return 3;
    }
    if (strcmp(mode, "call-writable") == 0) {
        void *page = wildx_alloc(64);
        CHECK(30, page != NULL && wildx_install_add_i32(page) == 0);
        (void)wildx_call_i32_i32(page, 1, 2);
        return 3;
    }
    if (strcmp(mode, "call-freed") == 0) {
        void *f = compile_add_i32();
        CHECK(40, f != NULL && wildx_free(f) == 0);
        (void)wildx_call_i32_i32(f, 1, 2);
        return 3;
    }
    if (strcmp(mode, "call-foreign") == 0) {
        unsigned char code[16] = {0x89, 0xf8, 0x01, 0xf0, 0xc3};
        (void)wildx_call_i32_i32(code, 1, 2);
        return 3;
    }
    if (strcmp(mode, "tamper") == 0) {
        char perms[5];
        unsigned char *f = (unsigned char *)compile_add_i32();
        CHECK(50, f != NULL);
        CHECK(51, wildx_verify(f) == 0);
        CHECK(52, poke(f + 2, 0x29) == 0); /* add eax, esi -> sub eax, esi */
        CHECK(53, f[2] == 0x29);
        CHECK(54, wildx_verify(f) == -1);
        CHECK(55, wildx_state(f) == WILDX_STATE_EXECUTABLE);
        maps_perms(f, perms);
        CHECK(56, strcmp(perms, "r-xp") == 0); /* the protection never changed */
        printf("calling tampered page %p\n", (void *)f);
        int32_t r = wildx_call_i32_i32(f, 7, 35);
        CHECK(57, r == 7 - 35);
        /* putting the byte back makes it verify again */
        CHECK(58, poke(f + 2, 0x01) == 0 && wildx_verify(f) == 0);
        CHECK(59, wildx_call_i32_i32(f, 7, 35) == 42);
        CHECK(60, wildx_free(f) == 0);
        return 0;
    }
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
