/* cmd_optimize.c — kiln optimize: deployment transformations of an export or a run, written as
 * a new servable version (kiln/optimize.h, docs/optimize.md). Exit 2 for what the user can fix
 * by asking differently (flags, a source that is not a model, no calibration data), 1 for
 * failures on the way (unreadable files, oneDNN). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/table.h"
#include "kiln/kiln.h"

static const char *HELP =
    "usage: kiln optimize EXPORT_VERSION|RUN [options] --to BASE\n"
    "\n"
    "Writes a new servable version under BASE (atomically, like kiln export) with the\n"
    "transformations asked for; model.json records each one and its parameters. kiln serve,\n"
    "predict and eval run the result. See docs/optimize.md.\n"
    "\n"
    "options:\n"
    "  --fold                          fold batch norms into the conv/dense before them, drop\n"
    "                                  dropouts, fuse activations into their producer\n"
    "  --prune S                       one-shot magnitude pruning: the smallest S (0..1) of every\n"
    "                                  conv/dense kernel set to zero, stored sparse\n"
    "  --quantize int8|bf16            int8: oneDNN int8 conv and dense (per-channel weights,\n"
    "                                  calibrated activations); bf16: where the CPU has\n"
    "                                  AVX512-BF16 or AMX (fp32 elsewhere)\n"
    "  --calibrate N                   int8: batches of calibration data (default 8)\n"
    "  --calibration minmax|percentile int8: how activation ranges are chosen (default minmax)\n"
    "  --percentile P                  with percentile: P of |x| (default 99.99)\n"
    "  --data CONFIG                   int8: an experiment config whose data: gives the\n"
    "                                  calibration data (default: the run's config.yaml;\n"
    "                                  its validation split, else its test split)\n"
    "  --checkpoint step-N|best        a run's checkpoint (default: the newest)\n"
    "  --to BASE                       where the new version goes (required)\n"
    "  --report                        print the deployment table (docs/optimize.md): size,\n"
    "                                  parameters, test accuracy, batch-1 latency p50/p99 and\n"
    "                                  batch-64 throughput of the source (fp32), of what this\n"
    "                                  command writes (without --fold/--quantize: a folded and\n"
    "                                  a folded + int8 version) and of --variants\n"
    "  --variants LIST                 with --report: more versions to measure, comma-separated\n"
    "                                  DIR or NAME=DIR (e.g. pruned or distilled versions)\n"
    "  --bench-seconds S               with --report: seconds per timing (default 2)\n"
    "  --threads N                     with --report: OpenMP threads (default: the CPUs)\n"
    "  --help                          this text\n";

/* ---- --report ---- */

typedef struct {
    const char *name; /* NULL: from model.json */
    char dir[4300];
} report_item;

#define REPORT_MAX 32

/* /proc/cpuinfo's model name and the vector flags that matter here. */
static void cpu_name(char *name, size_t n, char *flags, size_t fn) {
    snprintf(name, n, "unknown");
    flags[0] = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[8192];
    int have_name = 0, have_flags = 0;
    while (f && fgets(line, sizeof line, f) && !(have_name && have_flags)) {
        char *c = strchr(line, ':');
        if (!c) continue;
        char *v = c + 1 + (c[1] == ' ');
        v[strcspn(v, "\n")] = 0;
        if (!have_name && !strncmp(line, "model name", 10)) {
            snprintf(name, n, "%s", v);
            have_name = 1;
        } else if (!have_flags && !strncmp(line, "flags", 5)) {
            size_t used = 0;
            for (char *save = NULL, *t = strtok_r(v, " ", &save); t; t = strtok_r(NULL, " ", &save))
                if (!strncmp(t, "avx", 3) || !strncmp(t, "amx", 3) || strstr(t, "vnni"))
                    used += (size_t)snprintf(flags + used, used < fn ? fn - used : 0, "%s%s",
                                             used ? " " : "", t);
            have_flags = 1;
        }
    }
    if (f) fclose(f);
    if (!flags[0]) snprintf(flags, fn, "no AVX");
}

static int add_item(report_item *it, int *n, const char *name, const char *dir) {
    if (*n >= REPORT_MAX) return -1;
    it[*n].name = name;
    snprintf(it[*n].dir, sizeof it[*n].dir, "%s", dir);
    (*n)++;
    return 0;
}

