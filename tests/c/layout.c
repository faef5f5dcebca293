/* Prints the header's view of the ABI (struct layout and constants) as "name value"
 * lines; tests/capi.rs compares them with the Rust side (offset_of!, size_of, the
 * constants in wildx::capi). Also checks that wildx_stats fills every field and
 * ignores NULL. */
#include "check.h"

#define FIELD(f) printf("offsetof %s %zu\nsizeof %s %zu\n", #f, offsetof(struct wildx_stats, f), \
                        #f, sizeof(((struct wildx_stats *)0)->f))

int main(void) {
    printf("sizeof wildx_stats %zu\n", sizeof(struct wildx_stats));
    printf("alignof wildx_stats %zu\n", _Alignof(struct wildx_stats));
    FIELD(live_pages);
    FIELD(live_bytes);
    FIELD(peak_bytes);
    FIELD(quota);
    FIELD(allocs);
    FIELD(seals);
    FIELD(frees);
    FIELD(refusals);
    FIELD(registry_bytes);
    FIELD(registry_capacity);
    FIELD(arenas);
    FIELD(arena_functions);
    FIELD(arena_bytes);
    FIELD(exec_mode);
    printf("const WILDX_STATE_NOT_REGISTERED %d\n", WILDX_STATE_NOT_REGISTERED);
    printf("const WILDX_STATE_WRITABLE %d\n", WILDX_STATE_WRITABLE);
    printf("const WILDX_STATE_EXECUTABLE %d\n", WILDX_STATE_EXECUTABLE);
    printf("const WILDX_DEFAULT_QUOTA %zu\n", WILDX_DEFAULT_QUOTA);
    printf("const WILDX_EXEC_UNDETECTED %d\n", WILDX_EXEC_UNDETECTED);
    printf("const WILDX_EXEC_ANONYMOUS %d\n", WILDX_EXEC_ANONYMOUS);
    printf("const WILDX_EXEC_MEMFD %d\n", WILDX_EXEC_MEMFD);
    printf("const WILDX_EXEC_DENIED %d\n", WILDX_EXEC_DENIED);
    CHECK(9, wildx_exec_mode() == WILDX_EXEC_UNDETECTED);

    /* every byte of the struct is written: fill with a pattern, then look for it in
     * the fields that cannot hold it */
    struct wildx_stats s;
    memset(&s, 0xA5, sizeof s);
    void *p = wildx_alloc(100);
    CHECK(10, p != NULL);
    wildx_stats(&s);
    CHECK(11, s.live_pages == 1 && s.live_bytes == 4096 && s.peak_bytes == 4096);
    CHECK(12, s.quota == WILDX_DEFAULT_QUOTA && s.allocs == 1);
    CHECK(13, s.seals == 0 && s.frees == 0 && s.refusals == 0);
    CHECK(14, s.registry_capacity >= 1 && s.registry_bytes > 0);
    CHECK(15, s.registry_bytes < (size_t)1 << 32 && s.registry_capacity < (size_t)1 << 32);
    CHECK(19, s.exec_mode == WILDX_EXEC_ANONYMOUS && wildx_exec_mode() == WILDX_EXEC_ANONYMOUS);
    CHECK(20, wildx_use_memfd() == WILDX_E_WRONG_STATE); /* chosen once, at the first page */
    CHECK(16, wildx_seal(p) == 0 && wildx_seal(p) == -1 && wildx_free(p) == 0);
    wildx_stats(&s);
    CHECK(17, s.live_pages == 0 && s.live_bytes == 0 && s.peak_bytes == 4096);
    CHECK(18, s.allocs == 1 && s.seals == 1 && s.frees == 1 && s.refusals == 1);
    wildx_stats(NULL); /* ignored */
    return 0;
}
