/*
 * wildx.h - the C ABI of wildx: W^X executable memory for JITs on x86-64 Linux.
 *
 * Link:   cc prog.c -I include -L <dir of libwildx.a> -lwildx
 * Build:  cargo build --release   (libwildx.a lands in target/release/)
 *
 * A drop-in for the seed runtime's wildx_* and npk_jit_* helpers, with the same
 * contract: every function that refuses returns NULL or -1 and changes nothing.
 * "Refused" covers a NULL pointer, a pointer that did not come from wildx_alloc
 * (foreign), a pointer into the middle of a page (interior), a freed page, and a page
 * in the wrong state. No function reads or writes through a page pointer it is given
 * unless the registry says it starts a live wildx page; the two exceptions are
 * wildx_stats (writes *out) and npk_jit_call_i32_i32 (jumps to f).
 *
 * Lifecycle:  wildx_alloc -> WRITABLE -> wildx_seal -> EXECUTABLE -> wildx_free
 * No page is ever writable and executable at once. A write to a sealed page traps
 * (SIGSEGV). All functions are thread-safe; the registry is process-wide.
 *
 * The library is freestanding: it issues raw syscalls and needs no libc, only
 * memcpy, memmove and memset from the program (libc provides them; a -nostdlib
 * program must define them, as GCC already requires of freestanding code).
 */
#ifndef WILDX_H
#define WILDX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* wildx_state() of anything that is not a live wildx page: NULL, foreign, interior
 * or freed. -1, like every other refusal; wildx_state() never returns 0. */
#define WILDX_STATE_NOT_REGISTERED (-1)
/* wildx_state() of a WRITABLE page: mapped read+write, never executable. */
#define WILDX_STATE_WRITABLE 1
/* wildx_state() of an EXECUTABLE page: sealed, mapped read+execute, hash recorded. */
#define WILDX_STATE_EXECUTABLE 2

/* The quota a process starts with: 256 MiB of mapped bytes. */
#define WILDX_DEFAULT_QUOTA (256UL << 20)

/* A snapshot of the registry's accounting, filled by wildx_stats(). 80 bytes, no
 * padding; the layout is checked against the library's by tests/capi.rs. */
struct wildx_stats {
    size_t live_pages;        /* pages allocated and not yet freed */
    size_t live_bytes;        /* bytes mapped by live pages (whole 4096-byte pages) */
    size_t peak_bytes;        /* the most live_bytes has ever been */
    size_t quota;             /* the process-wide quota on live_bytes */
    uint64_t allocs;          /* successful wildx_alloc calls */
    uint64_t seals;           /* successful wildx_seal calls */
    uint64_t frees;           /* successful wildx_free / npk_wildx_free calls */
    uint64_t refusals;        /* refused allocs, seals, frees and installs (not verifies) */
    size_t registry_bytes;    /* bytes the registry's own table has mapped */
    size_t registry_capacity; /* entries the registry can hold before it grows */
};

/* Maps a WRITABLE page of at least `size` bytes: whole 4096-byte pages, read+write,
 * never executable, every byte 0xCC (int3). Syscall: mmap.
 * Returns NULL, changing nothing, for size 0, a size that overflows when rounded up
 * to pages (SIZE_MAX), a size that would pass the quota, or a refused mmap. */
void *wildx_alloc(size_t size);

/* Seals a WRITABLE page: records the FNV-1a 64 hash of its first `size` bytes (the
 * size given to wildx_alloc), then mprotects it read+execute. Syscall: mprotect.
 * Returns 0, or -1 changing nothing if `page` is not the start of a live WRITABLE page
 * (already sealed: bug246; freed, foreign, interior, NULL) or if the kernel refuses
 * PROT_EXEC (the page then stays WRITABLE). Do not write the page while sealing it. */
int32_t wildx_seal(void *page);

/* Unmaps a WRITABLE or EXECUTABLE page and forgets it. Syscall: munmap.
 * Returns 0, or -1 touching no memory for a double free, a foreign, interior or NULL
 * pointer. No thread may be calling into the page while it is freed. */
int32_t wildx_free(void *page);

/* The name the seed compiler's drop support emits at scope end: same as wildx_free. */
int32_t npk_wildx_free(void *page);

/* Re-hashes a sealed page's bytes and compares with the hash recorded at seal.
 * Returns 0 on a match, -1 on a mismatch or if `page` is not a live sealed page. */
int32_t wildx_verify(const void *page);

/* WILDX_STATE_WRITABLE, WILDX_STATE_EXECUTABLE, or WILDX_STATE_NOT_REGISTERED.
 * Touches no page memory. */
int32_t wildx_state(const void *page);

/* Writes the 5 bytes of int32_t add(int32_t, int32_t) (89 f8 01 f0 c3: mov eax, edi;
 * add eax, esi; ret) at the start of a live WRITABLE page of at least 5 bytes.
 * Returns 0, or -1 writing nothing (sealed, freed, foreign, too small, NULL). */
int32_t npk_jit_install_add_i32(void *page);

/* Calls f(a, b). `f` must be a live sealed page holding code of that signature (as
 * npk_jit_install_add_i32 + wildx_seal make it), not freed during the call.
 * Built with the verify-on-call feature, the page is re-hashed first; if it is not a
 * live sealed page or its bytes changed, one line goes to stderr and the process
 * aborts with SIGABRT before any of its bytes run. Without the feature this is one
 * indirect call and anything else passed as `f` is undefined behaviour. */
int32_t npk_jit_call_i32_i32(void *f, int32_t a, int32_t b);

/* Sets the process-wide quota on mapped bytes. Lowering it below what is mapped
 * unmaps nothing; new allocations are refused until enough is freed. */
void wildx_set_quota(size_t bytes);

/* The process-wide quota on mapped bytes (WILDX_DEFAULT_QUOTA at start). */
size_t wildx_quota(void);

/* Writes a snapshot of the accounting to *out; does nothing if `out` is NULL. */
void wildx_stats(struct wildx_stats *out);

/* fork() while other threads use wildx: register these once, before forking,
 *     pthread_atfork(wildx_atfork_prepare, wildx_atfork_parent, wildx_atfork_child);
 * prepare waits for seals and frees under way and holds the registry; parent releases
 * it; child resets it, so the child can use wildx at once. Without them, a child forked
 * while another thread is inside wildx may wait forever in its first wildx call (a
 * child that only calls execve or _exit is unaffected). Each hook does nothing unless
 * called in its place in a fork that wildx_atfork_prepare started. */
void wildx_atfork_prepare(void);
void wildx_atfork_parent(void);
void wildx_atfork_child(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* WILDX_H */
