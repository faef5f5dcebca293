/*
 * wildx.h - the C ABI of wildx: W^X executable memory for JITs on x86-64 Linux.
 *
 * Build:  cargo build --release -p wildx-capi   (target/release/libwildx.a)
 *         cargo build --release -p wildx-capi --features verify-on-call   (hardened)
 * Link:   cc prog.c -I include -L target/release -lwildx
 *
 * Every function that refuses returns NULL or -1 and changes nothing. "Refused" covers
 * a NULL pointer, a pointer that did not come from wildx_alloc (foreign), a pointer
 * into the middle of a page (interior), a freed page, a page in the wrong state, the
 * quota, and the kernel saying no. The *_ex variants (wildx_alloc_ex, wildx_seal_ex,
 * wildx_free_ex, wildx_verify_ex, wildx_install_add_i32_ex) also say why: they store a
 * WILDX_E_* code through their last argument, `int32_t *err` (WILDX_OK on success;
 * `err` may be NULL), and wildx_strerror(code) turns it into a message. The reason is
 * per call, so it is thread-safe and never overwritten by another thread.
 *
 * No function reads or writes through a page pointer it is given
 * unless the registry says it starts a live wildx page; the two exceptions are
 * wildx_stats (writes *out) and wildx_call_i32_i32 (jumps to f); the *_ex variants
 * write *err.
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

/* The version of this header; wildx_version() returns the library's as WILDX_VERSION. */
#define WILDX_VERSION_MAJOR 0
#define WILDX_VERSION_MINOR 1
#define WILDX_VERSION_PATCH 0
#define WILDX_VERSION \
    ((WILDX_VERSION_MAJOR << 16) | (WILDX_VERSION_MINOR << 8) | WILDX_VERSION_PATCH)

/* Why a call was refused: stored through `int32_t *err` by the *_ex variants.
 * New codes may be added at the end; a code is never reused. */
#define WILDX_OK 0                  /* no error */
#define WILDX_E_ZERO_LENGTH 1       /* alloc of 0 bytes */
#define WILDX_E_LENGTH_OVERFLOW 2   /* size overflows when rounded up to pages (SIZE_MAX) */
#define WILDX_E_QUOTA 3             /* the alloc would pass the quota (wildx_set_quota) */
#define WILDX_E_NULL 4              /* the page pointer is NULL */
#define WILDX_E_NOT_REGISTERED 5    /* foreign, interior or freed pointer (double free) */
#define WILDX_E_WRONG_STATE 6       /* sealing a sealed page, verifying a writable one, ... */
#define WILDX_E_TOO_SMALL 7         /* the page is smaller than what was to be written */
#define WILDX_E_HELD_BY_HANDLE 8    /* the page is owned by a Rust handle in this process */
#define WILDX_E_INTEGRITY 9         /* verify: the bytes changed since seal */
#define WILDX_E_REGISTRY_STORAGE 10 /* the page registry could not grow; nothing mapped */
#define WILDX_E_NO_MEMORY 11        /* the kernel: ENOMEM (memory, or vm.max_map_count) */
#define WILDX_E_DENIED 12           /* the kernel: EACCES/EPERM; a policy (SELinux execmem,
                                     * seccomp, hardened kernel) forbids PROT_EXEC or this
                                     * memory operation */
#define WILDX_E_OS 13               /* the kernel refused with another errno */
#define WILDX_E_ARENA_FULL 14       /* arena push or import: no room left in the arena */
#define WILDX_E_FOREIGN_FN 15       /* an arena function of another arena */
#define WILDX_E_RETIRED 16          /* the arena function is retired */
#define WILDX_E_ENTRY_ALIVE 17      /* retire: Rust Entry handles on the function live */
#define WILDX_E_REENTRANT 18        /* an arena used inside its own Rust push_with closure */
#define WILDX_E_REJECTED 19         /* the validator rejected the code (Rust compile) */
#define WILDX_E_READ_IMPLIES_EXEC 20 /* no longer returned: writable memory is mapped without
                                        PROT_READ, which READ_IMPLIES_EXEC never makes X */
#define WILDX_E_WOULD_BLOCK 21      /* the registry was busy; signal-safe calls do not wait */
#define WILDX_E_EXEC_DENIED 22      /* PROT_EXEC refused on anonymous memory and on a memfd */
#define WILDX_E_INHERITED 23        /* an arena inherited across fork in memfd mode */

