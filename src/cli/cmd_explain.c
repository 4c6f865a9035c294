/* cmd_explain.c — kiln explain: attributions of a model's answers (src/explain/) for inputs read
 * as kiln predict reads them, written as files.
 *
 * Order of work: options; the model (an export's version or base folder, or a run folder, whose
 * checkpoint is exported into a private temporary folder first and removed at the end); every
 * input (all must read before any model time is spent, as in predict); the attributions, all
 * inputs in one kiln_explain call (batched inside); then per input <name>.npy (the attribution),
 * <name>.png (image inputs: a heat map over the input) and <name>.json (the summary), plus
 * explanations.json listing them all, and a table on stdout.
 * Files: the inputs' files are encoded and written in parallel (OpenMP, one input per
 * iteration; the names are settled before, the table and explanations.json after, in input
 * order). Each file is written to <file>.tmp and renamed, so a reader never sees half a file,
 * but not fsynced: the outputs can be made again, and two fsyncs per file were most of the
 * writing time (300 files, about 0.6 s on a virtual disk).
 * Names: the input's file name without its extension, with "-<row>" for rows of an NPY, CSV or
 * JSON file; a name taken twice gets "-<n>" appended.
 * Exit codes: 2 for what the user can fix (options, a missing model, inputs that do not read or
 * fit, a bad layer or target), 1 for failures of the model or of writing.
 */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/predict.h"
#include "kiln/kiln.h"

static const char *HELP =
    "usage: kiln explain RUN_OR_EXPORT INPUT... --method M --out DIR [options]\n"
    "\n"
    "Explains a classifier's (or regressor's) answers: which parts of each input the answer\n"
    "depends on. RUN_OR_EXPORT is an export (a version folder, or a folder of versions: the\n"
    "highest) or a run folder (its newest checkpoint, or --checkpoint). Inputs are read as kiln\n"
    "predict reads them (images, .npy, .csv, .json; raw values such as 0..255 pixels).\n"
    "Per input, DIR gets <name>.npy (the attribution: the input's shape, or [H, W] for\n"
    "Grad-CAM), <name>.png for image inputs (the attribution as a cubehelix heat map over the\n"
    "input) and <name>.json (class, probability, method, parameters, completeness error), and\n"
    "explanations.json lists them all. docs/explain.md describes the methods.\n"
    "\n"
    "methods (--method):\n"
    "  saliency               |gradient| of the target with respect to the input\n"
    "  grad_x_input           gradient x input\n"
    "  integrated_gradients   (ig) path integral from a baseline; reports the completeness error\n"
    "  smoothgrad             the gradient averaged over noisy copies of the input\n"
    "  gradcam, gradcam_pp    (Grad-CAM, Grad-CAM++) a conv layer's gradient-weighted activation\n"
    "  occlusion              the target's drop when a window of the input is blacked out\n"
    "\n"
    "options:\n"
    "  --method M         the method (required)\n"
    "  --out DIR          where the files go (created; required)\n"
    "  --target C         the class (output) to explain (default: the predicted class)\n"
    "  --probability      explain the class probability instead of its logit\n"
    "  --layer NAME       Grad-CAM's layer (default: the last conv2d)\n"
    "  --steps N          integrated gradients: points on the path (default 64)\n"
    "  --baseline B       integrated gradients: black, blurred or uniform (default black)\n"
    "  --samples N        SmoothGrad: noisy copies (default 32)\n"
    "  --sigma S          SmoothGrad: noise, a fraction of the input's range (default 0.15)\n"
    "  --window N         occlusion: window side (default 4)\n"
    "  --stride N         occlusion: stride (default 2)\n"
    "  --seed N           noise and uniform baselines (default 1)\n"
    "  --batch N          rows per run of the model (default 128; 64 for inputs of over 4096\n"
    "                     values)\n"
    "  --version V        a version in a folder of versions\n"
    "  --checkpoint C     a run's checkpoint: step-N or best (default: the newest)\n"
    "  --scale N          PNG magnification (default: enough for about 224 pixels)\n"
    "  --quiet            no table on stdout\n"
    "  --help             this text\n"
    "\n"
    "Exit codes: 0 ok; 1 the model failed or a file could not be written; 2 a usage error, a\n"
    "model or input that cannot be read or does not fit, a bad layer or target.\n";

