/* The C ABI from several threads at once: each thread runs whole lifecycles (alloc,
 * install, seal, call, verify, free) and refused operations on its freed pages; the
 * totals must add up exactly and nothing may be left live. */
#include <pthread.h>

#include "check.h"

#define THREADS 4
#define ROUNDS 500

static void *worker(void *arg) {
    int32_t id = (int32_t)(intptr_t)arg;
    for (int32_t i = 0; i < ROUNDS; i++) {
        void *f = wildx_alloc(64);
        if (f == NULL) return (void *)1;
        if (wildx_install_add_i32(f) != 0) return (void *)2;
        if (wildx_seal(f) != 0) return (void *)3;
        if (wildx_call_i32_i32(f, id, i) != id + i) return (void *)4;
        if (wildx_verify(f) != 0) return (void *)5;
        if (wildx_free(f) != 0) return (void *)6;
        if (wildx_free(f) != -1) return (void *)7; /* refused; may not free another's page */
    }
    return NULL;
}

int main(void) {
    struct wildx_stats s0, s1;
    pthread_t threads[THREADS];
    wildx_stats(&s0);
    for (intptr_t t = 0; t < THREADS; t++) {
        CHECK(10, pthread_create(&threads[t], NULL, worker, (void *)t) == 0);
    }
    for (int t = 0; t < THREADS; t++) {
        void *ret = (void *)99;
        CHECK(11, pthread_join(threads[t], &ret) == 0);
        if (ret != NULL) {
            fprintf(stderr, "thread %d failed at step %d\n", t, (int)(intptr_t)ret);
            return 20 + (int)(intptr_t)ret;
        }
    }
    wildx_stats(&s1);
    CHECK(30, s1.allocs == s0.allocs + THREADS * ROUNDS);
    CHECK(31, s1.seals == s0.seals + THREADS * ROUNDS);
    CHECK(32, s1.frees == s0.frees + THREADS * ROUNDS);
    CHECK(33, s1.refusals == s0.refusals + THREADS * ROUNDS);
    CHECK(34, s1.live_pages == s0.live_pages && s1.live_bytes == s0.live_bytes);
    return 0;
}
