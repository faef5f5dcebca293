/* Linked with -nostdlib -static: no libc, no crt files, no libgcc; only this file and
 * libwildx.a. It brings what any freestanding C program brings (its own _start and exit,
 * and memcpy/memmove/memset, which GCC itself may call), and nothing else.
 * Exit status 0 on success, else the number of the failed check. */
#include "wildx.h"

#define CHECK(code, cond)      \
    do {                       \
        if (!(cond)) {         \
            return (code);     \
        }                      \
    } while (0)

/* rep movsb/stosb: cannot be turned back into calls to themselves by the compiler. */
void *memcpy(void *dst, const void *src, size_t n) {
    void *d = dst;
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
    return dst;
}

void *memmove(void *dst, const void *src, size_t n) {
    if ((uintptr_t)dst - (uintptr_t)src >= n) { /* no overlap that forward copying breaks */
        return memcpy(dst, src, n);
    }
    void *d = (char *)dst + n - 1;
    const void *s = (const char *)src + n - 1;
    __asm__ volatile("std\n\trep movsb\n\tcld" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
    return dst;
}

void *memset(void *dst, int c, size_t n) {
    void *d = dst;
    __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
    return dst;
}

static __attribute__((noreturn)) void exit_group(int code) {
    for (;;) {
        __asm__ volatile("syscall" : : "a"(231), "D"(code) : "rcx", "r11", "memory");
    }
}

static long write_fd(int fd, const void *buf, size_t len) {
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(1), "D"(fd), "S"(buf), "d"(len) : "rcx", "r11", "memory");
    return ret;
}

static int run(void) {
    struct wildx_stats s0, s1;
    wildx_stats(&s0);
    CHECK(10, s0.live_pages == 0 && s0.allocs == 0);
    CHECK(11, wildx_quota() == WILDX_DEFAULT_QUOTA);

    /* compile, call */
    void *f = wildx_alloc(64);
    CHECK(20, f != NULL);
    CHECK(21, wildx_state(f) == WILDX_STATE_WRITABLE);
    CHECK(22, wildx_install_add_i32(f) == 0);
    CHECK(23, wildx_seal(f) == 0);
    CHECK(24, wildx_call_i32_i32(f, 7, 35) == 42);
    /* a second seal is refused */
    CHECK(25, wildx_seal(f) == -1);
    CHECK(26, wildx_verify(f) == 0);

    /* two pages */
    void *g = wildx_alloc(64);
    CHECK(30, g != NULL && g != f);
    CHECK(31, wildx_install_add_i32(g) == 0 && wildx_seal(g) == 0);
    CHECK(32, wildx_call_i32_i32(g, 17, 25) == 42);
    CHECK(33, wildx_free(g) == 0);
    CHECK(34, wildx_call_i32_i32(f, 20, 22) == 42);

    /* double free, foreign, interior, edges */
    CHECK(40, wildx_free(f) == 0);
    CHECK(41, wildx_free(f) == -1);
    CHECK(42, wildx_free((void *)&s0) == -1);
    CHECK(43, wildx_free(NULL) == -1);
    CHECK(44, wildx_alloc(0) == NULL && wildx_alloc(SIZE_MAX) == NULL);
    void *h = wildx_alloc(8192);
    CHECK(45, h != NULL && wildx_free((char *)h + 4096) == -1 && wildx_free(h) == 0);

    /* quota */
    wildx_set_quota(3 * 4096);
    void *a = wildx_alloc(4096), *b = wildx_alloc(4096), *c = wildx_alloc(4096);
    CHECK(50, a != NULL && b != NULL && c != NULL && wildx_alloc(1) == NULL);
    CHECK(51, wildx_free(a) == 0 && wildx_free(b) == 0 && wildx_free(c) == 0);
    wildx_set_quota(WILDX_DEFAULT_QUOTA);

    wildx_stats(&s1);
    CHECK(60, s1.live_pages == 0 && s1.live_bytes == 0);
    CHECK(61, s1.allocs == 6 && s1.seals == 2 && s1.frees == 6);
    CHECK(62, s1.refusals == 8);
    return 0;
}

/* The C entry point _start jumps to with a 16-byte aligned stack. */
__attribute__((noreturn, used)) void start_c(void) {
    int rc = run();
    if (rc == 0) {
        static const char ok[] = "nostdlib: ok\n";
        write_fd(1, ok, sizeof ok - 1);
    }
    exit_group(rc);
}

/* The kernel enters at _start with %rsp 16-byte aligned and no return address; align
 * it again for the call anyway, and mark the outermost frame. */
__asm__(".text\n"
        ".globl _start\n"
        ".type _start, @function\n"
        "_start:\n"
        "    xor %ebp, %ebp\n"
        "    and $-16, %rsp\n"
        "    call start_c\n"
        "    ud2\n"
        ".size _start, . - _start\n");
