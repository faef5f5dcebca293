/* The arena over the C ABI: push, import a host function, publish, call through the
 * function pointer and through wildx_call_i32_i32, raw-surface answers, retire, and
 * bad handles refused. */
#include <stdint.h>

#include "check.h"

typedef int32_t (*add_fn)(int32_t, int32_t);
typedef int64_t (*i64_fn)(int64_t);

static int64_t host_triple(int64_t x) { return x * 3; }

int main(void) {
    static const uint8_t add[] = {0x8d, 0x04, 0x37, 0xc3}; /* lea eax, [rdi+rsi]; ret */
    struct wildx_stats before, s;
    wildx_stats(&before);

    wildx_arena *arena = wildx_arena_new(1 << 20);
    CHECK(10, arena != NULL);
    uintptr_t at = wildx_arena_next_addr(arena);
    CHECK(11, at != 0 && at % 16 == 0);
    void *f = wildx_arena_push(arena, add, sizeof add);
    CHECK(12, (uintptr_t)f == at);
    CHECK(13, wildx_state(f) == WILDX_STATE_WRITABLE && wildx_seal(f) == -1);

    /* h(x) = host_triple(x) + 1: sub rsp, 8; call [rip + d]; add rsp, 8; add rax, 1; ret */
    void *slot = wildx_arena_import(arena, (void (*)(void))host_triple);
    CHECK(9, wildx_arena_import(arena, NULL) == NULL);
    CHECK(14, slot != NULL && (uintptr_t)slot % 8 == 0);
    uint8_t h_code[19] = {0x48, 0x83, 0xec, 0x08, 0xff, 0x15, 0, 0, 0, 0,
                          0x48, 0x83, 0xc4, 0x08, 0x48, 0x83, 0xc0, 0x01, 0xc3};
    uintptr_t h_at = wildx_arena_next_addr(arena);
    int32_t disp = (int32_t)((intptr_t)slot - (intptr_t)(h_at + 10));
    memcpy(h_code + 6, &disp, 4);
    void *h = wildx_arena_push(arena, h_code, sizeof h_code);
    CHECK(15, (uintptr_t)h == h_at);

    CHECK(16, wildx_arena_publish(arena) == 0);
    CHECK(17, wildx_state(f) == WILDX_STATE_EXECUTABLE && wildx_verify(f) == 0);
    CHECK(18, ((add_fn)f)(40, 2) == 42 && wildx_call_i32_i32(f, 7, 35) == 42);
    CHECK(19, ((i64_fn)h)(-5) == -14);
    CHECK(20, wildx_free(f) == -1 && wildx_seal(f) == -1);
    CHECK(21, wildx_arena_next_addr(arena) % 4096 == 0); /* fresh page after a publish */

    wildx_stats(&s);
    CHECK(22, s.arenas == before.arenas + 1 && s.arena_functions == before.arena_functions + 2);
    size_t grown = s.arena_bytes - before.arena_bytes; /* pages are committed ahead */
    CHECK(23, grown > 0 && grown % 4096 == 0 && s.live_bytes - before.live_bytes == grown);

    CHECK(24, wildx_arena_retire(arena, (char *)f + 1) == -1); /* not a function start */
    CHECK(25, wildx_arena_retire(arena, f) == 0 && wildx_arena_retire(arena, f) == -1);
    CHECK(26, wildx_state(f) == WILDX_STATE_NOT_REGISTERED && wildx_verify(f) == -1);
    CHECK(27, ((i64_fn)h)(1) == 4); /* h shares the page: still there */

    /* bad input and bad handles */
    CHECK(30, wildx_arena_new(0) == NULL && wildx_arena_new(SIZE_MAX) == NULL);
    CHECK(31, wildx_arena_push(arena, NULL, 4) == NULL && wildx_arena_push(arena, add, 0) == NULL);
    CHECK(32, wildx_arena_push(NULL, add, 4) == NULL && wildx_arena_publish(NULL) == -1);
    int local;
    CHECK(33, wildx_arena_next_addr((wildx_arena *)&local) == 0);
    CHECK(34, wildx_arena_free((wildx_arena *)&local) == -1 && wildx_arena_free(NULL) == -1);

    /* the reasons, through the _ex variants */
    int32_t err = -99;
    CHECK(40, wildx_arena_new_ex(0, &err) == NULL && err == WILDX_E_ZERO_LENGTH);
    CHECK(41, wildx_arena_new_ex(SIZE_MAX, &err) == NULL && err == WILDX_E_LENGTH_OVERFLOW);
    wildx_arena *small = wildx_arena_new_ex(4096, &err);
    CHECK(42, small != NULL && err == WILDX_OK);
    static uint8_t big[4097];
    CHECK(43, wildx_arena_push_ex(small, big, sizeof big, &err) == NULL && err == WILDX_E_ARENA_FULL);
    CHECK(44, wildx_arena_push_ex(small, NULL, 4, &err) == NULL && err == WILDX_E_NULL);
    CHECK(45, wildx_arena_push_ex(small, add, 0, &err) == NULL && err == WILDX_E_ZERO_LENGTH);
    void *g = wildx_arena_push_ex(small, add, sizeof add, &err);
    CHECK(46, g != NULL && err == WILDX_OK);
    CHECK(47, wildx_arena_retire_ex(small, g, &err) == -1 && err == WILDX_E_WRONG_STATE);
    CHECK(48, wildx_arena_publish_ex(small, &err) == 0 && err == WILDX_OK);
    CHECK(49, wildx_arena_retire_ex(small, g, &err) == 0 && err == WILDX_OK);
    CHECK(50, wildx_arena_retire_ex(small, g, &err) == -1 && err == WILDX_E_RETIRED);
    CHECK(51, wildx_arena_retire_ex(small, (char *)g + 1, &err) == -1 && err == WILDX_E_NOT_REGISTERED);
    CHECK(52, wildx_arena_import_ex(small, NULL, &err) == NULL && err == WILDX_E_NULL);
    CHECK(53, wildx_arena_publish_ex((wildx_arena *)&local, &err) == -1 && err == WILDX_E_NOT_REGISTERED);
    CHECK(54, wildx_arena_push_ex(NULL, add, 4, &err) == NULL && err == WILDX_E_NOT_REGISTERED);
    CHECK(55, wildx_arena_free(small) == 0);
    CHECK(56, wildx_arena_publish_ex(small, NULL) == -1);

    CHECK(35, wildx_arena_free(arena) == 0);
    CHECK(36, wildx_arena_free(arena) == -1 && wildx_arena_next_addr(arena) == 0);
    CHECK(37, wildx_arena_push(arena, add, 4) == NULL && wildx_arena_publish(arena) == -1);
    CHECK(38, wildx_state(h) == WILDX_STATE_NOT_REGISTERED);
    wildx_stats(&s);
    CHECK(39, s.arenas == before.arenas && s.arena_bytes == before.arena_bytes && s.live_bytes == before.live_bytes);
    puts("arena: ok");
    return 0;
}
