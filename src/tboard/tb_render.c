/* tb_render.c — sample grids and confusion matrices as RGB pictures (see tb_render.h).
 *
 * Everything is integer pixel arithmetic on one buffer: fill rectangles, blit scaled tiles,
 * draw glyphs of a 3x5 bitmap font at an integer scale (each glyph row is 3 bits, high bit
 * left; glyphs advance 4 units). Sizes are computed first, so a picture is allocated once.
 */
#include "tboard/tb_render.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/status.h"

#define MAX_SIDE   16384
#define FONT_SCALE 2 /* a glyph is 6 x 10 pixels */

typedef struct {
    unsigned char *p;
    int w, h;
} canvas;

typedef struct {
    char ch;
    unsigned char rows[5];
} glyph;

static const glyph FONT[] = {
    {'0', {7, 5, 5, 5, 7}}, {'1', {2, 6, 2, 2, 7}}, {'2', {7, 1, 7, 4, 7}}, {'3', {7, 1, 7, 1, 7}},
    {'4', {5, 5, 7, 1, 1}}, {'5', {7, 4, 7, 1, 7}}, {'6', {7, 4, 7, 5, 7}}, {'7', {7, 1, 1, 1, 1}},
    {'8', {7, 5, 7, 5, 7}}, {'9', {7, 5, 7, 1, 7}}, {'t', {2, 7, 2, 2, 3}}, {'p', {6, 5, 6, 4, 4}},
    {'/', {1, 1, 2, 4, 4}}, {'-', {0, 0, 7, 0, 0}}, {'?', {7, 1, 2, 0, 2}},
};

static int text_width(const char *s, int scale) {
    int n = (int)strlen(s);
    return n ? (4 * n - 1) * scale : 0;
}

static void fill(canvas *c, int x, int y, int w, int h, const unsigned char rgb[3]) {
    for (int j = y < 0 ? 0 : y; j < y + h && j < c->h; j++)
        for (int i = x < 0 ? 0 : x; i < x + w && i < c->w; i++)
            memcpy(c->p + 3 * ((size_t)j * c->w + i), rgb, 3);
}

static void text(canvas *c, int x, int y, const char *s, int scale, const unsigned char rgb[3]) {
    for (; *s; s++, x += 4 * scale) {
        const glyph *g = NULL;
        for (size_t k = 0; k < sizeof FONT / sizeof *FONT; k++)
            if (FONT[k].ch == *s) g = &FONT[k];
        if (!g) continue; /* a space, or a character the font lacks */
        for (int r = 0; r < 5; r++)
            for (int b = 0; b < 3; b++)
                if (g->rows[r] & (4 >> b)) fill(c, x + b * scale, y + r * scale, scale, scale, rgb);
    }
}

static unsigned char *alloc_canvas(canvas *c, int w, int h, const unsigned char bg[3]) {
    if (w < 1 || h < 1 || w > MAX_SIDE || h > MAX_SIDE) {
        kiln_error(KILN_ERR_INVALID, "tensorboard image: %d x %d pixels is too large", w, h);
        return NULL;
    }
    c->w = w, c->h = h;
    if (!(c->p = malloc((size_t)w * h * 3))) {
        kiln_error(KILN_ERR_NOMEM, "tensorboard image: out of memory for %d x %d pixels", w, h);
        return NULL;
    }
    fill(c, 0, 0, w, h, bg);
    return c->p;
}

static void label(char *out, size_t cap, int v) {
    if (v < 0)
        snprintf(out, cap, "?");
    else
        snprintf(out, cap, "%d", v);
}

