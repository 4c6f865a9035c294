/* make_data.c — writes the example data sets (deterministic: kiln's counter-based RNG).
 *
 *   kiln_example_data examples/regression   -> curve_train.csv (2000 rows), curve_test.csv (500)
 *   kiln_example_data examples/tabular      -> wine_train.csv (1500 rows), wine_test.csv (500)
 *
 * The folder's name picks the set. Curve: x ~ U(-1, 1), y = sin(2 pi x) + x / 2 + N(0, 0.1^2).
 * Wine: three quality classes; each of 11 measurements is a class-dependent mean plus noise,
 * with overlapping classes so that accuracy tops out near 0.9 (the Bayes rate), not at 1.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kiln/rng.h"

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

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: kiln_example_data examples/regression|examples/tabular\n");
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