/* Where executable memory comes from (wildx_exec_mode(), struct wildx_stats.exec_mode).
 * Chosen once, at the first page or arena: anonymous memory if the kernel lets an
 * R|W page become R|X; else (SELinux deny_execmem, PaX, seccomp) views of one memfd,
 * the writable view replaced by an executable one at seal; else denied. */
#define WILDX_EXEC_UNDETECTED 0     /* nothing mapped yet */
#define WILDX_EXEC_ANONYMOUS 1      /* mmap R|W, mprotect R|X */
#define WILDX_EXEC_MEMFD 2          /* memfd views; not inherited by fork children */
#define WILDX_EXEC_DENIED 3         /* every allocation fails with WILDX_E_EXEC_DENIED */

/* wildx_state() of anything that is not a live wildx page: NULL, foreign, interior
 * or freed. -1, like every other refusal; wildx_state() never returns 0. */
#define WILDX_STATE_NOT_REGISTERED (-1)
/* wildx_state() of a WRITABLE page: mapped read+write, never executable. */
#define WILDX_STATE_WRITABLE 1
/* wildx_state() of an EXECUTABLE page: sealed, mapped read+execute, hash recorded. */
#define WILDX_STATE_EXECUTABLE 2

/* The quota a process starts with: 256 MiB of mapped bytes. */
#define WILDX_DEFAULT_QUOTA (256UL << 20)

/* A snapshot of the registry's accounting, filled by wildx_stats(). 112 bytes, no
 * padding; the layout is checked against the library's by tests/capi.rs. */
struct wildx_stats {
    size_t live_pages;        /* pages allocated and not yet freed */
    size_t live_bytes;        /* bytes mapped by live pages (whole 4096-byte pages) */
    size_t peak_bytes;        /* the most live_bytes has ever been */
    size_t quota;             /* the process-wide quota on live_bytes */
    uint64_t allocs;          /* successful wildx_alloc calls */
    uint64_t seals;           /* successful wildx_seal calls */
    uint64_t frees;           /* successful wildx_free calls */
    uint64_t refusals;        /* refused allocs, seals, frees and installs (not verifies) */
    size_t registry_bytes;    /* bytes the registry's own table has mapped */
    size_t registry_capacity; /* entries the registry can hold before it grows */
    size_t arenas;            /* live arenas (wildx_arena_new, not yet freed) */
    size_t arena_functions;   /* functions pushed into live arenas and not retired */
    size_t arena_bytes;       /* accessible arena bytes (part of live_bytes) */
    size_t exec_mode;         /* WILDX_EXEC_*: where executable memory comes from */
};

/* Maps a WRITABLE page of at least `size` bytes: whole 4096-byte pages, read+write,
 * never executable, every byte 0xCC (int3). Syscall: mmap.
 * Returns NULL, changing nothing, for size 0, a size that overflows when rounded up
 * to pages (SIZE_MAX), a size that would pass the quota, or a refused mmap. */
void *wildx_alloc(size_t size);

/* Seals a WRITABLE page: records the FNV-1a 64 hash of its first `size` bytes (the
 * size given to wildx_alloc), then mprotects it read+execute. Syscall: mprotect.
 * Returns 0, or -1 changing nothing if `page` is not the start of a live WRITABLE page
 * (already sealed, freed, foreign, interior, NULL) or if the kernel refuses
 * PROT_EXEC (the page then stays WRITABLE). Do not write the page while sealing it. */
int32_t wildx_seal(void *page);

/* Unmaps a WRITABLE or EXECUTABLE page and forgets it. Syscall: munmap.
 * Returns 0, or -1 touching no memory for a double free, a foreign, interior or NULL
 * pointer. No thread may be calling into the page while it is freed. */
int32_t wildx_free(void *page);


/* Re-hashes a sealed page's bytes and compares with the hash recorded at seal.
 * Returns 0 on a match, -1 on a mismatch or if `page` is not a live sealed page. */
int32_t wildx_verify(const void *page);

/* WILDX_STATE_WRITABLE, WILDX_STATE_EXECUTABLE, or WILDX_STATE_NOT_REGISTERED.
 * Touches no page memory. */
int32_t wildx_state(const void *page);

/* Writes the 5 bytes of int32_t add(int32_t, int32_t) (89 f8 01 f0 c3: mov eax, edi;
 * add eax, esi; ret) at the start of a live WRITABLE page of at least 5 bytes.
 * Returns 0, or -1 writing nothing (sealed, freed, foreign, too small, NULL). */
