/* include/wildx.h compiled as C (C99, C11) and as C++ (C++11, C++17, via g++ -x c++)
 * with -Wall -Wextra -Werror -pedantic, then linked and run: the function pointers
 * below pin every export to the exact C type the issue names (a mismatch does not
 * compile), and linking the C++ build proves the names have C linkage. */
#include "wildx.h"
#include "wildx.h" /* include guard */

#ifdef __cplusplus
#define STATIC_CHECK(name, cond) static_assert(cond, #name)
#else
#define STATIC_CHECK(name, cond) typedef char name[(cond) ? 1 : -1]
#endif

STATIC_CHECK(stats_is_104_bytes, sizeof(struct wildx_stats) == 104);
STATIC_CHECK(not_registered_is_minus_one, WILDX_STATE_NOT_REGISTERED == -1);
STATIC_CHECK(states_differ, WILDX_STATE_WRITABLE != WILDX_STATE_EXECUTABLE);

#if WILDX_STATE_WRITABLE != 1 || WILDX_STATE_EXECUTABLE != 2
#error "the state constants must be usable in #if"
#endif

static void *(*const p_alloc)(size_t) = wildx_alloc;
static int32_t (*const p_seal)(void *) = wildx_seal;
static int32_t (*const p_free)(void *) = wildx_free;
static int32_t (*const p_npk_free)(void *) = npk_wildx_free;
static int32_t (*const p_verify)(const void *) = wildx_verify;
static int32_t (*const p_state)(const void *) = wildx_state;
static int32_t (*const p_install)(void *) = npk_jit_install_add_i32;
static int32_t (*const p_call)(void *, int32_t, int32_t) = npk_jit_call_i32_i32;
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

static void host_nothing(void) {}

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
    }
    return 0;
}
