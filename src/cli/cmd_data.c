/* cmd_data.c — kiln data: tools for data sets. `convert` writes an image folder, IDX, CSV or
 * NPY data set as TFRecord shards of tf.train.Example (kiln_data_convert); `inspect` reads
 * shards back (kiln_tfrecord_inspect) and checks every record. Each subcommand is one entry of
 * SUBCOMMANDS. Exit codes: 2 for usage errors (options, a source kiln cannot take, shards in
 * the way), 1 for failures on the way (unreadable or bad input, a full disk) and for damaged
 * records found by inspect. `preview` (augmented samples as a grid) is in cmd_data_preview.c.
 */
#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "kiln/kiln.h"
#include "kiln/tfexample.h"
#include "kiln/tfrecord.h"

static const char *HELP =
    "usage: kiln data <command> [options]\n"
    "\n"
    "Tools for data sets.\n"
    "\n"
    "commands:\n"
    "  convert SRC --to DIR [--shards N] [--compression gzip] ...\n"
    "                      write a data set (an image folder, IDX, CSV or NPY files) as TFRecord\n"
    "                      shards of tf.train.Example records\n"
    "  inspect PATH...     count, schema, class histogram and first records of TFRecord files\n"
    "                      (files, folders or globs); checks every record's checksums\n"
    "  produce SRC --brokers B --topic T [--format tf_example] [--rate N/s]\n"
    "                      push a data set into a Kafka topic (docs/kafka.md)\n"
    "  preview CONFIG --out GRID.png [--n 16]\n"
    "                      a grid of augmented training samples, as training sees them\n"
    "\n"
    "Each command takes --help. docs/data.md has the details.\n";

static const char *CONVERT_HELP =
    "usage: kiln data convert SRC --to DIR [options]\n"
    "\n"
    "Writes the data set SRC as TFRecord shards DIR/NAME.tfrecord-00000-of-0000N of\n"
    "tf.train.Example records, with the feature keys TFDS and Keras image datasets use:\n"
    "  a folder of class folders   image/encoded (the file's own bytes), image/format,\n"
    "                              image/height, image/width, image/class/label,\n"
    "                              image/class/text (the folder name), image/filename\n"
    "  IDX images (--labels FILE)  image/encoded (PNG, lossless), image/format, image/height,\n"
    "                              image/width, image/class/label (image/class/text with\n"
    "                              --class-names)\n"
    "  CSV or NPY                  x (float list) and label (int64 class id; float list with\n"
    "                              --regression), label/text for named classes\n"
    "SRC is told apart by its name (a folder, *.csv[.gz], *.npy[.gz], *.jsonl; else IDX) unless\n"
    "--from says. Each shard is written under a temporary name and renamed when complete; when\n"
    "anything fails, the shards already written are removed again.\n"
    "\n"
    "options:\n"
    "  --to DIR                 the folder for the shards (made when missing)\n"
    "  --format tfrecord        the output format (the only one)\n"
    "  --shards N               how many files (default 1)\n"
    "  --compression C          none (default), gzip or zlib (TF's TFRecordOptions)\n"
    "  --name NAME              shard names NAME.tfrecord-... (default train)\n"
    "  --from KIND              images, manifest, idx, csv or npy\n"
    "  --labels FILE            IDX labels or NPY labels\n"
    "  --label-column COL       CSV: the label column (default label)\n"
    "  --regression             CSV, NPY: float targets instead of class ids\n"
    "  --class-names A,B,...    names of class ids 0, 1, ... (IDX, NPY, integer CSV labels)\n"
    "  --no-shuffle             keep the source's order (default: a seeded random order, so\n"
    "                           every shard holds every class)\n"
    "  --seed N                 the order's seed (default 1)\n"
    "  --force                  replace NAME.tfrecord-* files already in DIR\n"
    "  --quiet                  no progress line\n"
    "  --help                   this text\n";

static const char *INSPECT_HELP =
    "usage: kiln data inspect PATH... [options]\n"
    "\n"
    "Reads TFRecord files (each PATH a file, a folder or a glob such as 'DIR/train.tfrecord-*')\n"
    "and prints the record count, every feature key with its type and values per record, the\n"
    "class histogram of the label, and the first records. Every record's checksums are checked:\n"
    "a damaged one is reported with its file, record index and byte offset (of the decompressed\n"
    "data for GZIP and ZLIB files), and the exit code is then 1.\n"
    "\n"
    "options:\n"
    "  --compression C          auto (default: told from the first bytes), none, gzip or zlib\n"
    "  --label KEY              the class label feature (default: image/class/label, or label)\n"
    "  --text KEY               the class names feature (default: image/class/text, or\n"
    "                           label/text)\n"
    "  --records N              how many records to show (default 3; 0: none)\n"
    "  --help                   this text\n";