int32_t wildx_install_add_i32(void *page);

/* Calls f(a, b). `f` must be a live sealed page holding code of that signature (as
 * wildx_install_add_i32 + wildx_seal make it), not freed during the call.
 * Built with the verify-on-call feature, the page is re-hashed first; if it is not a
 * live sealed page or its bytes changed, one line goes to stderr and the process
 * aborts with SIGABRT before any of its bytes run. Without the feature this is one
 * indirect call and anything else passed as `f` is undefined behaviour. */
int32_t wildx_call_i32_i32(void *f, int32_t a, int32_t b);

/* Sets the process-wide quota on mapped bytes. Lowering it below what is mapped
 * unmaps nothing; new allocations are refused until enough is freed. */
void wildx_set_quota(size_t bytes);

/* The process-wide quota on mapped bytes (WILDX_DEFAULT_QUOTA at start). */
size_t wildx_quota(void);

/* Writes a snapshot of the accounting to *out; does nothing if `out` is NULL. */
void wildx_stats(struct wildx_stats *out);

/* ---- Code arenas: many functions in one reserved range, published in batches ----
 *
 * An arena reserves `capacity` bytes of address space that never move. Pushed functions
 * land at wildx_arena_next_addr() (16-byte aligned), on read+write pages; they become
 * callable, on read+exec pages, at the next wildx_arena_publish(), which records each
 * function's FNV-1a hash first. Later pushes go to fresh pages: a page that held
 * published code is never writable again. A function's address is also a handle for
 * wildx_state / wildx_verify / wildx_call_i32_i32 (verify-on-call applies);
 * wildx_free and wildx_seal refuse it. Every wildx_arena_* function checks the handle
 * against the registry first: NULL, freed or foreign handles are refused, never read. */
typedef struct wildx_arena wildx_arena;

/* Reserves `capacity` bytes (rounded up to pages), inaccessible until used; the quota
 * counts only pages that pushes made accessible. NULL for 0, SIZE_MAX, or a refused
 * reservation. Syscalls: mmap. */
wildx_arena *wildx_arena_new(size_t capacity);

/* Where the next push lands (16-byte aligned); 0 for a bad handle. */
uintptr_t wildx_arena_next_addr(const wildx_arena *arena);

/* Copies `len` bytes of code in at wildx_arena_next_addr(); returns the function's
 * address, or NULL with nothing changed (bad handle, NULL code, len 0, no room left,
 * quota). Not callable until the next wildx_arena_publish. */
void *wildx_arena_push(wildx_arena *arena, const void *code, size_t len);

/* Stores `target` (a host function, cast to void (*)(void)) in an 8-byte slot inside the
 * arena and returns the slot's address, for `call qword ptr [rip + disp32]`; read-only
 * from the next publish. NULL on a bad handle, a NULL target or no room. */
void *wildx_arena_import(wildx_arena *arena, void (*target)(void));

/* Hashes and seals everything pushed or imported since the last publish (one mprotect
 * to read+exec). 0, or -1: bad handle, or the kernel refused (nothing published). */
int32_t wildx_arena_publish(wildx_arena *arena);

/* Retires the published function starting at `fn`: it is no longer a live function for
 * wildx, and pages left holding only retired functions go back to the kernel
 * (inaccessible: a stale pointer faults). 0, or -1 with nothing changed. */
int32_t wildx_arena_retire(wildx_arena *arena, const void *fn);

/* Unmaps the arena and all its functions. 0, or -1 touching nothing for a handle that
 * is not a live arena (NULL, freed twice, foreign). No thread may be running its code. */
int32_t wildx_arena_free(wildx_arena *arena);

/* The arena calls with the reason stored in *err (WILDX_OK on success; `err` may be
 * NULL). A handle that is not a live arena gives WILDX_E_NOT_REGISTERED.
 *   wildx_arena_new_ex:     ZERO_LENGTH, LENGTH_OVERFLOW, NO_MEMORY, REGISTRY_STORAGE,
 *                           EXEC_DENIED (no executable memory at all)
 *   wildx_arena_push_ex:    NULL (code), ZERO_LENGTH, ARENA_FULL, QUOTA, NO_MEMORY,
 *                           DENIED, REGISTRY_STORAGE, INHERITED
 *   wildx_arena_import_ex:  NULL (target), ARENA_FULL, QUOTA, NO_MEMORY, DENIED, INHERITED
 *   wildx_arena_publish_ex: EXEC_DENIED (PROT_EXEC forbidden; nothing is published),
 *                           NO_MEMORY, OS, INHERITED
 *   wildx_arena_retire_ex:  NOT_REGISTERED (no function starts at fn), WRONG_STATE (not
 *                           published), RETIRED, ENTRY_ALIVE, NO_MEMORY, OS, INHERITED
 * INHERITED: the arena was made before a fork, in memfd mode (WILDX_EXEC_MEMFD), and
 * this is the child, where its code is not mapped: only wildx_arena_free works. */
