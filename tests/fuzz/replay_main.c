/* The main() of a harness built without libFuzzer: feeds every file named
 * on the command line, and every file inside each folder named, to
 * LLVMFuzzerTestOneInput once, so that `make test` replays the corpora and
 * regression cases without fuzzing. Exits 0 when all ran (a harness aborts
 * on a failure), 1 when a path cannot be read. */
#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* Largest input replayed, bytes: the fuzzers run with smaller -max_len. */
#define REPLAY_MAX (1u << 22)

static int run_file(const char *path, size_t *count)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return 1;
    }
    uint8_t *buf = malloc(REPLAY_MAX);
    size_t len = buf != NULL ? fread(buf, 1, REPLAY_MAX, f) : 0;
    int bad = buf == NULL || ferror(f);
    fclose(f);
    if (!bad) {
        /* An exact-size copy, so ASan sees a read past the input's end. */
        uint8_t *in = malloc(len > 0 ? len : 1);
        bad = in == NULL;
        if (!bad) {
            memcpy(in, buf, len);
            LLVMFuzzerTestOneInput(in, len);
            (*count)++;
        }
        free(in);
    }
    free(buf);
    if (bad)
        fprintf(stderr, "replay: cannot read %s\n", path);
    return bad;
}

/* Every regular file under dir, recursively. */
static int run_dir(const char *dir, size_t *count)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "replay: cannot open folder %s\n", dir);
        return 1;
    }
    int bad = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) {
            bad = 1;
            continue;
        }
        struct stat sb;
        if (stat(path, &sb) != 0)
            bad = 1;
        else if (S_ISDIR(sb.st_mode))
            bad |= run_dir(path, count);
        else if (S_ISREG(sb.st_mode))
            bad |= run_file(path, count);
    }
    closedir(d);
    return bad;
}

int main(int argc, char **argv)
{
    if (LLVMFuzzerInitialize != NULL)
        LLVMFuzzerInitialize(&argc, &argv);
    int bad = 0;
    size_t count = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            fprintf(stderr, "replay: no such path %s\n", argv[i]);
            bad = 1;
        } else if (S_ISDIR(sb.st_mode)) {
            bad |= run_dir(argv[i], &count);
        } else {
            bad |= run_file(argv[i], &count);
        }
    }
    printf("replay: %zu inputs\n", count);
    return bad;
}