static void print_report(const kiln_optimize_variant *v, int n) {
    kiln_table t;
    kiln_table_init(&t, 9);
    kiln_table_row(&t, "variant", "runs as", "size KiB", "params", "non-zero", "test acc",
                   "b1 p50 ms", "b1 p99 ms", "b64 rows/s");
    for (int c = 2; c < 9; c++) t.right[c] = 1;
    for (int i = 0; i < n; i++) {
        char c[7][32];
        snprintf(c[0], 32, "%.1f", (double)v[i].file_bytes / 1024);
        snprintf(c[1], 32, "%lld", (long long)v[i].params);
        snprintf(c[2], 32, "%lld", (long long)v[i].nonzero);
        if (isnan(v[i].accuracy))
            snprintf(c[3], 32, "loss %.4f", v[i].loss);
        else
            snprintf(c[3], 32, "%.4f", v[i].accuracy);
        snprintf(c[4], 32, "%.3f", v[i].p50_ms);
        snprintf(c[5], 32, "%.3f", v[i].p99_ms);
        snprintf(c[6], 32, "%.0f", v[i].rows_per_s_64);
        kiln_table_row(&t, v[i].name, v[i].precision, c[0], c[1], c[2], c[3], c[4], c[5], c[6]);
    }
    kiln_table_print(&t, stdout, 0);
    kiln_table_free(&t);
    for (int i = 0; i < n; i++) printf("  %s: %s\n", v[i].name, v[i].dir);
}

/* Writes one version (kiln_optimize) and prints the lines kiln optimize prints for it. */
static int produce(kiln_optimize_opts *o, char *dir_out, size_t n) {
    kiln_optimize_report r;
    kiln_status st = kiln_optimize(o, &r);
    if (st) {
        fprintf(stderr, "kiln optimize: %s\n", kiln_last_error());
        return st == KILN_ERR_INVALID || st == KILN_ERR_NOTFOUND || st == KILN_ERR_FORMAT
                   ? KILN_EXIT_USAGE
                   : KILN_EXIT_FAIL;
    }
    printf("%s%s%s: %s\n", o->fold ? "folded" : "", o->fold && o->quantize ? " + " : "",
           o->quantize ? o->quantize : "", r.dir);
    snprintf(dir_out, n, "%s", r.dir);
    return KILN_EXIT_OK;
}

/* kiln optimize --report: the source as the fp32 row (a run is exported under --to first), the
 * versions written here, then --variants; every row measured by kiln_optimize_measure.
 * Hook for the transformations of other branches (pruning: kiln_prune_magnitude; distillation):
 * a version they write is a row through --variants today; to have --report write them itself,
 * add its kiln_optimize_opts (e.g. o.prune = 0.5, 0.8, 0.9) to the list built below. */
