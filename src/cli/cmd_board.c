/* cmd_board.c — kiln board: the web dashboard over a runs folder (kiln/board.h).
 *
 * Prints the URL it listens on (with --port 0, the port the system picked) on one stdout line,
 * then serves until SIGINT or SIGTERM, which it waits for with sigwait (blocked before the
 * server's threads start, so they never see them). Exit 2 when the runs folder does not exist
 * or an option is wrong, 1 when the address cannot be bound.
 */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "kiln/board.h"
#include "kiln/kiln.h"

static const char *HELP =
    "usage: kiln board [--runs-dir D] [--port 6006] [--host ADDR] [--token T] [--no-mlflow]\n"
    "\n"
    "A web dashboard over a runs folder: the runs table (filter, sort), metric curves that\n"
    "follow training live, several runs overlaid, hyperparameter comparison, and each run's\n"
    "config, checkpoints and export versions. Open the URL it prints in a browser. The page\n"
    "only reads the run folders (its JSON: docs/monitoring.md); on the same port, MLflow's REST\n"
    "API lets MLflow clients (mlflow.set_tracking_uri(\"http://HOST:PORT\")) log runs there,\n"
    "beside kiln's own (docs/tracking.md). Ctrl-C stops it.\n"
    "\n"
    "options:\n"
    "  --runs-dir D        the runs folder (default: runs)\n"
    "  --port N            the HTTP port (default 6006; 0: any free port)\n"
    "  --host ADDR         the address to listen on (default 127.0.0.1, this machine only;\n"
    "                      0.0.0.0 for every interface)\n"
    "  --token T           MLflow API: require 'Authorization: Bearer T' (default: the\n"
    "                      environment's KILN_BOARD_TOKEN; none: no auth)\n"
    "  --no-mlflow         do not serve the MLflow REST API (/api/2.0/mlflow/, which lets\n"
    "                      MLflow clients log runs into the runs folder: docs/tracking.md)\n"
    "  --help              this text\n";

int kiln_cmd_board(int argc, char **argv) {
    static const struct option opts[] = {{"runs-dir", required_argument, 0, 'd'},
                                         {"port", required_argument, 0, 'p'},
                                         {"host", required_argument, 0, 'a'},
                                         {"token", required_argument, 0, 't'},
                                         {"no-mlflow", no_argument, 0, 'M'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    kiln_board_config cfg = {.runs_dir = "runs", .host = "127.0.0.1", .port = 6006, .mlflow = 1};
    cfg.token = getenv("KILN_BOARD_TOKEN");
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            cfg.runs_dir = optarg;
            break;
        case 'p': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (!*optarg || *end || v < 0 || v > 65535)
                return kiln_cli_usage_error("board", "--port %s: expected an integer in [0, 65535]",
                                            optarg);
            cfg.port = (int)v;
            break;
        }
        case 'a':
            if (!*optarg) return kiln_cli_usage_error("board", "--host: empty address");
            cfg.host = optarg;
            break;
        case 't':
            if (!*optarg) return kiln_cli_usage_error("board", "--token: empty token");
            cfg.token = optarg;
            break;
        case 'M':
            cfg.mlflow = 0;
            break;
        case 'h':
            fputs(HELP, stdout);
            return KILN_EXIT_OK;
        default:
            return kiln_cli_usage_error("board", "unknown or incomplete option '%s'",
                                        argv[optind - 1]);
        }
    }
    if (optind < argc)
        return kiln_cli_usage_error("board", "unexpected argument '%s'", argv[optind]);
    struct stat st;
    if (stat(cfg.runs_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr,
                "kiln board: no runs folder %s (kiln train writes runs there; pick another with "
                "--runs-dir)\n",
                cfg.runs_dir);
        return KILN_EXIT_USAGE;
    }

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    kiln_board *b = kiln_board_start(&cfg);
    if (!b) {
        fprintf(stderr, "kiln board: %s\n", kiln_last_error());
        return KILN_EXIT_FAIL;
    }
    int n = kiln_board_run_count(b);
    int v6 = strchr(cfg.host, ':') != NULL; /* an IPv6 address goes in brackets in a URL */
    printf("kiln board: %d run%s in %s, on http://%s%s%s:%d/ (Ctrl-C stops)\n", n,
           n == 1 ? "" : "s", cfg.runs_dir, v6 ? "[" : "", cfg.host, v6 ? "]" : "",
           kiln_board_port(b));
    fflush(stdout);
    int sig = 0;
    while (sigwait(&sigs, &sig) != 0) {
    }
    kiln_board_stop(b);
    printf("kiln board: stopped (%s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    return KILN_EXIT_OK;
}