/* ---- convert ---- */

typedef struct {
    int on; /* a terminal */
    double last;
} progress;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void on_progress(void *ctx, int64_t done, int64_t total, int64_t bytes) {
    progress *p = ctx;
    double t = now();
    if (!p->on || (done < total && t - p->last < 0.1)) return;
    p->last = t;
    fprintf(stderr, "\rkiln data convert: %lld/%lld records (%d%%), %.1f MB written",
            (long long)done, (long long)total, (int)(100 * done / (total ? total : 1)),
            (double)bytes / 1e6);
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
}

static int parse_from(const char *s, kiln_convert_from *f) {
    static const char *const names[] = {"images", "manifest", "idx", "csv", "npy"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, names[i])) {
            *f = (kiln_convert_from)(i + 1);
            return 0;
        }
    return -1;
}

static int data_convert(int argc, char **argv) {
    static const struct option opts[] = {
        {"to", required_argument, 0, 't'},     {"format", required_argument, 0, 'F'},
        {"shards", required_argument, 0, 's'}, {"compression", required_argument, 0, 'c'},
        {"name", required_argument, 0, 'n'},   {"from", required_argument, 0, 'f'},
        {"labels", required_argument, 0, 'l'}, {"label-column", required_argument, 0, 'L'},
        {"regression", no_argument, 0, 'r'},   {"class-names", required_argument, 0, 'C'},
        {"no-shuffle", no_argument, 0, 'N'},   {"seed", required_argument, 0, 'S'},
        {"force", no_argument, 0, 'x'},        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    kiln_convert_options o = {.shards = 1, .shuffle = 1, .seed = 1};
    const char *names_arg = NULL;
    int quiet = 0;
    optind = 1;
    opterr = 0;
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            o.to = optarg;
            break;
        case 'F':
            if (strcmp(optarg, "tfrecord"))
                return kiln_cli_usage_error("data convert",
                                            "--format %s: the only format is tfrecord", optarg);
            break;
        case 's': {
            long v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 1 || v > 99999)
                return kiln_cli_usage_error("data convert", "--shards %s: expected 1 to 99999",
                                            optarg);
            o.shards = (int)v;
            break;
        }
        case 'c': {
            kiln_tfrecord_compression cc;
            if (kiln_tfrecord_compression_parse(optarg, &cc) || cc == KILN_TFRECORD_AUTO)
                return kiln_cli_usage_error(
                    "data convert", "--compression %s: expected none, gzip or zlib", optarg);
            o.compression = (int)cc;
            break;
        }
        case 'n':
            o.name = optarg;
            break;
        case 'f':
            if (parse_from(optarg, &o.from))
                return kiln_cli_usage_error("data convert",
                                            "--from %s: expected images, manifest, idx, csv or npy",
                                            optarg);
            break;
        case 'l':
            o.labels = optarg;
            break;
        case 'L':
            o.label_column = optarg;
            break;
        case 'r':
            o.regression = 1;
            break;
        case 'C':
            names_arg = optarg;
            break;
        case 'N':
            o.shuffle = 0;
            break;
        case 'S': {
            unsigned long long v = strtoull(optarg, &end, 10);
            if (*end || end == optarg || optarg[0] == '-')
                return kiln_cli_usage_error("data convert", "--seed %s: expected an integer",
                                            optarg);
            o.seed = v;
            break;
        }
        case 'x':
            o.force = 1;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'h':
            fputs(CONVERT_HELP, stdout);
            return KILN_EXIT_OK;
        default:
            return kiln_cli_usage_error("data convert", "unknown or incomplete option '%s'",
                                        argv[optind - 1]);
        }
    }
    if (optind >= argc) return kiln_cli_usage_error("data convert", "missing SRC (a data set)");
    o.src = argv[optind++];
    if (optind < argc)
        return kiln_cli_usage_error("data convert", "unexpected argument '%s'", argv[optind]);
    if (!o.to || !o.to[0]) return kiln_cli_usage_error("data convert", "missing --to DIR");
    char *names_buf = NULL;
    const char *names[4096];
    if (names_arg) {
        names_buf = strdup(names_arg);
        for (char *p = names_buf, *q; p && o.num_class_names < 4096; p = q) {
            q = strchr(p, ',');
            if (q) *q++ = 0;
            names[o.num_class_names++] = p;
        }
        o.class_names = names;
    }
    progress pr = {.on = !quiet && isatty(2)};
    o.progress = on_progress, o.progress_ctx = &pr;
    kiln_convert_result res;
    kiln_status st = kiln_data_convert(&o, &res);
    free(names_buf);
    if (st) {
        if (pr.on) fputc('\n', stderr);
        fprintf(stderr, "kiln data convert: %s\n", kiln_last_error());
        return st == KILN_ERR_INVALID ? KILN_EXIT_USAGE : KILN_EXIT_FAIL;
    }
    printf("wrote %lld records in %d shard%s (%.1f MB%s%s): %s", (long long)res.records, res.shards,
           res.shards == 1 ? "" : "s", (double)res.bytes / 1e6, o.compression ? ", " : "",
           o.compression ? kiln_tfrecord_compression_name(o.compression) : "", res.first);
    if (res.shards > 1) printf(" .. %s", res.last);
    printf("\n");
    return KILN_EXIT_OK;
}

