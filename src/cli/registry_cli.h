/* registry_cli.h — what `kiln runs` and `kiln models` share: which runs folder, opening and
 * syncing its registry, exit codes, and how times, durations and values print. */
#ifndef KILN_CLI_REGISTRY_CLI_H
#define KILN_CLI_REGISTRY_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "kiln/registry.h"

/* The runs folder a command works on: --runs-dir when given; else, when ref is a run folder
 * (a folder holding a run.json), the folder two levels above it; else "runs". */
const char *kiln_cli_runs_dir(const char *given, const char *ref, char *buf, size_t cap);
/* Opens the registry of runs_dir and brings it up to date with the run folders (a warning on
 * stderr names folders that could not be read). Prints "kiln <cmd>: <error>" and returns the
 * exit code on failure; 0 with *out set on success. */
int kiln_cli_open_registry(const char *cmd, const char *runs_dir, kiln_registry **out);
/* The exit code for a library error: 2 (usage) for KILN_ERR_INVALID and KILN_ERR_NOTFOUND,
 * 1 otherwise. */
int kiln_cli_exit_code(kiln_status s);
/* Prints "kiln <cmd>: <last error>" and returns kiln_cli_exit_code(s). */
int kiln_cli_fail(const char *cmd, kiln_status s);

/* ISO 8601 UTC ("2024-05-01T12:34:56Z") as local time "2024-05-01 14:34" (with seconds when
 * seconds is set); "-" for NULL; the text itself when it does not parse. */
void kiln_cli_time(const char *iso, int seconds, char *out, size_t cap);
/* "<1s", "42s", "3m05s", "2h03m", "3d04h"; "-" when not finite or negative. */
void kiln_cli_duration(double seconds, char *out, size_t cap);
/* A metric value for a table: 4 decimals, 1 above 1000, scientific when tiny or huge; "-" for
 * NaN. */
void kiln_cli_value(double v, char *out, size_t cap);

/* JSON output written as it goes: s as a JSON string (NULL: null; control characters escaped),
 * v as a number that reads back exactly (NaN and infinities: null). */
void kiln_cli_json_string(FILE *f, const char *s);
void kiln_cli_json_number(FILE *f, double v);

/* The text fields of a run (all but its id) as {name, value} pairs in the order JSON output
 * writes them, values NULL where unknown; returns how many (KILN_CLI_RUN_STRINGS). */
enum { KILN_CLI_RUN_STRINGS = 12 };
int kiln_cli_run_strings(const kiln_registry_run *r, const char *out[KILN_CLI_RUN_STRINGS][2]);

/* kiln runs show / kiln runs compare (cmd_runs_show.c); argv[0] is the subcommand. */
int kiln_cmd_runs_show(int argc, char **argv);
int kiln_cmd_runs_compare(int argc, char **argv);
/* kiln runs sync --to mlflow+http://... (cmd_runs_sync.c); argv[0] is the subcommand. */
int kiln_cmd_runs_sync(int argc, char **argv);

#endif
