/* cmd_bench.c — kiln bench: latency percentiles and throughput per batch size and concurrency
 * of a servable version in process, or of a served model over REST v1/v2 (kiln/bench.h,
 * docs/optimize.md). A table on stdout, or the JSON of kiln_bench_json with --json. Exit 2 for
 * bad flags and a target that is not a version; 1 when the server cannot be reached or the
 * model fails to run, or when every request of a point failed. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/table.h"
#include "kiln/bench.h"
#include "kiln/kiln.h"

static const char *HELP =
    "usage: kiln bench VERSION_DIR [options]\n"
    "       kiln bench --server URL --model NAME [--protocol v1|v2] [options]\n"
    "\n"
    "Measures latency (p50, p90, p99) and throughput for every batch size and concurrency:\n"
    "N workers send requests of B rows one after another (each waits for its answer) for the\n"
    "duration, after a warm-up that is not counted. In process, each worker runs its own plan\n"
    "of the version with threads/N OpenMP threads; over REST, each worker has its own\n"
    "connection. See docs/optimize.md.\n"
    "\n"
    "options:\n"
    "  --batch LIST          rows per request, e.g. 1,8,64 (default 1)\n"
    "  --concurrency LIST    workers, e.g. 1,4,16 (default 1)\n"
    "  --duration D          measured time per point: 5s, 500ms (default 5s)\n"
    "  --warmup D            not counted, before each point (default 1s)\n"
    "  --threads N           in process: OpenMP threads in all (default: the CPUs)\n"
    "  --server URL          a server (kiln serve, TF Serving, Triton) instead of a version\n"
    "  --model NAME          with --server: the model's name\n"
    "  --version V           with --server: a version (default: the server's choice)\n"
    "  --protocol v1|v2      with --server: TF Serving's REST API or Open Inference v2 (v1)\n"
    "  --timeout S           with --server: seconds per request (default 60)\n"
    "  --json                the results as JSON instead of the table\n"
    "  --help                this text\n";

static void print_table(const kiln_bench_result *r) {
    printf("%s (%s", r->target, r->mode);
    if (r->precision[0]) printf(", %s, oneDNN ISA %s", r->precision, r->isa);
    printf(")\n");
    kiln_table t;
    kiln_table_init(&t, 10);
    kiln_table_row(&t, "batch", "concurrency", "threads", "requests", "errors", "req/s", "rows/s",
                   "p50 ms", "p90 ms", "p99 ms");
    for (int c = 0; c < 10; c++) t.right[c] = 1;
    for (int i = 0; i < r->n_points; i++) {
        const kiln_bench_point *p = &r->points[i];
        char v[10][32];
        snprintf(v[0], 32, "%d", p->batch);
        snprintf(v[1], 32, "%d", p->concurrency);
        if (p->threads_per_worker)
            snprintf(v[2], 32, "%d", p->threads_per_worker);
        else
            snprintf(v[2], 32, "-");
        snprintf(v[3], 32, "%lld", (long long)p->requests);
        snprintf(v[4], 32, "%lld", (long long)p->errors);
        snprintf(v[5], 32, "%.1f", p->req_per_s);
        snprintf(v[6], 32, "%.1f", p->rows_per_s);
        snprintf(v[7], 32, "%.3f", p->p50_ms);
        snprintf(v[8], 32, "%.3f", p->p90_ms);
        snprintf(v[9], 32, "%.3f", p->p99_ms);
        const char *cells[10];
        for (int c = 0; c < 10; c++) cells[c] = v[c];
        kiln_table_add(&t, cells);
    }
    kiln_table_print(&t, stdout, 2);
    kiln_table_free(&t);
    if (r->first_error[0]) printf("first error: %s\n", r->first_error);
}

int kiln_cmd_bench(int argc, char **argv) {
    static const struct option opts[] = {{"batch", required_argument, 0, 'b'},
                                         {"concurrency", required_argument, 0, 'c'},
                                         {"duration", required_argument, 0, 'd'},
                                         {"warmup", required_argument, 0, 'w'},
                                         {"threads", required_argument, 0, 't'},
                                         {"server", required_argument, 0, 's'},
                                         {"model", required_argument, 0, 'm'},
                                         {"version", required_argument, 0, 'v'},
                                         {"protocol", required_argument, 0, 'p'},
                                         {"timeout", required_argument, 0, 'T'},
                                         {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    kiln_bench_opts o = {.batches = {1},
                         .n_batches = 1,
                         .concurrency = {1},
                         .n_concurrency = 1,
                         .duration_s = 5,
                         .warmup_s = 1};
    int json = 0;
    optind = 1;
    opterr = 0;
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            if ((o.n_batches = kiln_bench_parse_list(optarg, o.batches, 65536)) < 1)
                return kiln_cli_usage_error(
                    "bench", "--batch %s: expected sizes 1..65536 like 1,8,64 (at most %d)", optarg,
                    KILN_BENCH_MAX_POINTS);
            break;
        case 'c':
            if ((o.n_concurrency = kiln_bench_parse_list(optarg, o.concurrency, 1024)) < 1)
                return kiln_cli_usage_error(
                    "bench", "--concurrency %s: expected counts 1..1024 like 1,4,16 (at most %d)",
                    optarg, KILN_BENCH_MAX_POINTS);
            break;
        case 'd':
            if (kiln_bench_parse_duration(optarg, &o.duration_s) || !(o.duration_s > 0))
                return kiln_cli_usage_error(
                    "bench", "--duration %s: expected a positive time like 5s or 500ms", optarg);
            break;
        case 'w':
            if (kiln_bench_parse_duration(optarg, &o.warmup_s))
                return kiln_cli_usage_error("bench", "--warmup %s: expected a time like 1s or 0",
                                            optarg);
            break;
        case 't': {
            int bad = kiln_cli_threads("bench", optarg, &o.threads);
            if (bad) return bad;
            break;
        }
        case 's':
            o.server = optarg;
            break;
        case 'm':
            o.model = optarg;
            break;
        case 'v': {
            long long v = strtoll(optarg, &end, 10);
            if (*end || end == optarg || v < 1)
                return kiln_cli_usage_error("bench", "--version %s: expected a positive number",
                                            optarg);
            o.version = v;
            break;
        }
        case 'p':
            if (!strcmp(optarg, "v1"))
                o.protocol = 1;
            else if (!strcmp(optarg, "v2"))
                o.protocol = 2;
            else
                return kiln_cli_usage_error("bench", "--protocol %s: expected v1 or v2", optarg);
            break;
        case 'T':
            o.timeout_s = strtod(optarg, &end);
            if (*end || end == optarg || !(o.timeout_s > 0) || o.timeout_s > 1e6)
                return kiln_cli_usage_error("bench", "--timeout %s: expected seconds > 0", optarg);
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            fputs(HELP, stdout);
            return KILN_EXIT_OK;
        default:
            return kiln_cli_usage_error("bench", "unknown or incomplete option '%s'",
                                        argv[optind - 1]);
        }
    }
    if (optind < argc) o.model_dir = argv[optind++];
    if (optind < argc)
        return kiln_cli_usage_error("bench", "unexpected argument '%s'", argv[optind]);
    if (o.model_dir && o.server)
        return kiln_cli_usage_error("bench", "give a version folder or --server URL, not both");
    if (!o.model_dir && !o.server)
        return kiln_cli_usage_error("bench", "missing VERSION_DIR (or --server URL)");
    if (o.server && !o.model) return kiln_cli_usage_error("bench", "--server needs --model NAME");
    if (!o.server && (o.model || o.protocol || o.version))
        return kiln_cli_usage_error("bench", "--model, --version and --protocol go with --server");
    static kiln_bench_result r; /* large: not on the stack */
    kiln_status st = kiln_bench_run(&o, &r);
    if (st) {
        fprintf(stderr, "kiln bench: %s\n", kiln_last_error());
        return st == KILN_ERR_INVALID ||
                       (o.model_dir && (st == KILN_ERR_NOTFOUND || st == KILN_ERR_FORMAT))
                   ? KILN_EXIT_USAGE
                   : KILN_EXIT_FAIL;
    }
    if (json) {
        char *j = kiln_bench_json(&r);
        if (!j) return fprintf(stderr, "kiln bench: out of memory\n"), KILN_EXIT_FAIL;
        fputs(j, stdout);
        free(j);
    } else {
        print_table(&r);
    }
    for (int i = 0; i < r.n_points; i++)
        if (r.points[i].requests == 0) {
            fprintf(stderr, "kiln bench: batch %d, concurrency %d: no request succeeded%s%s\n",
                    r.points[i].batch, r.points[i].concurrency, r.first_error[0] ? ": " : "",
                    r.first_error);
            return KILN_EXIT_FAIL;
        }
    return KILN_EXIT_OK;
}