static int report(kiln_optimize_opts *o, const char *variants,
                  const kiln_optimize_measure_opts *mo) {
    report_item it[REPORT_MAX];
    int n = 0, rc;
    char path[4400], src[4300];
    snprintf(path, sizeof path, "%.4300s/model.json", o->source);
    FILE *f = fopen(path, "r");
    if (f) {
        fclose(f);
        snprintf(src, sizeof src, "%s", o->source);
    } else {
        if (!o->to)
            return kiln_cli_usage_error(
                "optimize", "--report of a run needs --to BASE (its fp32 export goes there)");
        int64_t v = 0;
        if (kiln_export_run(o->source, o->checkpoint, o->to, 0, &v)) {
            fprintf(stderr, "kiln optimize: %s\n", kiln_last_error());
            return KILN_EXIT_USAGE;
        }
        snprintf(src, sizeof src, "%.4000s/%lld", o->to, (long long)v);
        printf("fp32: %s\n", src);
    }
    add_item(it, &n, NULL, src);
    char dir[4300];
    if (o->fold || o->quantize) {
        if ((rc = produce(o, dir, sizeof dir))) return rc;
        add_item(it, &n, NULL, dir);
    } else if (o->to) { /* folded, folded + int8, and pruned one-shot to 50, 80 and 90% */
        kiln_optimize_opts list[5] = {*o, *o, *o, *o, *o};
        for (int i = 0; i < 5; i++) list[i].source = src, list[i].checkpoint = NULL;
        list[0].fold = 1;
        list[1].fold = 1, list[1].quantize = "int8";
        list[2].prune = 0.5, list[3].prune = 0.8, list[4].prune = 0.9;
        for (int i = 0; i < 5; i++) {
            if ((rc = produce(&list[i], dir, sizeof dir))) return rc;
            add_item(it, &n, NULL, dir);
        }
    }
    char *copy = variants ? strdup(variants) : NULL, *save = NULL;
    for (char *tok = copy ? strtok_r(copy, ",", &save) : NULL; tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (eq) *eq = 0;
        if (add_item(it, &n, eq ? tok : NULL, eq ? eq + 1 : tok)) {
            free(copy);
            return kiln_cli_usage_error("optimize", "--variants: at most %d versions in one report",
                                        REPORT_MAX - 3);
        }
    }
    kiln_optimize_variant *v = calloc(REPORT_MAX, sizeof *v);
    rc = v ? KILN_EXIT_OK : KILN_EXIT_FAIL;
    for (int i = 0; i < n && !rc; i++) {
        kiln_status st = kiln_optimize_measure(it[i].dir, it[i].name, mo, &v[i]);
        if (st) {
            fprintf(stderr, "kiln optimize: --report: %s: %s\n", it[i].dir, kiln_last_error());
            rc = st == KILN_ERR_INVALID || st == KILN_ERR_NOTFOUND || st == KILN_ERR_FORMAT
                     ? KILN_EXIT_USAGE
                     : KILN_EXIT_FAIL;
        }
    }
    if (!rc) {
        char cpu[256], flags[256];
        cpu_name(cpu, sizeof cpu, flags, sizeof flags);
        printf("\nCPU: %s (%s); oneDNN ISA %s; int8 weights %d-bit; %d thread(s); batch-1 latency "
               "and batch-64 "
               "rows/s in process, concurrency 1\n",
               cpu, flags, kiln_backend_cpu_isa(), kiln_backend_int8_weight_bits(),
               mo->threads ? mo->threads : (int)sysconf(_SC_NPROCESSORS_ONLN));
        print_report(v, n);
    }
    free(v);
    free(copy);
    return rc;
}

