/* include/wildx.h compiled as C (C99, C11) and as C++ (C++11, C++17, via g++ -x c++)
 * with -Wall -Wextra -Werror -pedantic, then linked and run: the function pointers
 * below pin every export to its exact C type (a mismatch does not compile), and linking the C++ build proves the names have C linkage. */
#include "wildx.h"
#include "wildx.h" /* include guard */

#ifdef __cplusplus
#define STATIC_CHECK(name, cond) static_assert(cond, #name)
#else
#define STATIC_CHECK(name, cond) typedef char name[(cond) ? 1 : -1]
#endif

STATIC_CHECK(stats_is_112_bytes, sizeof(struct wildx_stats) == 112);
STATIC_CHECK(not_registered_is_minus_one, WILDX_STATE_NOT_REGISTERED == -1);
STATIC_CHECK(states_differ, WILDX_STATE_WRITABLE != WILDX_STATE_EXECUTABLE);

#if WILDX_STATE_WRITABLE != 1 || WILDX_STATE_EXECUTABLE != 2
#error "the state constants must be usable in #if"
#endif
#if WILDX_OK != 0 || WILDX_E_OS != 13 || WILDX_VERSION < 0x100
#error "the error codes and the version must be usable in #if"
#endif

static void *(*const p_alloc)(size_t) = wildx_alloc;
static int32_t (*const p_seal)(void *) = wildx_seal;
static int32_t (*const p_free)(void *) = wildx_free;
static int32_t (*const p_verify)(const void *) = wildx_verify;
static int32_t (*const p_state)(const void *) = wildx_state;
static int32_t (*const p_install)(void *) = wildx_install_add_i32;
static int32_t (*const p_call)(void *, int32_t, int32_t) = wildx_call_i32_i32;
static void (*const p_set_quota)(size_t) = wildx_set_quota;
static size_t (*const p_quota)(void) = wildx_quota;
static void (*const p_stats)(struct wildx_stats *) = wildx_stats;
static wildx_arena *(*const p_arena_new)(size_t) = wildx_arena_new;
static uintptr_t (*const p_arena_next_addr)(const wildx_arena *) = wildx_arena_next_addr;
static void *(*const p_arena_push)(wildx_arena *, const void *, size_t) = wildx_arena_push;
static void *(*const p_arena_import)(wildx_arena *, void (*)(void)) = wildx_arena_import;
static int32_t (*const p_arena_publish)(wildx_arena *) = wildx_arena_publish;
static int32_t (*const p_arena_retire)(wildx_arena *, const void *) = wildx_arena_retire;
static int32_t (*const p_arena_free)(wildx_arena *) = wildx_arena_free;
static wildx_arena *(*const p_arena_new_ex)(size_t, int32_t *) = wildx_arena_new_ex;
static void *(*const p_arena_push_ex)(wildx_arena *, const void *, size_t, int32_t *) = wildx_arena_push_ex;
static void *(*const p_arena_import_ex)(wildx_arena *, void (*)(void), int32_t *) = wildx_arena_import_ex;
static int32_t (*const p_arena_publish_ex)(wildx_arena *, int32_t *) = wildx_arena_publish_ex;
static int32_t (*const p_arena_retire_ex)(wildx_arena *, const void *, int32_t *) = wildx_arena_retire_ex;

static void host_nothing(void) {}
static void *(*const p_alloc_ex)(size_t, int32_t *) = wildx_alloc_ex;
static int32_t (*const p_seal_ex)(void *, int32_t *) = wildx_seal_ex;
static int32_t (*const p_free_ex)(void *, int32_t *) = wildx_free_ex;
static int32_t (*const p_verify_ex)(const void *, int32_t *) = wildx_verify_ex;
static int32_t (*const p_install_ex)(void *, int32_t *) = wildx_install_add_i32_ex;
static const char *(*const p_strerror)(int32_t) = wildx_strerror;
static uint32_t (*const p_version)(void) = wildx_version;
/* compatibility names */
static int32_t (*const p_npk_free)(void *) = npk_wildx_free;
static int32_t (*const p_npk_install)(void *) = npk_jit_install_add_i32;
static int32_t (*const p_npk_call)(void *, int32_t, int32_t) = npk_jit_call_i32_i32;

int main(void) {
    struct wildx_stats s;
    void *f = p_alloc(64);
    if (f == NULL) return 10;
    if (p_state(f) != WILDX_STATE_WRITABLE) return 11;
    if (p_install(f) != 0) return 12;
    if (p_seal(f) != 0) return 13;
    if (p_state(f) != WILDX_STATE_EXECUTABLE) return 14;
    if (p_verify(f) != 0) return 15;
    if (p_call(f, 7, 35) != 42) return 16;
    p_stats(&s);
    if (s.live_pages != 1 || s.quota != p_quota()) return 17;
    p_set_quota(p_quota());
    if (p_quota() != WILDX_DEFAULT_QUOTA) return 18;
    if (p_free(f) != 0) return 19;
    if (p_npk_free(f) != -1) return 20;
    {
        static const unsigned char ret7[] = {0xb8, 7, 0, 0, 0, 0xc3}; /* mov eax, 7; ret */
        wildx_arena *a = p_arena_new(4096);
        if (a == NULL || p_arena_next_addr(a) == 0) return 21;
        if (p_arena_import(a, host_nothing) == NULL) return 22;
        void *g = p_arena_push(a, ret7, sizeof ret7);
        if (g == NULL || p_arena_publish(a) != 0) return 23;
        if (p_arena_retire(a, g) != 0 || p_arena_free(a) != 0) return 24;
        int32_t e = -1;
        wildx_arena *b = p_arena_new_ex(4096, &e);
        if (b == NULL || e != WILDX_OK || p_arena_import_ex(b, host_nothing, &e) == NULL) return 25;
        void *h = p_arena_push_ex(b, ret7, sizeof ret7, &e);
        if (h == NULL || p_arena_publish_ex(b, &e) != 0 || p_arena_retire_ex(b, h, &e) != 0) return 26;
        if (p_arena_free(b) != 0) return 27;
    }
    int32_t err = -1;
    void *g = p_alloc_ex(64, &err);
    if (g == NULL || err != WILDX_OK) return 30;
    if (p_install_ex(g, &err) != 0 || p_seal_ex(g, &err) != 0 || err != WILDX_OK) return 31;
    if (p_npk_call(g, 1, 2) != 3 || p_npk_install(g) != -1) return 32;
    if (p_verify_ex(g, &err) != 0 || p_free_ex(g, &err) != 0 || err != WILDX_OK) return 33;
    if (p_strerror(WILDX_OK) == NULL || p_version() != WILDX_VERSION) return 34;
    return 0;
}
