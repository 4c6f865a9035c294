/* cmd_data_preview.c — kiln data preview: a grid of augmented training samples, as the training
 * loop of a config would see them (the same seed, order, batch size, augmentation and mixing),
 * written as a PNG (atomically: a reader never sees half a file). The labels of each tile are
 * printed, mixed ones with their weights. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image_write.h>

#include "cli/cli.h"
#include "kiln/kiln.h"
#include "kiln/inputs.h"

static const char *HELP =
    "usage: kiln data preview CONFIG --out GRID.png [options]\n"
    "\n"
    "Writes a grid of the first training samples of an epoch, augmented as data.augment says and\n"
    "before normalization, and prints each tile's label (mixup and cutmix: both classes with\n"
    "their weights). kiln train logs the same grid to TensorBoard (augmented_samples).\n"
    "\n"
    "options:\n"
    "  --out FILE         the PNG to write (required)\n"
    "  --n N              how many samples (default 16, at most 1024)\n"
    "  --epoch E          which epoch's augmentation (default 0, the first)\n"
    "  --set KEY=VALUE    override a config key (repeatable)\n"
    "  --help             this text\n";

static void png_sink(void *ctx, void *data, int size) {
    FILE *f = ctx;
    fwrite(data, 1, (size_t)size, f);
}

/* "Coat" or "3" for class c. */
static const char *class_name(const kiln_dataset *ds, const kiln_cfg *cfg, int c, char *buf,
                              size_t cap) {
    const char *n = kiln_dataset_class_name(ds, c);
    const kiln_cfg *mc = kiln_cfg_at(cfg, "model.class_names");
    if (!n && mc && c < mc->n_items) n = mc->items[c]->text;
    if (n) return n;
    snprintf(buf, cap, "%d", c);
    return buf;
}

static int print_labels(const kiln_dataset *ds, const kiln_cfg *cfg, const float *probs, int n,
                        int k) {
    for (int i = 0; i < n && probs; i++) {
        const float *p = probs + (size_t)i * k;
        int a = -1, b = -1; /* the two largest weights */
        for (int c = 0; c < k; c++) {
            if (p[c] <= 0) continue;
            if (a < 0 || p[c] > p[a])
                b = a, a = c;
            else if (b < 0 || p[c] > p[b])
                b = c;
        }
        char ba[32], bb[32];
        if (a < 0) continue;
        if (b < 0 || p[a] >= 0.9995f)
            printf("  %2d: %s\n", i + 1, class_name(ds, cfg, a, ba, sizeof ba));
        else
            printf("  %2d: %.3f %s + %.3f %s\n", i + 1, p[a], class_name(ds, cfg, a, ba, sizeof ba),
                   p[b], class_name(ds, cfg, b, bb, sizeof bb));
    }
    return 0;
}

int kiln_cmd_data_preview(int argc, char **argv) {
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'},   {"n", required_argument, 0, 'n'},
        {"epoch", required_argument, 0, 'e'}, {"set", required_argument, 0, 's'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    const char *out = NULL, **sets = calloc((size_t)argc + 1, sizeof *sets);
    long n = 16, epoch = 0;
    int n_sets = 0, c, rc = KILN_EXIT_OK;
    if (!sets) return KILN_EXIT_FAIL;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'o':
            out = optarg;
            break;
        case 's':
            sets[n_sets++] = optarg;
            break;
        case 'n':
            n = strtol(optarg, &end, 10);
            if (*end || n < 1 || n > 1024) {
                free(sets);
                return kiln_cli_usage_error("data preview", "--n %s: expected 1 to 1024", optarg);
            }
            break;
        case 'e':
            epoch = strtol(optarg, &end, 10);
            if (*end || epoch < 0 || epoch > 1000000000) {
                free(sets);
                return kiln_cli_usage_error("data preview", "--epoch %s: expected an epoch >= 0",
                                            optarg);
            }
            break;
        case 'h':
            fputs(HELP, stdout);
            free(sets);
            return KILN_EXIT_OK;
        default:
            free(sets);
            return kiln_cli_usage_error("data preview", "unknown or incomplete option '%s'",
                                        argv[optind - 1]);
        }
    }
    if (optind >= argc || !out || optind + 1 < argc) {
        free(sets);
        return kiln_cli_usage_error("data preview",
                                    optind >= argc ? "missing CONFIG"
                                    : !out         ? "missing --out FILE"
                                                   : "unexpected argument '%s'",
                                    argv[optind + 1 < argc ? optind + 1 : 0]);
    }
    const char *path = argv[optind];
    kiln_cfg *cfg = NULL;
    kiln_model m = {0};
    kiln_inputs in = {0};
    float *x = NULL, *probs = NULL, bound = 0;
    uint8_t *rgb = NULL;
    int k = 0, w = 0, h = 0;
    kiln_status st = kiln_config_load(path, &cfg);
    for (int i = 0; !st && i < n_sets; i++) st = kiln_config_set(cfg, sets[i]);
    if (!st) st = kiln_config_resolve(cfg);
    if (!st) st = kiln_inputs_resolve_paths(cfg, NULL);
    if (!st) st = kiln_model_build(cfg, &m);
    if (!st) st = kiln_inputs_load(cfg, &m, &in);
    if (st) {
        fprintf(stderr, "kiln data preview: %s\n", kiln_last_error());
        rc = KILN_EXIT_USAGE;
        goto done;
    }
    kiln_shape xs = kiln_dataset_x_shape(in.train);
    if (xs.ndim != 3 || (xs.dims[0] != 1 && xs.dims[0] != 3)) {
        char sb[96];
        fprintf(stderr,
                "kiln data preview: training samples are %s; a picture needs [C, H, W] with C = "
                "1 or 3\n",
                kiln_shape_str(&xs, sb, sizeof sb));
        rc = KILN_EXIT_USAGE;
        goto done;
    }
    if (n > kiln_dataset_rows(in.train)) n = (long)kiln_dataset_rows(in.train);
    if ((st = kiln_loader_preview(in.train, &in.train_loader, (int)n, epoch, &x, &probs, &k,
                                  &bound)) ||
        !(rgb = kiln_aug_grid(x, (int)n, (int)xs.dims[0], (int)xs.dims[1], (int)xs.dims[2], bound,
                              &w, &h))) {
        fprintf(stderr, "kiln data preview: %s\n", kiln_last_error());
        rc = KILN_EXIT_FAIL;
        goto done;
    }
    char *png = NULL;
    size_t len = 0;
    FILE *mf = open_memstream(&png, &len);
    int ok = mf && stbi_write_png_to_func(png_sink, mf, w, h, 3, rgb, w * 3);
    if (mf && fclose(mf)) ok = 0;
    st = ok ? kiln_file_write_atomic(out, png, len)
            : kiln_error(KILN_ERR_NOMEM, "cannot encode the PNG (out of memory)");
    free(png);
    if (st) {
        fprintf(stderr, "kiln data preview: %s\n", kiln_last_error());
        rc = KILN_EXIT_FAIL;
        goto done;
    }
    int augmented = in.train_loader.augment && in.train_loader.augment->n > 0;
    printf("wrote %s: %ld %s training samples of epoch %ld (%d x %d pixels)\n", out, n,
           augmented ? "augmented" : "(not augmented: no data.augment)", epoch, w, h);
    print_labels(in.train, cfg, probs, (int)n, k);
done:
    free(rgb), free(x), free(probs), free(sets);
    kiln_inputs_free(&in);
    kiln_model_free(&m);
    kiln_cfg_free(cfg);
    return rc;
}
