/* The fuzz targets' main. Built with libFuzzer (Tests/fuzz.sh defines
 * KEEL_LIBFUZZER and links libFuzzer without its own main), it hands over to
 * libFuzzer's driver. Built normally, it runs LLVMFuzzerTestOneInput once
 * over each file named (or each file in each directory named), so the
 * corpus in Tests/Fuzz is a regression test of the normal build. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "keel_fuzz_main.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifdef KEEL_LIBFUZZER
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

int keel_fuzz_main(int argc, char **argv) {
    return LLVMFuzzerRunDriver(&argc, &argv, LLVMFuzzerTestOneInput);
}
#else
static long replayed;

static void replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    /* An allocation of exactly the input's size, as libFuzzer gives it. */
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf || (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n)) { fprintf(stderr, "%s: read failed\n", path); exit(2); }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    free(buf);
    replayed++;
}

int keel_fuzz_main(int argc, char **argv) {
    LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) { perror(argv[i]); return 2; }
        if (!S_ISDIR(st.st_mode)) { replay_file(argv[i]); continue; }
        DIR *d = opendir(argv[i]);
        if (!d) { perror(argv[i]); return 2; }
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
            replay_file(path);
        }
        closedir(d);
    }
    printf("replayed %ld inputs, no failure\n", replayed);
    return 0;
}
#endif