/* ---- inspect ---- */

typedef struct {
    int bad_shown;
    int64_t shown, first;
    FILE *out; /* the first records, printed after the summary */
} inspect_ctx;

/* Prints a bytes value: quoted when it is short printable text, else its size and format. */
static void print_bytes(FILE *o, const uint8_t *b, size_t n) {
    int text = n <= 80;
    for (size_t i = 0; text && i < n; i++) text = isprint(b[i]) && b[i] != '"';
    if (text) {
        fprintf(o, "\"%.*s\"", (int)n, (const char *)b);
        return;
    }
    kiln_image_format f = kiln_image_sniff(b, n);
    fprintf(o, "<%zu bytes%s%s>", n, f ? ", " : "", f ? kiln_image_format_name(f) : "");
}

static void print_feature(FILE *o, const kiln_feature *f) {
    fprintf(o, "    %s: %s [%zu]", f->key, kiln_feat_kind_name(f->kind), f->n);
    size_t show = f->n < 8 ? f->n : 8;
    if (show) fprintf(o, " ");
    for (size_t j = 0; j < show; j++) {
        if (j) fprintf(o, ", ");
        if (f->kind == KILN_FEAT_FLOAT) fprintf(o, "%g", (double)f->f[j]);
        if (f->kind == KILN_FEAT_INT64) fprintf(o, "%lld", (long long)f->i[j]);
        if (f->kind == KILN_FEAT_BYTES) {
            size_t n;
            const uint8_t *b = kiln_feature_bytes(f, j, &n);
            print_bytes(o, b, n);
        }
    }
    fprintf(o, "%s\n", show < f->n ? ", ..." : "");
}

static int on_record(void *vctx, const char *file, int64_t index, int64_t offset,
                     const kiln_example *ex, const char *msg) {
    inspect_ctx *ctx = vctx;
    if (!ex) {
        if (ctx->bad_shown++ < 20) fprintf(stderr, "damaged: %s\n", msg);
        return 0;
    }
    if (ctx->shown++ >= ctx->first || !ctx->out) return 0;
    fprintf(ctx->out, "  %s: record %lld (offset %lld):\n", file, (long long)index,
            (long long)offset);
    for (int i = 0; i < kiln_example_size(ex); i++) {
        kiln_feature f;
        kiln_example_feature(ex, i, &f);
        print_feature(ctx->out, &f);
    }
    return 0;
}