static long long whole(const char *s, long long lo, long long hi) {
    char *end;
    long long v = strtoll(s, &end, 10);
    return end == s || *end || v < lo || v > hi ? -1 : v;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *f) {
    (void)st, (void)flag, (void)f;
    return remove(path);
}

static int is_file(const char *dir, const char *name) {
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* "dir/shirt.png" -> "shirt"; "x.npy[3]" -> "x-3"; "rows.csv:7" -> "rows-7" */
static void name_of(const char *where, char *out, size_t cap) {
    const char *base = strrchr(where, '/');
    base = base ? base + 1 : where;
    const char *idx = strpbrk(base, "[:");
    size_t stem = idx ? (size_t)(idx - base) : strlen(base);
    const char *dot = NULL;
    for (size_t i = 0; i < stem; i++)
        if (base[i] == '.') dot = base + i;
    if (dot && dot > base) stem = (size_t)(dot - base);
    if (stem > 100) stem = 100;
    size_t n = 0;
    for (size_t i = 0; i < stem && n + 1 < cap; i++) {
        char c = base[i];
        out[n++] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                           c == '-' || c == '_' || c == '.'
                       ? c
                       : '_';
    }
    if (!n) out[n++] = 'x';
    out[n] = '\0';
    if (idx) {
        long long k = strtoll(idx + 1, NULL, 10);
        snprintf(out + n, cap - n, "-%lld", k);
    }
}

static kiln_status write_file(const char *dir, const char *name, const char *ext, const void *data,
                              size_t len) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s%s", dir, name, ext);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return kiln_error(KILN_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    int bad = fwrite(data, 1, len, f) != len;
    int e = errno;
    if (fclose(f) != 0 && !bad) bad = 1, e = errno;
    if (!bad && rename(tmp, path) != 0) bad = 1, e = errno;
    if (bad) {
        remove(tmp);
        return kiln_error(KILN_ERR_IO, "cannot write %s: %s", path, strerror(e));
    }
    return KILN_OK;
}

/* The files of input i. */
static kiln_status write_one(const char *dir, const char *name, const kiln_cli_predictor *pr,
                             const kiln_explain_opts *o, const kiln_explain_result *r,
                             const float *attr, const float *raw, int scale, kiln_sbuf *b) {
    const kiln_shape *row = &pr->spec.row;
    int64_t dims[8];
    int nd = row->ndim;
    int cam = o->method == KILN_EXPLAIN_GRADCAM || o->method == KILN_EXPLAIN_GRADCAM_PP;
    for (int d = 0; d < nd && d < 8; d++) dims[d] = row->dims[d];
    if (cam) dims[0] = row->dims[nd - 2], dims[1] = row->dims[nd - 1], nd = 2;
    void *bytes = NULL;
    size_t len = 0;
    kiln_status st = kiln_explain_npy(attr, nd, dims, &bytes, &len);
    if (!st) st = write_file(dir, name, ".npy", bytes, len);
    free(bytes);
    /* images: [C, H, W] with C 1, 3 or 4, or [H, W] */
    int img = row->ndim == 2 ||
              (row->ndim == 3 && (row->dims[0] == 1 || row->dims[0] == 3 || row->dims[0] == 4));
    if (!st && img) {
        int C = row->ndim == 3 ? (int)row->dims[0] : 1;
        int H = (int)row->dims[row->ndim - 2], W = (int)row->dims[row->ndim - 1];
        int s = scale > 0 ? scale : (224 + W - 1) / W;
        if (s < 1) s = 1;
        if ((int64_t)H * s > 4096 || (int64_t)W * s > 4096) s = 1;
        unsigned char *rgb = malloc((size_t)H * (size_t)W * (size_t)(s * s) * 3);
        st = rgb ? kiln_explain_overlay(attr, cam ? 1 : C, raw, C, H, W, s, rgb)
                 : kiln_error(KILN_ERR_NOMEM, "out of memory");
        bytes = NULL;
        if (!st) st = kiln_explain_png(rgb, W * s, H * s, &bytes, &len);
        if (!st) st = write_file(dir, name, ".png", bytes, len);
        free(rgb);
        free(bytes);
    }
    const char *cls = r->target < pr->n_classes ? pr->class_names[r->target] : NULL;
    kiln_explain_result_json(b, o, r, cls);
    b->len--; /* reopen the object: add the files */
    kiln_sbuf_puts(b, ", \"name\": ");
    kiln_sbuf_json_str(b, name);
    kiln_sbuf_printf(b, ", \"npy\": \"%s.npy\", \"png\": ", name);
    if (img)
        kiln_sbuf_printf(b, "\"%s.png\"}", name);
    else
        kiln_sbuf_puts(b, "null}");
    kiln_sbuf_putc(b, '\n');
    if (!st && b->failed) st = kiln_error(KILN_ERR_NOMEM, "out of memory");
    if (!st) st = write_file(dir, name, ".json", b->data, b->len);
    b->len--; /* the summary's object, without the file's newline */
    return st;
}

