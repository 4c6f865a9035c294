/* serve_only/main.c — the kiln-serve program: `kiln serve` alone, for the kiln-serve container
 * image (Containerfile, docs/containers.md). `kiln-serve ARGS` is `kiln serve ARGS`.
 *
 * Why a second program: linked from the static libkiln.a with -Wl,--as-needed (CMakeLists.txt),
 * it holds only the objects serving reaches, so it needs only the shared libraries those use; the
 * training-only ones (Open MPI, ...) stay out of the serving image. It shares cmd_serve.c with the
 * kiln command; the one helper of main.c that cmd_serve.c calls is repeated here because main.c
 * also holds the kiln command's main(). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "kiln/version.h"

int kiln_cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kiln %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see: kiln-serve --help)\n");
    va_end(ap);
    return KILN_EXIT_USAGE;
}

int main(int argc, char **argv) {
    if (argc == 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version"))) {
        printf("kiln-serve %s\n", KILN_VERSION);
        return KILN_EXIT_OK;
    }
    argv[0] = "serve";
    return kiln_cmd_serve(argc, argv);
}
