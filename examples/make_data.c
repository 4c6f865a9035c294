/* make_data.c — writes the example data sets (deterministic: kiln's counter-based RNG).
 *
 *   kiln_example_data examples/regression   -> curve_train.csv (2000 rows), curve_test.csv (500)
 *   kiln_example_data examples/tabular      -> wine_train.csv (1500 rows), wine_test.csv (500)
 *   kiln_example_data --fashion-jpeg DIR [--limit N] [--classes 5,6,7]
 *       -> Fashion-MNIST (the Debian package's IDX files) as JPEG class folders:
 *          DIR/{train,test}/<class>/<index>.jpg, grayscale, quality 95 (TurboJPEG), the first N
 *          images of each split with --limit (all 60000 + 10000 without), only the images of
 *          the listed IDX labels (and only their folders) with --classes (examples/transfer
 *          pretrains on five classes and fine-tunes on the other five). Class folders are the
 *          class names ("T-shirt/top" becomes T-shirt_top), so their sorted order is not the
 *          IDX label order: kiln numbers classes by folder name, and exports those names.
 *
 * The folder's name picks the set. Curve: x ~ U(-1, 1), y = sin(2 pi x) + x / 2 + N(0, 0.1^2).
 * Wine: three quality classes; each of 11 measurements is a class-dependent mean plus noise,
 * with overlapping classes so that accuracy tops out near 0.9 (the Bayes rate), not at 1.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>

#include "kiln/data.h"
#include "kiln/rng.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"

static int write_curve(const char *path, int rows, uint64_t stream) {
    FILE *f = fopen(path, "w");
    if (!f) return perror(path), 1;
    fprintf(f, "x,y\n");
    for (int i = 0; i < rows; i++) {
        double x = 2.0 * kiln_rng_uniform(42, stream, (uint64_t)i) - 1.0;
        double y = sin(6.283185307179586 * x) + 0.5 * x + 0.1 * kiln_rng_normal(42, stream + 1, (uint64_t)i);
        fprintf(f, "%.6f,%.6f\n", x, y);
    }
    return fclose(f) != 0;
}

static int write_wine(const char *path, int rows, uint64_t stream) {
    static const char *names[] = {"fixed_acidity", "volatile_acidity", "citric_acid", "residual_sugar", "chlorides",
                                  "free_sulfur_dioxide", "total_sulfur_dioxide", "density", "ph", "sulphates", "alcohol"};
    static const char *classes[] = {"low", "medium", "high"};
    static const double base[11] = {7.0, 0.5, 0.3, 2.5, 0.08, 15, 45, 0.996, 3.3, 0.6, 10.5};
    static const double shift[11] = {0.65, -0.2, 0.13, 0.5, -0.016, 3.2, -13, -0.0013, -0.08, 0.13, 1.45};
    static const double noise[11] = {1.2, 0.15, 0.15, 1.2, 0.03, 8, 25, 0.002, 0.15, 0.15, 0.9};
    FILE *f = fopen(path, "w");
    if (!f) return perror(path), 1;
    for (int j = 0; j < 11; j++) fprintf(f, "%s,", names[j]);
    fprintf(f, "quality\n");
    for (int i = 0; i < rows; i++) {
        int c = (int)kiln_rng_below(7, stream, (uint64_t)i, 3);
        for (int j = 0; j < 11; j++) {
            double v = base[j] + (c - 1) * shift[j] + noise[j] * kiln_rng_normal(7, stream + 1 + (uint64_t)j, (uint64_t)i);
            fprintf(f, "%.5g,", v);
        }
        fprintf(f, "%s\n", classes[c]);
    }
    return fclose(f) != 0;
}

static int make_dir(const char *p) {
    if (mkdir(p, 0755) == 0 || errno == EEXIST) return 0;
    perror(p);
    return 1;
}

/* One split of Fashion-MNIST (IDX files images, labels) as DIR/split/<class>/<i>.jpg. */
static int write_fashion_split(const char *dir, const char *split, const char *images,
                               const char *labels, long limit, unsigned keep) {
    static const char *classes[10] = {"T-shirt_top", "Trouser", "Pullover", "Dress", "Coat",
                                      "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle_boot"};
    kiln_dataset *ds = NULL;
    if (kiln_data_load_idx(images, labels, 0, &ds)) {
        fprintf(stderr, "kiln_example_data: %s\n", kiln_last_error());
        return 1;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, split);
    int rc = make_dir(path);
    for (int c = 0; c < 10 && !rc; c++) {
        if (!(keep >> c & 1)) continue;
        snprintf(path, sizeof path, "%s/%s/%s", dir, split, classes[c]);
        rc = make_dir(path);
    }
    int64_t n = kiln_dataset_rows(ds);
    if (limit > 0 && limit < n) n = limit;
    int64_t written = 0;
    tjhandle tj = tjInitCompress();
    float x[28 * 28];
    unsigned long cap = tjBufSize(28, 28, TJSAMP_GRAY);
    unsigned char pix[28 * 28], *jpg = tjAlloc((int)cap);
    if (!tj || !jpg) fprintf(stderr, "kiln_example_data: out of memory\n"), rc = 1;
    for (int64_t i = 0; i < n && !rc; i++) {
        int32_t y;
        kiln_dataset_get(ds, i, x, &y);
        if (!(keep >> y & 1)) continue;
        written++;
        for (int k = 0; k < 28 * 28; k++) pix[k] = (unsigned char)x[k];
        unsigned long len = cap; /* the buffer's size in, the JPEG's out */
        if (tjCompress2(tj, pix, 28, 28, 28, TJPF_GRAY, &jpg, &len, TJSAMP_GRAY, 95,
                        TJFLAG_NOREALLOC) != 0) {
            fprintf(stderr, "kiln_example_data: JPEG encoding failed: %s\n", tjGetErrorStr2(tj));
            rc = 1;
            break;
        }
        snprintf(path, sizeof path, "%s/%s/%s/%05lld.jpg", dir, split, classes[y], (long long)i);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(jpg, 1, len, f) != len) perror(path), rc = 1;
        if (f && fclose(f) != 0) perror(path), rc = 1;
    }
    tjFree(jpg);
    tjDestroy(tj);
    kiln_dataset_free(ds);
    int n_classes = __builtin_popcount(keep);
    if (!rc)
        printf("%s/%s: %lld JPEG images in %d class folders\n", dir, split, (long long)written,
               n_classes);
    return rc;
}