typedef struct {
    kiln_explain_opts o;
    const char *model, *out, *checkpoint;
    int64_t version;
    int scale, quiet;
} args;

static int parse(int argc, char **argv, args *a, const char **files, int *n_files) {
    static const struct option opts[] = {{"method", required_argument, 0, 'm'},
                                         {"target", required_argument, 0, 't'},
                                         {"layer", required_argument, 0, 'l'},
                                         {"steps", required_argument, 0, 'n'},
                                         {"baseline", required_argument, 0, 'B'},
                                         {"samples", required_argument, 0, 'S'},
                                         {"sigma", required_argument, 0, 'g'},
                                         {"window", required_argument, 0, 'w'},
                                         {"stride", required_argument, 0, 's'},
                                         {"seed", required_argument, 0, 'r'},
                                         {"batch", required_argument, 0, 'b'},
                                         {"out", required_argument, 0, 'o'},
                                         {"version", required_argument, 0, 'v'},
                                         {"checkpoint", required_argument, 0, 'c'},
                                         {"scale", required_argument, 0, 'x'},
                                         {"probability", no_argument, 0, 'p'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *method = NULL;
    a->o.target = -1;
    a->o.seed = 1;
    optind = 1;
    opterr = 0;
    int c;
    long long v;
    char *end;
#define NUM(flag, lo, hi, dst)                                                                     \
    if ((v = whole(optarg, lo, hi)) < 0)                                                           \
        return kiln_cli_usage_error("explain", "%s %s: expected a whole number in [%lld, %lld]",   \
                                    flag, optarg, (long long)(lo), (long long)(hi));               \
    dst = (int)v;                                                                                  \
    break;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            method = optarg;
            break;
        case 'l':
            a->o.layer = optarg;
            break;
        case 'o':
            a->out = optarg;
            break;
        case 'c':
            a->checkpoint = optarg;
            break;
        case 'p':
            a->o.probability = 1;
            break;
        case 'q':
            a->quiet = 1;
            break;
        case 't':
            NUM("--target", 0, 1000000, a->o.target)
        case 'n':
            NUM("--steps", 2, 100000, a->o.steps)
        case 'S':
            NUM("--samples", 1, 100000, a->o.samples)
        case 'w':
            NUM("--window", 1, 100000, a->o.window)
        case 's':
            NUM("--stride", 1, 100000, a->o.stride)
        case 'b':
            NUM("--batch", 1, 65536, a->o.batch)
        case 'x':
            NUM("--scale", 1, 64, a->scale)
        case 'r':
            if ((v = whole(optarg, 0, (long long)1 << 62)) < 0)
                return kiln_cli_usage_error("explain", "--seed %s: expected a whole number >= 0",
                                            optarg);
            a->o.seed = (uint64_t)v;
            break;
        case 'B':
            if ((a->o.baseline = kiln_explain_baseline_from_name(optarg)) == KILN_BASELINE_COUNT)
                return kiln_cli_usage_error(
                    "explain", "--baseline %s: expected black, blurred or uniform", optarg);
            break;
        case 'g':
            a->o.sigma = strtof(optarg, &end);
            if (end == optarg || *end || !(a->o.sigma > 0 && a->o.sigma <= 10))
                return kiln_cli_usage_error("explain", "--sigma %s: expected a number in (0, 10]",
                                            optarg);
            break;
        case 'v':
            if (!kiln_export_parse_version(optarg, &a->version))
                return kiln_cli_usage_error("explain", "--version %s: expected a positive integer",
                                            optarg);
            break;
        case 'h':
            fputs(HELP, stdout);
            return KILN_EXIT_OK;
        default:
            return kiln_cli_usage_error("explain", "unknown or incomplete option '%s'",
                                        argv[optind - 1]);
        }
    }
#undef NUM
    for (int i = optind; i < argc; i++) {
        if (!a->model)
            a->model = argv[i];
        else
            files[(*n_files)++] = argv[i];
    }
    if (!method)
        return kiln_cli_usage_error("explain", "--method is required (%s)",
                                    kiln_explain_method_list());
    if ((a->o.method = kiln_explain_method_from_name(method)) == KILN_EXPLAIN_METHOD_COUNT)
        return kiln_cli_usage_error("explain", "--method %s: unknown (one of %s)", method,
                                    kiln_explain_method_list());
    if (!a->model) return kiln_cli_usage_error("explain", "give a run or export folder");
    if (!*n_files)
        return kiln_cli_usage_error("explain", "no input: give INPUT files after %s", a->model);
    if (!a->out || !*a->out) return kiln_cli_usage_error("explain", "--out DIR is required");
    return -1;
}

