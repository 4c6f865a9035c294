/* cmd_serve.c — kiln serve: TF Serving's command line over kiln_serve_start (kiln/serve.h).
 *
 * Flags keep TF Serving's names (--model_base_path, --rest_api_port, ...; both --flag=value and
 * --flag value) so that scripts and container commands carry over; kiln's own additions are
 * listed after them in the help. The process blocks SIGINT, SIGTERM and SIGHUP before any thread
 * starts and waits for them with sigwait: SIGTERM or SIGINT stops gracefully (requests in flight
 * finish; exit 0), SIGHUP polls the model folders at once.
 */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "kiln/kiln.h"
#include "kiln/export.h"
#include "kiln/http.h"
#include "kiln/serve.h"

static const char *HELP =
    "usage: kiln serve --model_base_path DIR [--model_name NAME] [options]\n"
    "       kiln serve --model_config_file FILE [options]\n"
    "\n"
    "Serves exported versions (kiln export, or train.export while training) over TF Serving's\n"
    "REST API (/v1/models/NAME...) and the Open Inference Protocol v2 (/v2/...), with Prometheus\n"
    "metrics at /monitoring/prometheus/metrics. New versions under the base folder are loaded,\n"
    "warmed up and swapped in while serving; requests in flight finish on their version.\n"
    "SIGTERM or Ctrl-C stops gracefully; SIGHUP looks for new versions at once.\n"
    "\n"
    "TF Serving's flags:\n"
    "  --model_base_path DIR                   a folder of version folders (1/, 2/, ...), or a\n"
    "                                          registered model: models:/NAME@ALIAS,\n"
    "                                          models:/NAME/VERSION or models:/NAME\n"
    "  --model_name NAME                       the name in URLs (default: default)\n"
    "  --model_config_file FILE                several models, TF Serving's model_config_list\n"
    "                                          text format (see docs/serving.md)\n"
    "  --rest_api_port N                       the HTTP port (default 8501; 0: any free port)\n"
    "  --rest_api_num_threads N                HTTP worker threads (default: the CPUs)\n"
    "  --rest_api_timeout_in_ms N              idle connections close after this (default 30000)\n"
    "  --file_system_poll_wait_seconds S       how often to look for new versions (default 1;\n"
    "                                          0: only at start and on SIGHUP)\n"
    "  --enable_batching[=true|false]          dynamic batching (default off)\n"
    "  --batching_parameters_file FILE         max_batch_size { value: 128 } ... (text format)\n"
    "  --tensorflow_intra_op_parallelism N     threads per inference (default 1)\n"
    "  --rest_api_enable_cors_support[=B]      CORS for browser clients: every answer carries\n"
    "                                          Access-Control-Allow-Origin: * and preflights\n"
    "                                          (OPTIONS) are answered (default off)\n"
    "kiln's own:\n"
    "  --model_version_policy P                latest (default), latest=N, all, specific=V[,V...]\n"
    "  --max_batch_size N                      rows per batch (default 128)\n"
    "  --batch_timeout_micros N                how long a request waits for company (default 1000)\n"
    "  --num_batch_threads N                   batch threads (default: the CPUs)\n"
    "  --max_enqueued_batches N                queue capacity in batches; beyond it 429 (default 64)\n"
    "  --max_body_bytes N                      larger request bodies get 413 (default 67108864)\n"
    "  --host ADDR                             the address to listen on (default 0.0.0.0)\n"
    "  --cors_allowed_origins LIST             CORS for these origins only (comma-separated,\n"
    "                                          scheme://host[:port]), or * for any\n"
    "  --runs-dir DIR                          where models:/ URIs are registered (default runs)\n"
    "  --drain_seconds S                       how long a stop waits for requests (default 10)\n"
    "  --help                                  this text\n";

enum {
    O_BASE = 256, O_NAME, O_CONFIG, O_PORT, O_GRPC_PORT, O_THREADS, O_TIMEOUT, O_POLL, O_BATCHING,
    O_BATCH_FILE, O_INTRA, O_POLICY, O_MAX_BATCH, O_BATCH_TIMEOUT, O_BATCH_THREADS, O_ENQUEUED,
    O_BODY, O_HOST, O_DRAIN, O_RUNS, O_CORS, O_CORS_ORIGINS, O_HELP
};

