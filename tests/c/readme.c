/* The example of docs/c.md, verbatim: tests/capi.rs runs it and checks its output. */
#include <stdio.h>
#include "wildx.h"

int main(void) {
    int32_t err;
    void *f = wildx_alloc_ex(64, &err);                  /* WRITABLE: read+write */
    if (f == NULL) {
        fprintf(stderr, "alloc: %s\n", wildx_strerror(err));
        return 1;
    }
    if (wildx_install_add_i32(f) != 0 || wildx_seal_ex(f, &err) != 0) {
        fprintf(stderr, "seal: %s\n", wildx_strerror(err)); /* e.g. PROT_EXEC denied */
        wildx_free(f);
        return 1;
    }
    printf("%d\n", wildx_call_i32_i32(f, 7, 35));        /* 42 */
    if (wildx_seal_ex(f, &err) != 0) {                   /* a second seal is refused */
        printf("%s\n", wildx_strerror(err));
    }
    return wildx_free(f) == 0 && wildx_free(f) == -1 ? 0 : 1;
}
