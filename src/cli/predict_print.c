/* predict_print.c — what `kiln predict` prints (see predict.h).
 *
 * Classes. A classifier's probabilities row has one value per class, except a single-logit
 * binary model (sigmoid over one output), whose one value p is the probability of class 1: it
 * is shown as two classes with probabilities [1 - p, p], so every classifier reads the same
 * way. The predicted class is the first most probable one. A class is shown by its name when
 * the model names every class, else by its index (as a string in JSON, as TF's classifiers do).
 *
 * Numbers in JSON are the shortest decimals that read back as the same float32, so two runs
 * print the same text exactly when they computed the same floats. The table rounds
 * probabilities to 4 decimals and regression values to 6 significant digits.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/predict.h"

static int64_t class_count(const kiln_cli_predictor *p) {
    return p->prob_size == 1 ? 2 : p->prob_size;
}

static float class_prob(const kiln_cli_predictor *p, const float *row, int64_t k) {
    return p->prob_size == 1 ? (k ? row[0] : 1 - row[0]) : row[k];
}

/* The class name, or its index when the classes have no (or not all) names. */
static const char *class_label(const kiln_cli_predictor *p, int64_t k, char buf[24]) {
    if (p->n_classes == class_count(p) && p->class_names[k]) return p->class_names[k];
    snprintf(buf, 24, "%lld", (long long)k);
    return buf;
}

/* Class i ranks before class j: more probable, or as probable and a smaller index; NaN last. */
static int before(const kiln_cli_predictor *p, const float *row, int64_t i, int64_t j) {
    float pi = class_prob(p, row, i), pj = class_prob(p, row, j);
    if (isnan(pi) || isnan(pj)) return isnan(pi) == isnan(pj) ? i < j : !isnan(pi);
    return pi > pj || (pi == pj && i < j);
}

/* The k most probable classes in order into order[0, k) (order has room for every class). */
static void top_classes(const kiln_cli_predictor *p, const float *row, int64_t k, int64_t *order) {
    int64_t n = class_count(p);
    for (int64_t i = 0; i < n; i++) order[i] = i;
    for (int64_t j = 0; j < k && j < n; j++) { /* selection: O(k n), k is small */
        int64_t best = j;
        for (int64_t i = j + 1; i < n; i++)
            if (before(p, row, order[i], order[best])) best = i;
        int64_t t = order[j];
        order[j] = order[best], order[best] = t;
    }
}

static int64_t best_class(const kiln_cli_predictor *p, const float *row) {
    int64_t best = 0;
    for (int64_t i = 1; i < class_count(p); i++)
        if (before(p, row, i, best)) best = i;
    return best;
}

void kiln_cli_predict_json_one(kiln_sbuf *b, const kiln_cli_predictor *p, const float *out,
                               const float *probs, const char *input) {
    kiln_sbuf_putc(b, '{');
    if (input) {
        kiln_sbuf_puts(b, "\"input\": ");
        kiln_sbuf_json_str(b, input);
        kiln_sbuf_puts(b, ", ");
    }
    if (p->prob_size) {
        char buf[24];
        int64_t c = best_class(p, probs), n = class_count(p);
        kiln_sbuf_puts(b, "\"class\": ");
        kiln_sbuf_json_str(b, class_label(p, c, buf));
        kiln_sbuf_printf(b, ", \"class_index\": %lld, \"probability\": ", (long long)c);
        kiln_sbuf_f32(b, class_prob(p, probs, c));
        kiln_sbuf_puts(b, ", \"probabilities\": [");
        for (int64_t i = 0; i < n; i++) {
            if (i) kiln_sbuf_puts(b, ", ");
            kiln_sbuf_f32(b, class_prob(p, probs, i));
        }
    } else {
        kiln_sbuf_puts(b, "\"output\": [");
        for (int64_t i = 0; i < p->out_size; i++) {
            if (i) kiln_sbuf_puts(b, ", ");
            kiln_sbuf_f32(b, out[i]);
        }
    }
    kiln_sbuf_puts(b, "]}");
}

static void print_json(FILE *f, const kiln_cli_predictor *p, const kiln_instances *in,
                       const float *out, const float *probs) {
    kiln_sbuf b = KILN_SBUF_INIT;
    fputs("{\"predictions\": [\n", f);
    for (int64_t r = 0; r < in->n; r++) {
        kiln_sbuf_clear(&b);
        kiln_sbuf_puts(&b, "  ");
        kiln_cli_predict_json_one(&b, p, out + r * p->out_size,
                                  probs ? probs + r * p->prob_size : NULL, in->where[r]);
        kiln_sbuf_puts(&b, r + 1 < in->n ? ",\n" : "\n");
        if (b.data) fwrite(b.data, 1, b.len, f);
    }
    fputs("]}\n", f);
    kiln_sbuf_free(&b);
}

static void print_table(FILE *f, const kiln_cli_predictor *p, const kiln_instances *in,
                        const float *out, const float *probs, int top_k) {
    int wi = (int)strlen("input"), wc = (int)strlen("class");
    char buf[24];
    for (int64_t r = 0; r < in->n; r++) {
        int l = (int)strlen(in->where[r]);
        if (l > wi) wi = l;
    }
    if (!p->prob_size) { /* a regression: the values */
        fprintf(f, "%-*s  output\n", wi, "input");
        for (int64_t r = 0; r < in->n; r++) {
            fprintf(f, "%-*s ", wi, in->where[r]);
            for (int64_t i = 0; i < p->out_size; i++)
                fprintf(f, " %.6g", (double)out[r * p->out_size + i]);
            fputc('\n', f);
        }
        return;
    }
    int64_t n = class_count(p), k = top_k < n ? top_k : n;
    for (int64_t c = 0; c < n; c++) {
        int l = (int)strlen(class_label(p, c, buf));
        if (l > wc) wc = l;
    }
    fprintf(f, "%-*s  %-*s  probability", wi, "input", wc, "class");
    if (k) fprintf(f, "  top %lld", (long long)k);
    fputc('\n', f);
    int64_t *order = malloc((size_t)n * sizeof *order);
    if (!order) {
        fputs("kiln predict: out of memory\n", stderr);
        return;
    }
    for (int64_t r = 0; r < in->n; r++) {
        const float *row = probs + r * p->prob_size;
        top_classes(p, row, k ? k : 1, order);
        fprintf(f, "%-*s  %-*s  %11.4f", wi, in->where[r], wc, class_label(p, order[0], buf),
                (double)class_prob(p, row, order[0]));
        for (int64_t j = 0; j < k; j++) { /* the last one unpadded: no trailing spaces */
            const char *l = class_label(p, order[j], buf);
            double v = class_prob(p, row, order[j]);
            if (j + 1 < k)
                fprintf(f, "  %-*s %.4f", wc, l, v);
            else
                fprintf(f, "  %s %.4f", l, v);
        }
        fputc('\n', f);
    }
    free(order);
}

void kiln_cli_predict_print(FILE *f, const kiln_cli_predictor *p, const kiln_instances *in,
                            const float *out, const float *probs, int json, int top_k) {
    if (json)
        print_json(f, p, in, out, probs);
    else
        print_table(f, p, in, out, probs, top_k);
}
