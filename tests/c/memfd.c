/* The memfd fallback over the C ABI: a seccomp filter refuses PROT_EXEC on anonymous
 * memory (mprotect adding it, mmap of anonymous memory with it), as SELinux
 * deny_execmem does; pages and arenas still work, as views of a memfd, and
 * wildx_exec_mode() says so. Then a second filter refuses PROT_EXEC everywhere, and a
 * seal that the first allowed is refused with WILDX_E_EXEC_DENIED. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "check.h"

typedef int32_t (*add_fn)(int32_t, int32_t);

#define ARG_LO(i) (offsetof(struct seccomp_data, args) + 8 * (i))

static int install(struct sock_filter *filter, unsigned short len) {
    struct sock_fprog prog = {len, filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        return -1;
    }
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

int main(void) {
    struct sock_filter execmem[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 10),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_mprotect, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pkey_mprotect, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_mmap, 2, 6),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(2)),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 5, 4),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(2)),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 0, 2),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(3)),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, MAP_ANONYMOUS, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EACCES),
    };
    CHECK(10, wildx_exec_mode() == WILDX_EXEC_UNDETECTED);
    CHECK(11, install(execmem, sizeof execmem / sizeof execmem[0]) == 0);

    /* pages */
    void *f = compile_add_i32();
    CHECK(12, f != NULL && wildx_exec_mode() == WILDX_EXEC_MEMFD);
    struct wildx_stats s;
    wildx_stats(&s);
    CHECK(13, s.exec_mode == WILDX_EXEC_MEMFD && s.live_pages == 1);
    CHECK(14, ((add_fn)f)(40, 2) == 42 && wildx_call_i32_i32(f, 7, 35) == 42);
    CHECK(15, wildx_verify(f) == 0 && wildx_state(f) == WILDX_STATE_EXECUTABLE);
    CHECK(16, wildx_free(f) == 0);
    CHECK(17, wildx_use_memfd() == WILDX_OK);

    /* arenas */
    static const uint8_t add[] = {0x8d, 0x04, 0x37, 0xc3}; /* lea eax, [rdi+rsi]; ret */
    wildx_arena *arena = wildx_arena_new(1 << 20);
    CHECK(20, arena != NULL);
    void *g = wildx_arena_push(arena, add, sizeof add);
    CHECK(21, g != NULL && wildx_arena_publish(arena) == 0);
    CHECK(22, ((add_fn)g)(40, 2) == 42 && wildx_verify(g) == 0);

    /* A page made now, sealed after PROT_EXEC is refused everywhere. */
    void *late = wildx_alloc(64);
    CHECK(30, late != NULL && wildx_install_add_i32(late) == 0);
    void *pending = wildx_arena_push(arena, add, sizeof add);
    CHECK(31, pending != NULL);
    struct sock_filter no_exec[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_mmap, 0, 2),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(2)),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
    };
    CHECK(32, install(no_exec, sizeof no_exec / sizeof no_exec[0]) == 0);
    int32_t err = -99;
    CHECK(33, wildx_seal_ex(late, &err) == -1 && err == WILDX_E_EXEC_DENIED);
    CHECK(34, wildx_state(late) == WILDX_STATE_WRITABLE && wildx_install_add_i32(late) == 0);
    err = -99;
    CHECK(35, wildx_arena_publish_ex(arena, &err) == -1 && err == WILDX_E_EXEC_DENIED);
    CHECK(36, wildx_state(pending) == WILDX_STATE_WRITABLE);
    CHECK(37, ((add_fn)g)(1, 2) == 3);
    CHECK(38, wildx_free(late) == 0 && wildx_arena_free(arena) == 0);
    wildx_stats(&s);
    CHECK(39, s.live_pages == 0 && s.arenas == 0 && s.live_bytes == 0);
    return 0;
}