int kiln_cmd_explain(int argc, char **argv) {
    args a = {0};
    const char **files = calloc((size_t)argc + 1, sizeof *files);
    int n_files = 0;
    if (!files) return fputs("kiln explain: out of memory\n", stderr), KILN_EXIT_FAIL;
    int rc = parse(argc, argv, &a, files, &n_files);
    if (rc >= 0) {
        free(files);
        return rc;
    }
    char tmp[64] = "", dir[4096];
    snprintf(dir, sizeof dir, "%s", a.model);
    kiln_cli_predictor pr;
    memset(&pr, 0, sizeof pr);
    kiln_status st = KILN_OK;
    int usage = 0;
    struct stat sb;
    if (stat(a.model, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        st = kiln_error(KILN_ERR_NOTFOUND, "%s: no such run or export folder", a.model);
        usage = 1;
    } else if (is_file(a.model, "run.json")) { /* a run: export its checkpoint privately */
        snprintf(tmp, sizeof tmp, "/tmp/kiln-explain-XXXXXX");
        if (!mkdtemp(tmp)) {
            st = kiln_error(KILN_ERR_IO, "cannot create a temporary folder in /tmp");
            tmp[0] = '\0';
        } else {
            st = kiln_export_run(a.model, a.checkpoint, tmp, 1, NULL);
            usage = st == KILN_ERR_NOTFOUND || st == KILN_ERR_INVALID;
            snprintf(dir, sizeof dir, "%s/1", tmp);
        }
    } else if (a.checkpoint) {
        st = kiln_error(KILN_ERR_INVALID, "--checkpoint is for a run folder; %s has no run.json",
                        a.model);
        usage = 1;
    }
    if (!st) st = kiln_cli_predictor_open_dir(&pr, dir, a.version, 64, &usage);
    kiln_instances in = {0};
    for (int i = 0; !st && i < n_files; i++) {
        st = kiln_instances_read(&in, files[i], &pr.spec);
        usage = st != KILN_ERR_NOMEM;
    }
    kiln_explainer *e = NULL;
    float *x = NULL, *attr = NULL;
    kiln_explain_result *res = NULL;
    if (!st && in.n > 1000000) {
        st = kiln_error(KILN_ERR_INVALID, "%lld inputs: at most 1000000", (long long)in.n);
        usage = 1;
    }
    if (!st && !(e = kiln_explainer_from_servable(pr.sv))) st = KILN_ERR_INVALID, usage = 0;
    if (!st) {
        size_t n = (size_t)in.n * (size_t)in.row_size;
        x = malloc(n * sizeof *x), attr = calloc(n, sizeof *attr);
        res = calloc((size_t)in.n, sizeof *res);
        st = x && attr && res ? kiln_servable_preprocess(pr.sv, in.x, x, in.n)
                              : kiln_error(KILN_ERR_NOMEM, "out of memory");
        usage = 0;
    }
    if (!st) {
        st = kiln_explain(e, &a.o, x, (int)in.n, attr, res);
        usage = st == KILN_ERR_INVALID;
    }
    if (!st) {
        st = kiln_mkdirs(a.out);
        usage = 0;
    }
    kiln_sbuf all = KILN_SBUF_INIT;
    char **names = st ? NULL : calloc((size_t)in.n, sizeof *names);
    if (!st && !names) st = kiln_error(KILN_ERR_NOMEM, "out of memory");
    if (!st && !a.quiet)
        printf("%-24s %-14s %6s %8s %11s\n", "input", "class", "target", "prob",
               a.o.method == KILN_EXPLAIN_INTEGRATED_GRADIENTS ? "complete_err" : "");
    for (int64_t i = 0; !st && i < in.n; i++) {
        char nm[160], tryname[200];
        name_of(in.where[i], nm, sizeof nm);
        snprintf(tryname, sizeof tryname, "%s", nm);
        for (int k = 2, dup = 1; dup; k++) {
            dup = 0;
            for (int64_t j = 0; j < i && !dup; j++) dup = !strcmp(names[j], tryname);
            if (dup) snprintf(tryname, sizeof tryname, "%s-%d", nm, k);
        }
        if (!(names[i] = strdup(tryname))) st = kiln_error(KILN_ERR_NOMEM, "out of memory");
    }
    kiln_sbuf *one = st ? NULL : calloc((size_t)in.n, sizeof *one);
    kiln_status *ost = st ? NULL : calloc((size_t)in.n, sizeof *ost);
    char **oerr = st ? NULL : calloc((size_t)in.n, sizeof *oerr);
    if (!st && (!one || !ost || !oerr)) st = kiln_error(KILN_ERR_NOMEM, "out of memory");
    if (!st) {
#pragma omp parallel for schedule(dynamic)
        for (int64_t i = 0; i < in.n; i++) {
            size_t off = (size_t)i * (size_t)in.row_size;
            ost[i] = write_one(a.out, names[i], &pr, &a.o, &res[i], attr + off, in.x + off,
                               a.scale, &one[i]);
            if (ost[i]) { /* the message is this thread's: keep it for the report */
                kiln_error_prefix("writing %s/%s", a.out, names[i]);
                oerr[i] = strdup(kiln_last_error());
            }
        }
    }
    for (int64_t i = 0; !st && i < in.n; i++) {
        if (ost[i]) {
            st = kiln_error(ost[i], "%s", oerr[i] ? oerr[i] : "writing failed (out of memory)");
            break;
        }
        kiln_sbuf_puts(&all, all.len ? ",\n  " : "{\"explanations\": [\n  ");
        kiln_sbuf_put(&all, one[i].data, one[i].len);
        const kiln_explain_result *r = &res[i];
        if (!a.quiet) {
            printf("%-24s %-14s %6d %8.4f", in.where[i],
                   r->target < pr.n_classes ? pr.class_names[r->target] : "-", r->target,
                   isnan(r->probability) ? 0.0 : (double)r->probability);
            if (!isnan(r->completeness)) printf(" %11.5f", r->completeness);
            putchar('\n');
        }
    }
    for (int64_t i = 0; one && i < in.n; i++) kiln_sbuf_free(&one[i]), free(oerr[i]);
    free(one), free(ost), free(oerr);
    if (!st) {
        kiln_sbuf_puts(&all, "\n]}\n");
        char path[4096];
        snprintf(path, sizeof path, "%s/explanations.json", a.out);
        st = all.failed ? kiln_error(KILN_ERR_NOMEM, "out of memory")
                        : kiln_file_write_atomic(path, all.data, all.len);
    }
    if (st) {
        fprintf(stderr, "kiln explain: %s\n", kiln_last_error());
        rc = usage ? KILN_EXIT_USAGE : KILN_EXIT_FAIL;
    } else {
        rc = KILN_EXIT_OK;
        if (!a.quiet)
            printf("wrote %lld explanations (%s) to %s\n", (long long)in.n,
                   kiln_explain_method_name(a.o.method), a.out);
    }
    for (int64_t i = 0; names && i < in.n; i++) free(names[i]);
    free(names);
    kiln_sbuf_free(&all);
    free(x), free(attr), free(res);
    kiln_explainer_free(e);
    kiln_instances_free(&in);
    kiln_cli_predictor_close(&pr);
    if (tmp[0]) nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(files);
    return rc;
}