unsigned char *kiln_tb_render_samples(const float *x, int n, int c, int h, int w, const int *truth,
                                      const int *pred, int *width, int *height) {
    static const unsigned char BG[3] = {48, 48, 48}, STRIP[3] = {24, 24, 24},
                               WHITE[3] = {255, 255, 255}, GOOD[3] = {0, 170, 60},
                               BAD[3] = {220, 30, 30};
    *width = *height = 0;
    if (n < 1 || (c != 1 && c != 3) || h < 1 || w < 1 || h > MAX_SIDE || w > MAX_SIDE) {
        kiln_error(KILN_ERR_INVALID, "tensorboard samples: %d images of %d x %d x %d", n, c, h, w);
        return NULL;
    }
    int big = h > w ? h : w, s = big >= 64 ? 1 : 64 / big; /* scale up to about 64 pixels */
    if (s > 8) s = 8;
    const int border = 2, gap = 4, strip = 5 * FONT_SCALE + 4;
    int caption = 0; /* widest caption */
    for (int i = 0; i < n; i++) {
        char a[16], b[16], cap[40];
        label(a, sizeof a, truth ? truth[i] : -1), label(b, sizeof b, pred ? pred[i] : -1);
        snprintf(cap, sizeof cap, "t%s p%s", a, b);
        int tw = text_width(cap, FONT_SCALE);
        caption = tw > caption ? tw : caption;
    }
    int inner = w * s > caption + 4 ? w * s : caption + 4;
    int tile_w = inner + 2 * border, tile_h = h * s + strip + 2 * border;
    int cols = (int)ceil(sqrt((double)n)), rows = (n + cols - 1) / cols;
    int64_t W = (int64_t)cols * tile_w + (int64_t)(cols + 1) * gap,
            H = (int64_t)rows * tile_h + (int64_t)(rows + 1) * gap;
    canvas cv;
    if (!alloc_canvas(&cv, W > MAX_SIDE ? MAX_SIDE + 1 : (int)W,
                      H > MAX_SIDE ? MAX_SIDE + 1 : (int)H, BG))
        return NULL;
    size_t plane = (size_t)h * w;
    for (int i = 0; i < n; i++) {
        const float *img = x + (size_t)i * c * plane;
        int x0 = gap + (i % cols) * (tile_w + gap), y0 = gap + (i / cols) * (tile_h + gap);
        int known = truth && pred && pred[i] >= 0;
        fill(&cv, x0, y0, tile_w, tile_h,
             known && pred[i] == truth[i] ? GOOD
             : known                      ? BAD
                                          : STRIP);
        fill(&cv, x0 + border, y0 + border, inner, h * s + strip, STRIP);
        float lo = INFINITY, hi = -INFINITY;
        for (size_t k = 0; k < c * plane; k++)
            if (isfinite(img[k])) lo = img[k] < lo ? img[k] : lo, hi = img[k] > hi ? img[k] : hi;
        float range = hi > lo ? hi - lo : 0;
        int ix = x0 + border + (inner - w * s) / 2, iy = y0 + border;
        for (int r = 0; r < h; r++)
            for (int q = 0; q < w; q++) {
                unsigned char px[3];
                for (int ch = 0; ch < 3; ch++) {
                    float v = img[(size_t)(c == 3 ? ch : 0) * plane + (size_t)r * w + q];
                    float u = !isfinite(v) ? 0 : range > 0 ? (v - lo) / range : 0.5f;
                    px[ch] = (unsigned char)lrintf(u * 255);
                }
                fill(&cv, ix + q * s, iy + r * s, s, s, px);
            }
        char a[16], b[16], cap[40];
        label(a, sizeof a, truth ? truth[i] : -1), label(b, sizeof b, pred ? pred[i] : -1);
        snprintf(cap, sizeof cap, "t%s p%s", a, b);
        text(&cv, x0 + border + 2, iy + h * s + 2, cap, FONT_SCALE, WHITE);
    }
    *width = cv.w, *height = cv.h;
    return cv.p;
}

unsigned char *kiln_tb_render_confusion(const int64_t *counts, int k, int *width, int *height) {
    static const unsigned char WHITE[3] = {255, 255, 255}, BLACK[3] = {0, 0, 0},
                               HEAD[3] = {230, 230, 230}, DARK[3] = {8, 48, 107};
    *width = *height = 0;
    if (k < 1 || k > 256 || !counts) {
        kiln_error(KILN_ERR_INVALID,
                   "tensorboard confusion matrix: %d classes (1 to 256 can be drawn)", k);
        return NULL;
    }
    int64_t maxc = 0;
    for (int64_t i = 0; i < (int64_t)k * k; i++) maxc = counts[i] > maxc ? counts[i] : maxc;
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)maxc);
    int digits = (int)strlen(buf);
    snprintf(buf, sizeof buf, "%d", k - 1);
    if ((int)strlen(buf) > digits) digits = (int)strlen(buf);
    if (digits < 3) digits = 3; /* room for "t/p" */
    const int pad = 3 * FONT_SCALE;
    int cw = (4 * digits - 1) * FONT_SCALE + 2 * pad, ch = 5 * FONT_SCALE + 2 * pad;
    canvas cv;
    if (!alloc_canvas(&cv, (k + 1) * cw, (k + 1) * ch, WHITE)) return NULL;
    fill(&cv, 0, 0, cw * (k + 1), ch, HEAD);
    fill(&cv, 0, 0, cw, ch * (k + 1), HEAD);
    text(&cv, (cw - text_width("t/p", FONT_SCALE)) / 2, pad, "t/p", FONT_SCALE, BLACK);
    for (int i = 0; i < k; i++) {
        snprintf(buf, sizeof buf, "%d", i);
        text(&cv, (i + 1) * cw + (cw - text_width(buf, FONT_SCALE)) / 2, pad, buf, FONT_SCALE,
             BLACK); /* predicted */
        text(&cv, (cw - text_width(buf, FONT_SCALE)) / 2, (i + 1) * ch + pad, buf, FONT_SCALE,
             BLACK); /* true */
    }
    for (int i = 0; i < k; i++) {
        int64_t row = 0;
        for (int j = 0; j < k; j++) row += counts[(int64_t)i * k + j];
        for (int j = 0; j < k; j++) {
            int64_t v = counts[(int64_t)i * k + j];
            double f = row > 0 ? (double)v / row : 0;
            unsigned char bg[3];
            for (int q = 0; q < 3; q++) bg[q] = (unsigned char)lrint(255 * (1 - f) + DARK[q] * f);
            int x0 = (j + 1) * cw, y0 = (i + 1) * ch;
            fill(&cv, x0, y0, cw, ch, bg);
            if (v == 0) continue;
            snprintf(buf, sizeof buf, "%lld", (long long)v);
            text(&cv, x0 + (cw - text_width(buf, FONT_SCALE)) / 2, y0 + pad, buf, FONT_SCALE,
                 f > 0.5 ? WHITE : BLACK);
        }
    }
    /* grid lines between the cells */
    static const unsigned char LINE[3] = {200, 200, 200};
    for (int i = 1; i <= k; i++)
        fill(&cv, i * cw, 0, 1, cv.h, LINE), fill(&cv, 0, i * ch, cv.w, 1, LINE);
    *width = cv.w, *height = cv.h;
    return cv.p;
}