static int write_fashion_jpeg(int argc, char **argv) {
    const char *dir = NULL;
    long limit = 0;
    unsigned keep = 0x3ff; /* IDX labels to write, one bit each */
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--classes") && i + 1 < argc) {
            keep = 0;
            for (char *p = argv[++i], *end; *p; p = *end ? end + 1 : end) {
                long c = strtol(p, &end, 10);
                if (end == p || c < 0 || c > 9 || (*end && *end != ',')) {
                    fprintf(stderr, "kiln_example_data: --classes needs IDX labels 0-9 "
                                    "separated by commas\n");
                    return 2;
                }
                keep |= 1u << c;
            }
            continue;
        }
        if (!strcmp(argv[i], "--limit") && i + 1 < argc) {
            char *end;
            limit = strtol(argv[++i], &end, 10);
            if (*end || limit < 1) {
                fprintf(stderr, "kiln_example_data: --limit needs a positive integer\n");
                return 2;
            }
        } else if (!dir) {
            dir = argv[i];
        } else {
            fprintf(stderr, "kiln_example_data: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "usage: kiln_example_data --fashion-jpeg DIR [--limit N] [--classes 0,1,...]\n");
        return 2;
    }
    if (make_dir(dir)) return 1;
    return write_fashion_split(dir, "train", FMNIST "/train-images-idx3-ubyte.gz",
                               FMNIST "/train-labels-idx1-ubyte.gz", limit, keep) ||
           write_fashion_split(dir, "test", FMNIST "/t10k-images-idx3-ubyte.gz",
                               FMNIST "/t10k-labels-idx1-ubyte.gz", limit, keep);
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "--fashion-jpeg")) return write_fashion_jpeg(argc, argv);
    if (argc != 2) {
        fprintf(stderr, "usage: kiln_example_data examples/regression|examples/tabular\n"
                        "       kiln_example_data --fashion-jpeg DIR [--limit N] [--classes 0,1,...]\n");
        return 2;
    }
    char a[4096], b[4096];
    const char *dir = argv[1];
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    if (n >= 10 && strncmp(dir + n - 10, "regression", 10) == 0) {
        snprintf(a, sizeof a, "%.*s/curve_train.csv", (int)n, dir);
        snprintf(b, sizeof b, "%.*s/curve_test.csv", (int)n, dir);
        return write_curve(a, 2000, 10) || write_curve(b, 500, 20);
    }
    if (n >= 7 && strncmp(dir + n - 7, "tabular", 7) == 0) {
        snprintf(a, sizeof a, "%.*s/wine_train.csv", (int)n, dir);
        snprintf(b, sizeof b, "%.*s/wine_test.csv", (int)n, dir);
        return write_wine(a, 1500, 100) || write_wine(b, 500, 200);
    }
    fprintf(stderr, "kiln_example_data: %s: expected a folder named regression or tabular\n", dir);
    return 2;
}
