/* cli.h — the kiln command: one function per subcommand (a thin shell over libkiln).
 * Exit codes: 0 ok, 1 runtime failure, 2 usage or config error. */
#ifndef KILN_CLI_H
#define KILN_CLI_H

enum { KILN_EXIT_OK = 0, KILN_EXIT_FAIL = 1, KILN_EXIT_USAGE = 2 };

int kiln_cmd_train(int argc, char **argv);
int kiln_cmd_eval(int argc, char **argv);
int kiln_cmd_export(int argc, char **argv);
int kiln_cmd_import(int argc, char **argv); /* cmd_import.c: ONNX -> kiln */
int kiln_cmd_optimize(int argc, char **argv); /* cmd_optimize.c: fold, int8, bf16 */
int kiln_cmd_bench(int argc, char **argv);    /* cmd_bench.c: latency and throughput */
int kiln_cmd_serve(int argc, char **argv);
int kiln_cmd_predict(int argc, char **argv);
int kiln_cmd_explain(int argc, char **argv); /* cmd_explain.c: attributions */
int kiln_cmd_runs(int argc, char **argv);
/* registry_opt.c: --registry URI (any command) and kiln runs sync */
int kiln_cli_registry_option(int *argc, char **argv);
int kiln_cmd_runs_sync_registry(int argc, char **argv); /* registry_opt.c: kiln runs sync without --to */
int kiln_cmd_models(int argc, char **argv);
int kiln_cmd_board(int argc, char **argv);
int kiln_cmd_tune(int argc, char **argv); /* cmd_tune.c: kiln tune, kiln tune show */
int kiln_cmd_fl(int argc, char **argv);   /* cmd_fl.c: kiln fl server|client|simulate */
int kiln_cmd_data(int argc, char **argv);         /* cmd_data.c: dispatches to the ones below */
int kiln_cmd_data_preview(int argc, char **argv); /* kiln data preview */
int kiln_cmd_data_produce(int argc, char **argv); /* kiln data produce (Kafka) */
/* Prints "kiln <cmd>: <message>" and returns KILN_EXIT_USAGE. */
int kiln_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* --threads N of train, optimize and bench: 1..4096 into *out; else the usage error's code. */
int kiln_cli_threads(const char *cmd, const char *value, int *out);
/* --format of export and models register: "kiln" (*onnx = 0) or "onnx" (*onnx = 1); -1 else. */
int kiln_cli_export_format(const char *value, int *onnx);
/* The whole command line (recorded in run.json). */
void kiln_cli_set_command_line(int argc, char **argv);
int kiln_cli_argc(void);
const char *const *kiln_cli_argv(void);

#endif