static int parse_int(const char *flag, const char *s, long long lo, long long hi, long long *out) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) {
        kiln_cli_usage_error("serve", "--%s %s: expected an integer in [%lld, %lld]", flag, s, lo,
                             hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_bool(const char *flag, const char *s, int *out) {
    if (!s || !strcmp(s, "true") || !strcmp(s, "1")) return *out = 1, 0;
    if (!strcmp(s, "false") || !strcmp(s, "0")) return *out = 0, 0;
    kiln_cli_usage_error("serve", "--%s=%s: expected true or false", flag, s);
    return -1;
}

/* latest, latest=N, all, specific=V[,V...] */
static int parse_policy(const char *s, kiln_serve_model *m, int64_t *versions, int cap) {
    long long v;
    if (!strcmp(s, "latest")) return m->policy = KILN_VERSIONS_LATEST, m->latest_n = 1, 0;
    if (!strcmp(s, "all")) return m->policy = KILN_VERSIONS_ALL, 0;
    if (!strncmp(s, "latest=", 7)) {
        if (parse_int("model_version_policy latest=", s + 7, 1, 1000000, &v)) return -1;
        return m->policy = KILN_VERSIONS_LATEST, m->latest_n = (int)v, 0;
    }
    if (!strncmp(s, "specific=", 9)) {
        m->policy = KILN_VERSIONS_SPECIFIC;
        m->versions = versions;
        m->n_versions = 0;
        for (const char *p = s + 9; *p;) {
            char num[32];
            size_t n = strcspn(p, ",");
            if (n == 0 || n >= sizeof num || m->n_versions == cap) break;
            memcpy(num, p, n);
            num[n] = 0;
            if (!kiln_export_parse_version(num, &versions[m->n_versions])) {
                kiln_cli_usage_error("serve", "--model_version_policy: '%s' is not a version", num);
                return -1;
            }
            m->n_versions++;
            p += n + (p[n] == ',');
        }
        if (m->n_versions > 0) return 0;
    }
    kiln_cli_usage_error("serve",
                         "--model_version_policy %s: expected latest, latest=N, all or "
                         "specific=V[,V...]",
                         s);
    return -1;
}

static void log_line(void *ctx, const char *line) {
    (void)ctx;
    char when[32];
    time_t t = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime_r(&t, &tm));
    fprintf(stderr, "%s kiln serve: %s\n", when, line);
    fflush(stderr);
}

int kiln_cmd_serve(int argc, char **argv) {
    static const struct option opts[] = {
        {"model_base_path", required_argument, 0, O_BASE},
        {"model_name", required_argument, 0, O_NAME},
        {"model_config_file", required_argument, 0, O_CONFIG},
        {"rest_api_port", required_argument, 0, O_PORT},
        {"port", required_argument, 0, O_GRPC_PORT},
        {"rest_api_num_threads", required_argument, 0, O_THREADS},
        {"rest_api_timeout_in_ms", required_argument, 0, O_TIMEOUT},
        {"file_system_poll_wait_seconds", required_argument, 0, O_POLL},
        {"enable_batching", optional_argument, 0, O_BATCHING},
        {"batching_parameters_file", required_argument, 0, O_BATCH_FILE},
        {"tensorflow_intra_op_parallelism", required_argument, 0, O_INTRA},
        {"rest_api_enable_cors_support", optional_argument, 0, O_CORS},
        {"model_version_policy", required_argument, 0, O_POLICY},
        {"max_batch_size", required_argument, 0, O_MAX_BATCH},
        {"batch_timeout_micros", required_argument, 0, O_BATCH_TIMEOUT},
        {"num_batch_threads", required_argument, 0, O_BATCH_THREADS},
        {"max_enqueued_batches", required_argument, 0, O_ENQUEUED},
        {"max_body_bytes", required_argument, 0, O_BODY},
        {"host", required_argument, 0, O_HOST},
        {"cors_allowed_origins", required_argument, 0, O_CORS_ORIGINS},
        {"drain_seconds", required_argument, 0, O_DRAIN},
        {"runs-dir", required_argument, 0, O_RUNS},
        {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0}};
    kiln_serve_config cfg = {.port = 8501, .poll_wait_seconds = 1, .drain_seconds = 10,
                             .batching = {.batch_timeout_micros = -1}, .log = log_line};
    kiln_serve_model one = {.name = "default", .policy = KILN_VERSIONS_LATEST, .latest_n = 1};
    int64_t specific[256];
    const char *config_file = NULL, *batch_file = NULL, *runs_dir = "runs";
    kiln_serve_batching flags_batching = {.batch_timeout_micros = -1};
    int name_given = 0, policy_given = 0, cors_any = 0, c, li = 0;
    long long v;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, &li)) != -1) {
        const char *name = c >= O_BASE ? opts[li].name : "?";
        switch (c) {
        case O_BASE: one.base_path = optarg; break;
        case O_NAME: one.name = optarg, name_given = 1; break;
        case O_CONFIG: config_file = optarg; break;
        case O_PORT:
            if (parse_int(name, optarg, 0, 65535, &v)) return KILN_EXIT_USAGE;
            cfg.port = (int)v;
            break;
        case O_GRPC_PORT:
            log_line(NULL, "note: kiln has no gRPC API; --port is ignored (REST: --rest_api_port)");
            break;
        case O_THREADS:
            if (parse_int(name, optarg, 1, 1024, &v)) return KILN_EXIT_USAGE;
            cfg.http_threads = (int)v;
            break;
        case O_TIMEOUT:
            if (parse_int(name, optarg, 1, 86400000, &v)) return KILN_EXIT_USAGE;
            cfg.request_timeout_seconds = (int)((v + 999) / 1000);
            break;
        case O_POLL:
            if (parse_int(name, optarg, 0, 86400, &v)) return KILN_EXIT_USAGE;
            cfg.poll_wait_seconds = (double)v;
            break;
        case O_BATCHING:
            if (parse_bool(name, optarg, &cfg.batching.enabled)) return KILN_EXIT_USAGE;
            break;
        case O_BATCH_FILE: batch_file = optarg; break;
        case O_INTRA:
            if (parse_int(name, optarg, 1, 256, &v)) return KILN_EXIT_USAGE;
            cfg.intra_op_threads = (int)v;
            break;
        case O_POLICY:
            if (parse_policy(optarg, &one, specific, 256)) return KILN_EXIT_USAGE;
            policy_given = 1;
            break;
        case O_MAX_BATCH:
            if (parse_int(name, optarg, 1, 1 << 20, &v)) return KILN_EXIT_USAGE;
            flags_batching.max_batch_size = (int)v;
            break;
        case O_BATCH_TIMEOUT:
            if (parse_int(name, optarg, 0, 60000000, &v)) return KILN_EXIT_USAGE;
            flags_batching.batch_timeout_micros = v;
            break;
        case O_BATCH_THREADS:
            if (parse_int(name, optarg, 1, 1024, &v)) return KILN_EXIT_USAGE;
            flags_batching.num_batch_threads = (int)v;
            break;
        case O_ENQUEUED:
            if (parse_int(name, optarg, 1, 1 << 24, &v)) return KILN_EXIT_USAGE;
            flags_batching.max_enqueued_batches = (int)v;
            break;
        case O_BODY:
            if (parse_int(name, optarg, 1, (long long)1 << 40, &v)) return KILN_EXIT_USAGE;
            cfg.max_body_bytes = (size_t)v;
            break;
        case O_HOST: cfg.host = optarg; break;
        case O_CORS:
            if (parse_bool(name, optarg, &cors_any)) return KILN_EXIT_USAGE;
            break;
        case O_CORS_ORIGINS:
            if (kiln_http_check_cors_origins(optarg))
                return kiln_cli_usage_error("serve", "--cors_allowed_origins: %s",
                                            kiln_last_error());
            cfg.cors_allowed_origins = optarg;
            break;
        case O_RUNS: runs_dir = optarg; break;
        case O_DRAIN:
            if (parse_int(name, optarg, 0, 3600, &v)) return KILN_EXIT_USAGE;
            cfg.drain_seconds = v ? (double)v : 0.001;
            break;
        case O_HELP: fputs(HELP, stdout); return KILN_EXIT_OK;
        default:
            return kiln_cli_usage_error("serve", "unknown or incomplete option '%s'",
                                        argv[optind - 1]);
        }
    }
    if (optind < argc) return kiln_cli_usage_error("serve", "unexpected argument '%s'", argv[optind]);
    if (cors_any && cfg.cors_allowed_origins && strcmp(cfg.cors_allowed_origins, "*"))
        return kiln_cli_usage_error("serve", "--rest_api_enable_cors_support allows any origin; "
                                             "--cors_allowed_origins %s names some: give one",
                                    cfg.cors_allowed_origins);
    if (cors_any) cfg.cors_allowed_origins = "*";
    if (!config_file == !one.base_path)
        return kiln_cli_usage_error("serve", config_file ? "give --model_config_file or "
                                                           "--model_base_path, not both"
                                                         : "missing --model_base_path DIR "
                                                           "(or --model_config_file FILE)");
    if (config_file && (name_given || policy_given))
        return kiln_cli_usage_error("serve", "--model_name and --model_version_policy go with "
                                             "--model_base_path; with --model_config_file each "
                                             "config sets its own");
    if (batch_file && kiln_serve_read_batching_config(batch_file, &cfg.batching)) {
        fprintf(stderr, "kiln serve: %s\n", kiln_last_error());
        return KILN_EXIT_USAGE;
    }
    /* flags win over the file */
    kiln_serve_batching *b = &cfg.batching;
    if (flags_batching.max_batch_size) b->max_batch_size = flags_batching.max_batch_size;
    if (flags_batching.batch_timeout_micros >= 0)
        b->batch_timeout_micros = flags_batching.batch_timeout_micros;
    if (flags_batching.num_batch_threads) b->num_batch_threads = flags_batching.num_batch_threads;
    if (flags_batching.max_enqueued_batches)
        b->max_enqueued_batches = flags_batching.max_enqueued_batches;

    kiln_serve_models many = {0};
    if (config_file) {
        if (kiln_serve_read_model_config(config_file, &many)) {
            fprintf(stderr, "kiln serve: %s\n", kiln_last_error());
            return KILN_EXIT_USAGE;
        }
        cfg.models = many.models, cfg.n_models = many.n_models;
    } else {
        cfg.models = &one, cfg.n_models = 1;
    }
    /* models:/NAME... URIs: the registry of --runs-dir; the URL name defaults to NAME */
    char uri_name[128];
    if (!config_file && !name_given && !strncmp(one.base_path, "models:/", 8)) {
        snprintf(uri_name, sizeof uri_name, "%.*s", (int)strcspn(one.base_path + 8, "@/"),
                 one.base_path + 8);
        one.name = uri_name;
    }
    for (int i = 0; i < cfg.n_models; i++) ((kiln_serve_model *)cfg.models)[i].runs_dir = runs_dir;

    /* Signals go to sigwait below, never to the server's threads. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    kiln_server *srv = kiln_serve_start(&cfg);
    if (!srv) {
        fprintf(stderr, "kiln serve: %s\n", kiln_last_error());
        kiln_serve_models_free(&many);
        return KILN_EXIT_USAGE;
    }
    char line[512];
    snprintf(line, sizeof line, "serving %d model%s on http://%s:%d (REST v1 and v2%s)",
             cfg.n_models, cfg.n_models == 1 ? "" : "s", cfg.host ? cfg.host : "0.0.0.0",
             kiln_serve_port(srv), cfg.batching.enabled ? ", batching" : "");
    log_line(NULL, line);
    for (;;) {
        int sig = 0;
        if (sigwait(&sigs, &sig)) continue;
        if (sig == SIGHUP) {
            kiln_serve_poll_now(srv);
            continue;
        }
        snprintf(line, sizeof line, "%s: finishing requests in flight, then stopping",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
        log_line(NULL, line);
        break;
    }
    kiln_serve_stop(srv);
    kiln_serve_models_free(&many);
    log_line(NULL, "stopped");
    return KILN_EXIT_OK;
}