int kiln_cmd_optimize(int argc, char **argv) {
    static const struct option opts[] = {{"fold", no_argument, 0, 'f'},
                                         {"quantize", required_argument, 0, 'q'},
                                         {"prune", required_argument, 0, 'P'},
                                         {"calibrate", required_argument, 0, 'n'},
                                         {"calibration", required_argument, 0, 'c'},
                                         {"percentile", required_argument, 0, 'p'},
                                         {"data", required_argument, 0, 'd'},
                                         {"checkpoint", required_argument, 0, 'k'},
                                         {"to", required_argument, 0, 't'},
                                         {"report", no_argument, 0, 'R'},
                                         {"variants", required_argument, 0, 'V'},
                                         {"bench-seconds", required_argument, 0, 'B'},
                                         {"threads", required_argument, 0, 'T'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    kiln_optimize_opts o = {0};
    kiln_optimize_measure_opts mo = {0};
    int want_report = 0;
    const char *variants = NULL;
    optind = 1;
    opterr = 0;
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'f': o.fold = 1; break;
        case 'P':
            o.prune = strtod(optarg, &end);
            if (*end || end == optarg || !(o.prune > 0 && o.prune < 1))
                return kiln_cli_usage_error("optimize", "--prune %s: expected a sparsity between 0 and 1", optarg);
            break;
        case 'q':
            if (strcmp(optarg, "int8") && strcmp(optarg, "bf16"))
                return kiln_cli_usage_error("optimize", "--quantize %s: expected int8 or bf16", optarg);
            o.quantize = optarg;
            break;
        case 'n': {
            long v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 1 || v > 1000000)
                return kiln_cli_usage_error("optimize", "--calibrate %s: expected a number of batches, 1 or more",
                                            optarg);
            o.calibrate = (int)v;
            break;
        }
        case 'c':
            if (strcmp(optarg, "minmax") && strcmp(optarg, "percentile"))
                return kiln_cli_usage_error("optimize", "--calibration %s: expected minmax or percentile", optarg);
            o.calibration = optarg;
            break;
        case 'p':
            o.percentile = strtod(optarg, &end);
            if (*end || end == optarg || !(o.percentile > 50 && o.percentile <= 100))
                return kiln_cli_usage_error("optimize", "--percentile %s: expected a number in (50, 100]", optarg);
            break;
        case 'd': o.data = optarg; break;
        case 'k': o.checkpoint = optarg; break;
        case 't': o.to = optarg; break;
        case 'R':
            want_report = 1;
            break;
        case 'V':
            variants = optarg;
            break;
        case 'B':
            mo.bench_seconds = strtod(optarg, &end);
            if (*end || end == optarg || !(mo.bench_seconds > 0) || mo.bench_seconds > 3600)
                return kiln_cli_usage_error("optimize", "--bench-seconds %s: expected seconds > 0",
                                            optarg);
            break;
        case 'T': {
            int bad = kiln_cli_threads("optimize", optarg, &mo.threads);
            if (bad) return bad;
            break;
        }
        case 'h': fputs(HELP, stdout); return KILN_EXIT_OK;
        default:
            return kiln_cli_usage_error("optimize", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc) return kiln_cli_usage_error("optimize", "missing EXPORT_VERSION or RUN");
    o.source = argv[optind++];
    if (optind < argc) return kiln_cli_usage_error("optimize", "unexpected argument '%s'", argv[optind]);
    if ((variants || mo.bench_seconds > 0 || mo.threads) && !want_report)
        return kiln_cli_usage_error("optimize",
                                    "--variants, --bench-seconds and --threads go with --report");
    mo.data = o.data;
    if (want_report) return report(&o, variants, &mo);
    if (!o.to || !o.to[0]) return kiln_cli_usage_error("optimize", "--to BASE is required");
    if (!o.fold && !o.quantize && !o.prune)
        return kiln_cli_usage_error("optimize", "nothing to do: give --fold, --prune and/or --quantize");
    if (o.quantize && !strcmp(o.quantize, "bf16") && !kiln_cpu_has_bf16())
        fprintf(stderr, "kiln optimize: warning: this CPU has neither AVX512-BF16 nor AMX-BF16; the bf16 version "
                        "runs in fp32 here and in bf16 where a CPU has them\n");
    kiln_optimize_report r;
    kiln_status st = kiln_optimize(&o, &r);
    if (st) {
        fprintf(stderr, "kiln optimize: %s\n", kiln_last_error());
        return st == KILN_ERR_INVALID || st == KILN_ERR_NOTFOUND || st == KILN_ERR_FORMAT ? KILN_EXIT_USAGE
                                                                                            : KILN_EXIT_FAIL;
    }
    if (o.fold)
        printf("fold: %d batch norm(s) folded, %d dropout(s) removed, %d activation(s) fused\n", r.bn_folded,
               r.dropout_removed, r.act_fused);
    if (o.prune)
        printf("prune: %zu of %zu kernel values set to zero (%.4f)\n", r.pruned, r.prunable,
               r.prunable ? (double)r.pruned / (double)r.prunable : 0.0);
    if (o.quantize && !strcmp(o.quantize, "int8")) {
        printf("int8: calibrated on %d rows of the %s split (%s)\n", r.calibration_rows, r.calibration_split,
               o.calibration ? o.calibration : "minmax");
        printf("int8: %d layer(s): %s\n", r.n_lowp, r.lowp_layers);
        printf("int8: weights %d-bit per output channel (%s)\n", r.weight_bits,
               r.weight_bits == 8 ? "VNNI/AMX int8 dot products"
                                  : "no VNNI: 7 bits keep oneDNN's 16-bit pair sums from saturating");
    } else if (o.quantize) {
        printf("bf16: %d layer(s): %s\n", r.n_lowp, r.lowp_layers);
    }
    if (o.quantize) printf("fp32 ops: %s\n", r.fp32_ops[0] ? r.fp32_ops : "none");
    printf("oneDNN ISA: %s; runs here as: %s\n", r.isa, r.precision);
    printf("%s\n", r.dir);
    return KILN_EXIT_OK;
}
