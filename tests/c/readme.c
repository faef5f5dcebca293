/* The README's "From C" example, verbatim: tests/capi.rs runs it. */
#include <stdio.h>
#include "wildx.h"

int main(void) {
    void *f = wildx_alloc(64);                        /* WRITABLE, R|W */
    if (!f || wildx_install_add_i32(f) != 0 || wildx_seal(f) != 0) return 1;
    printf("%d\n", wildx_call_i32_i32(f, 7, 35));   /* 42 */
    printf("%d\n", wildx_seal(f));                    /* -1: already sealed */
    return wildx_free(f) == 0 && wildx_free(f) == -1 ? 0 : 1;
}
