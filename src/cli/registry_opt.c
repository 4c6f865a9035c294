/* registry_opt.c — `--registry URI`, taken by every command: it is removed from the command line
 * before the command parses it and becomes KILN_REGISTRY in the environment, so that the
 * library, and every child process (tune trials, MPI ranks started from here), use the same
 * registry (kiln/registry.h: kiln_registry_check_uri; docs/tracking.md). A bad URI is a usage
 * error (exit 2) naming the forms. Arguments after "--" are left alone.
 *
 * `kiln runs sync`: brings the registry up to date with the run folders (what a `kiln runs`
 * command does before it answers), for a registry that was unreachable while runs trained.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/registry_cli.h"
#include "kiln/kiln.h"

int kiln_cli_registry_option(int *argc, char **argv) {
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i], *uri = NULL;
        if (!strcmp(a, "--")) {
            while (i < *argc) argv[out++] = argv[i++];
            break;
        }
        if (!strcmp(a, "--registry")) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "kiln: --registry needs a URI (sqlite:, sqlite:PATH, "
                                "postgresql://...)\n");
                return KILN_EXIT_USAGE;
            }
            uri = argv[++i];
        } else if (!strncmp(a, "--registry=", 11)) {
            uri = a + 11;
        } else {
            argv[out++] = argv[i];
            continue;
        }
        if (kiln_registry_check_uri(uri)) {
            fprintf(stderr, "kiln: --registry: %s\n", kiln_last_error());
            return KILN_EXIT_USAGE;
        }
        setenv("KILN_REGISTRY", uri, 1);
    }
    argv[out] = NULL;
    *argc = out;
    return KILN_EXIT_OK;
}

static const char *SYNC_HELP =
    "usage: kiln runs sync [--runs-dir D] [--registry URI]\n"
    "       kiln runs sync --to mlflow+http://HOST:PORT [RUN...] (kiln runs sync --to --help)\n"
    "\n"
    "Brings the registry up to date with the run folders: imports runs it lacks, reads what\n"
    "changed (points logged while the registry could not be reached), forgets runs whose folder\n"
    "is gone, picks up model versions. Every kiln runs command does this first; sync does only\n"
    "this, and says what it did.\n";

int kiln_cmd_runs_sync_registry(int argc, char **argv) {
    const char *runs_dir = "runs";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(SYNC_HELP, stdout);
            return KILN_EXIT_OK;
        } else if (!strcmp(argv[i], "--runs-dir") && i + 1 < argc) {
            runs_dir = argv[++i];
        } else if (!strncmp(argv[i], "--runs-dir=", 11)) {
            runs_dir = argv[i] + 11;
        } else {
            return kiln_cli_usage_error("runs sync", "unexpected argument '%s'", argv[i]);
        }
    }
    kiln_registry *reg = NULL;
    kiln_status s = kiln_registry_open(runs_dir, &reg);
    if (s) return kiln_cli_fail("runs sync", s);
    kiln_registry_sync_stats st;
    s = kiln_registry_sync(reg, &st);
    if (!s)
        printf("%s: %d imported, %d updated, %d removed, %d model versions added%s%s\n",
               kiln_registry_path(reg), st.imported, st.updated, st.removed, st.models,
               st.skipped ? "; skipped: " : "", st.skipped ? st.warning : "");
    kiln_registry_close(reg);
    return s ? kiln_cli_fail("runs sync", s) : KILN_EXIT_OK;
}