static int data_inspect(int argc, char **argv) {
    static const struct option opts[] = {{"compression", required_argument, 0, 'c'},
                                         {"label", required_argument, 0, 'l'},
                                         {"text", required_argument, 0, 'T'},
                                         {"records", required_argument, 0, 'r'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    kiln_tfrecord_compression comp = KILN_TFRECORD_AUTO;
    const char *label = NULL, *text = NULL;
    long first = 3;
    optind = 1;
    opterr = 0;
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (kiln_tfrecord_compression_parse(optarg, &comp))
                return kiln_cli_usage_error(
                    "data inspect", "--compression %s: expected auto, none, gzip or zlib", optarg);
            break;
        case 'l':
            label = optarg;
            break;
        case 'T':
            text = optarg;
            break;
        case 'r':
            first = strtol(optarg, &end, 10);
            if (*end || end == optarg || first < 0)
                return kiln_cli_usage_error("data inspect", "--records %s: expected N >= 0",
                                            optarg);
            break;
        case 'h':
            fputs(INSPECT_HELP, stdout);
            return KILN_EXIT_OK;
        default:
            return kiln_cli_usage_error("data inspect", "unknown or incomplete option '%s'",
                                        argv[optind - 1]);
        }
    }
    if (optind >= argc) return kiln_cli_usage_error("data inspect", "missing PATH");
    char **files = NULL;
    int n = 0;
    for (int a = optind; a < argc; a++) {
        char **more;
        int m;
        kiln_status st = kiln_data_glob(argv[a], &more, &m);
        if (st) {
            kiln_data_free_files(files, n);
            fprintf(stderr, "kiln data inspect: %s\n", kiln_last_error());
            return KILN_EXIT_USAGE;
        }
        char **all = realloc(files, (size_t)(n + m) * sizeof *all);
        if (!all) {
            kiln_data_free_files(more, m), kiln_data_free_files(files, n);
            fprintf(stderr, "kiln data inspect: out of memory\n");
            return KILN_EXIT_FAIL;
        }
        files = all;
        memcpy(files + n, more, (size_t)m * sizeof *more);
        free(more);
        n += m;
    }
    char *shown = NULL;
    size_t shown_len = 0;
    inspect_ctx ctx = {.first = first, .out = open_memstream(&shown, &shown_len)};
    kiln_inspect_result r;
    kiln_status st = kiln_tfrecord_inspect((const char *const *)files, n, comp, label, text, first,
                                           on_record, &ctx, &r);
    if (ctx.out) fclose(ctx.out);
    if (st) {
        fprintf(stderr, "kiln data inspect: %s\n", kiln_last_error());
        free(shown);
        kiln_inspect_result_free(&r);
        kiln_data_free_files(files, n);
        return KILN_EXIT_FAIL;
    }
    printf("files: %d (%s%s%s)\n", r.files, files[0], n > 1 ? " .. " : "",
           n > 1 ? files[n - 1] : "");
    kiln_data_free_files(files, n);
    printf("records: %lld", (long long)r.records);
    if (r.bad)
        printf(", and %lld damaged\n", (long long)r.bad);
    else
        printf(" (every checksum intact)\n");
    printf("features (%d keys%s):\n", r.num_features,
           r.truncated_features ? ", more not listed" : "");
    for (int i = 0; i < r.num_features; i++) {
        const kiln_inspect_feature *f = &r.features[i];
        char vals[64];
        if (f->min_n == f->max_n)
            snprintf(vals, sizeof vals, "[%lld]", (long long)f->min_n);
        else
            snprintf(vals, sizeof vals, "[%lld..%lld]", (long long)f->min_n, (long long)f->max_n);
        printf("  %-28s %-5s %-12s", f->key, f->mixed ? "mixed" : kiln_feat_kind_name(f->kind),
               vals);
        if (f->records != r.records) printf(" in %lld of the records", (long long)f->records);
        if (f->kind == KILN_FEAT_BYTES && f->max_bytes >= 0) {
            if (f->min_bytes == f->max_bytes)
                printf(" %lld bytes", (long long)f->min_bytes);
            else
                printf(" %lld..%lld bytes", (long long)f->min_bytes, (long long)f->max_bytes);
            if (f->format[0]) printf(" (%s)", f->format);
        }
        printf("\n");
    }
    if (r.num_classes > 0) {
        printf("classes (%s): %d\n", r.label_key ? r.label_key : "label", r.num_classes);
        for (int k = 0; k < r.num_classes; k++)
            printf("  %-4d %-24s %lld\n", k, r.class_text && r.class_text[k] ? r.class_text[k] : "",
                   (long long)r.histogram[k]);
        if (r.out_of_range) printf("  (and %lld labels out of range)\n", (long long)r.out_of_range);
    }
    if (shown && shown_len) printf("first records:\n%s", shown);
    free(shown);
    int bad = r.bad > 0;
    if (bad)
        fprintf(stderr, "kiln data inspect: %lld damaged record%s\n", (long long)r.bad,
                r.bad == 1 ? "" : "s");
    kiln_inspect_result_free(&r);
    return bad ? KILN_EXIT_FAIL : KILN_EXIT_OK;
}

/* ---- dispatch ---- */

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
} subcommand;

static const subcommand SUBCOMMANDS[] = {
    {"convert", data_convert},
    {"inspect", data_inspect},
    {"preview", kiln_cmd_data_preview}, /* cmd_data_preview.c */
    {"produce", kiln_cmd_data_produce}, /* cmd_data_produce.c */
};

int kiln_cmd_data(int argc, char **argv) {
    if (argc < 2) {
        fputs(HELP, stderr);
        return KILN_EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        fputs(HELP, stdout);
        return KILN_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof SUBCOMMANDS / sizeof *SUBCOMMANDS; i++)
        if (!strcmp(SUBCOMMANDS[i].name, sub)) return SUBCOMMANDS[i].run(argc - 1, argv + 1);
    return kiln_cli_usage_error("data", "unknown command '%s' (convert, inspect, preview or produce)", sub);
}