wildx_arena *wildx_arena_new_ex(size_t capacity, int32_t *err);
void *wildx_arena_push_ex(wildx_arena *arena, const void *code, size_t len, int32_t *err);
void *wildx_arena_import_ex(wildx_arena *arena, void (*target)(void), int32_t *err);
int32_t wildx_arena_publish_ex(wildx_arena *arena, int32_t *err);
int32_t wildx_arena_retire_ex(wildx_arena *arena, const void *fn, int32_t *err);
/* The *_ex variants: the same call, and the reason stored in *err (WILDX_OK on
 * success). `err` may be NULL. Codes each can store:
 *   wildx_alloc_ex:  ZERO_LENGTH, LENGTH_OVERFLOW, QUOTA, NO_MEMORY, DENIED, OS,
 *                    REGISTRY_STORAGE, EXEC_DENIED (no executable memory at all:
 *                    anonymous and memfd both refused)
 *   wildx_seal_ex:   NULL, NOT_REGISTERED, WRONG_STATE (already sealed), HELD_BY_HANDLE,
 *                    EXEC_DENIED (PROT_EXEC forbidden; the page stays WRITABLE),
 *                    NO_MEMORY, OS
 *   wildx_free_ex:   NULL, NOT_REGISTERED (double free, foreign, interior),
 *                    HELD_BY_HANDLE, DENIED or OS (munmap refused; the page is kept)
 *   wildx_verify_ex: INTEGRITY, NULL, NOT_REGISTERED, WRONG_STATE (not sealed)
 *   wildx_install_add_i32_ex: NULL, NOT_REGISTERED, WRONG_STATE (sealed), TOO_SMALL,
 *                    HELD_BY_HANDLE */
void *wildx_alloc_ex(size_t size, int32_t *err);
int32_t wildx_seal_ex(void *page, int32_t *err);
int32_t wildx_free_ex(void *page, int32_t *err);
int32_t wildx_verify_ex(const void *page, int32_t *err);
int32_t wildx_install_add_i32_ex(void *page, int32_t *err);

/* A static message for a WILDX_OK / WILDX_E_* code ("unknown wildx error code" for
 * anything else). Never NULL; do not free it. */
const char *wildx_strerror(int32_t code);

/* The library's version, encoded as WILDX_VERSION is: compare the two to catch a
 * header and a library from different releases. */
uint32_t wildx_version(void);

/* Compatibility names (see docs/c.md): the same functions under the names an earlier
 * runtime's generated code calls. */
int32_t npk_wildx_free(void *page);                                 /* wildx_free */
int32_t npk_jit_install_add_i32(void *page);                        /* wildx_install_add_i32 */
int32_t npk_jit_call_i32_i32(void *f, int32_t a, int32_t b);        /* wildx_call_i32_i32 */

/* fork() while other threads use wildx: register these once, before forking,
 *     pthread_atfork(wildx_atfork_prepare, wildx_atfork_parent, wildx_atfork_child);
 * prepare waits for seals and frees under way and holds the registry; parent releases
 * it; child resets it, so the child can use wildx at once. Without them, a child forked
 * while another thread is inside wildx may wait forever in its first wildx call (a
 * child that only calls execve or _exit is unaffected). Each hook does nothing unless
 * called in its place in a fork that wildx_atfork_prepare started. */
/* The mode in force (WILDX_EXEC_*), without choosing it. */
size_t wildx_exec_mode(void);
/* Chooses the memfd mode before anything is mapped, without first trying anonymous
 * memory (whose refusal SELinux logs). WILDX_OK if the memfd mode is in force after
 * the call; WILDX_E_WRONG_STATE if anonymous pages were made already (the mode is
 * chosen once per process); WILDX_E_EXEC_DENIED if executable memfds are refused too. */
int32_t wildx_use_memfd(void);

void wildx_atfork_prepare(void);
void wildx_atfork_parent(void);
void wildx_atfork_child(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* WILDX_H */
