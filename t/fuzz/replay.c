/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Replays inputs through a fuzz target without libFuzzer: links with one
 * t/fuzz/fuzz_*.c and calls LLVMFuzzerTestOneInput once per file named
 * on the command line, each in a buffer of its exact size.  make test
 * runs the corpora this way (t/11-fuzz-replay.t), with any C compiler.
 *
 * Prints "replayed N inputs" and exits 0; a broken property aborts; a
 * file that cannot be read is an error (exit 2).
 */


#include "fuzz.h"

#include <errno.h>


static unsigned char *fuzz_read_file(const char *path, size_t *size);


int
main(int argc, char **argv)
{
    int             i;
    size_t          size;
    unsigned char  *data;

    for (i = 1; i < argc; i++) {

        /* the name first: a failed property only says which one */

        fprintf(stderr, "replay: %s\n", argv[i]);

        data = fuzz_read_file(argv[i], &size);
        if (data == NULL) {
            return 2;
        }

        (void) LLVMFuzzerTestOneInput(data, size);

        free(data);
    }

    printf("replayed %d inputs\n", argc - 1);

    return 0;
}


static unsigned char *
fuzz_read_file(const char *path, size_t *size)
{
    FILE           *f;
    size_t          len, n;
    unsigned char  *data, *p;

    f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "replay: cannot open \"%s\": %s\n", path,
                strerror(errno));
        return NULL;
    }

    /* grown as needed: no size from stat, any kind of file works */

    len = 0;
    data = malloc(4096);

    for ( ;; ) {
        if (data == NULL) {
            fprintf(stderr, "replay: out of memory\n");
            fclose(f);
            return NULL;
        }

        n = fread(data + len, 1, 4096, f);
        len += n;

        if (n < 4096) {
            break;
        }

        p = realloc(data, len + 4096);
        if (p == NULL) {
            free(data);
        }

        data = p;
    }

    if (ferror(f)) {
        fprintf(stderr, "replay: cannot read \"%s\": %s\n", path,
                strerror(errno));
        free(data);
        fclose(f);
        return NULL;
    }

    fclose(f);

    /* exactly len bytes, so a read past the input is caught */

    p = malloc(len ? len : 1);
    if (p == NULL) {
        free(data);
        fprintf(stderr, "replay: out of memory\n");
        return NULL;
    }

    memcpy(p, data, len);
    free(data);

    *size = len;

    return p;
}
