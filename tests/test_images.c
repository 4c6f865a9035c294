/* test_images.c — image decoding and geometry (kiln/image.h) and the image-folder source.
 *
 * References are independent of the code under test: PNG and BMP are written by stb_image_write,
 * GIF by a plain LZW-free encoder written here, JPEG by TurboJPEG's encoder and decoded again by
 * stb_image's own JPEG decoder; resampling is checked against a direct 2-D sum written here from
 * the filter definitions; EXIF orientations against compositions of a plain mirror and a plain
 * 90-degree turn; crops exactly. Bad files (truncated, corrupt, empty, decompression bombs) must
 * give errors that name the file. The folder source: sorted classes, nested and hidden files,
 * extensions in any case, an empty class, manifests (CSV and JSONL), training classes mapped onto
 * validation splits, on_error skip, errors through the loader, the decoded cache, and many
 * threads reading at once.
 */
#include <pthread.h>
#include <stb_image.h>
#include <stb_image_write.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "check.h"

static char tmpdir[256];

static void path_of(char *out, size_t cap, const char *rel) {
    snprintf(out, cap, "%s/%s", tmpdir, rel);
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fwrite(data, 1, n, f) == n);
    fclose(f);
}

/* A test pattern: smooth gradients plus a few edges, h x w x c. */
static uint8_t *pattern(int h, int w, int c, int seed) {
    uint8_t *p = malloc((size_t)h * w * c);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < c; k++) {
                int v = (x * 255 / (w > 1 ? w - 1 : 1) + y * 97 / (h > 1 ? h - 1 : 1) + k * 60 +
                         seed * 13 + ((x / 5 + y / 7) % 2) * 40) %
                        256;
                p[((size_t)y * w + x) * c + k] = (uint8_t)v;
            }
    return p;
}

/* JPEG bytes of pix [h, w, c] (c 1 or 3) at quality q, 4:4:4 for color. */
static uint8_t *jpeg_encode(const uint8_t *pix, int h, int w, int c, int q, size_t *n) {
    tjhandle tj = tjInitCompress();
    unsigned char *buf = NULL;
    unsigned long len = 0;
    int rc = tjCompress2(tj, pix, w, w * c, h, c == 1 ? TJPF_GRAY : TJPF_RGB, &buf, &len,
                         c == 1 ? TJSAMP_GRAY : TJSAMP_444, q, 0);
    CHECK(rc == 0);
    tjDestroy(tj);
    uint8_t *out = malloc(len);
    memcpy(out, buf, len);
    tjFree(buf);
    *n = len;
    return out;
}

/* A GIF of gray pix [h, w]: a 256-entry gray palette, and LZW data written as 9-bit literal
 * codes with a clear code every 254 of them, so the code table never grows past 9 bits. */
static uint8_t *gif_encode(const uint8_t *pix, int h, int w, size_t *n) {
    size_t cap = 1024 + (size_t)h * w * 2;
    uint8_t *g = malloc(cap), *p = g;
    memcpy(p, "GIF89a", 6), p += 6;
    *p++ = (uint8_t)w, *p++ = (uint8_t)(w >> 8), *p++ = (uint8_t)h, *p++ = (uint8_t)(h >> 8);
    *p++ = 0xF7, *p++ = 0, *p++ = 0; /* global table of 256 colors */
    for (int i = 0; i < 256; i++) *p++ = (uint8_t)i, *p++ = (uint8_t)i, *p++ = (uint8_t)i;
    *p++ = ',';
    *p++ = 0, *p++ = 0, *p++ = 0, *p++ = 0;
    *p++ = (uint8_t)w, *p++ = (uint8_t)(w >> 8), *p++ = (uint8_t)h, *p++ = (uint8_t)(h >> 8);
    *p++ = 0;
    *p++ = 8; /* LZW minimum code size */
    uint8_t *bits = calloc((size_t)h * w * 2 + 16, 1);
    size_t nb = 0; /* bits written */
#define PUT(code)                                                                                  \
    do {                                                                                           \
        for (int b_ = 0; b_ < 9; b_++, nb++)                                                       \
            if ((code) >> b_ & 1) bits[nb / 8] |= (uint8_t)(1 << (nb % 8));                        \
    } while (0)
    PUT(256);
    for (int i = 0; i < h * w; i++) {
        if (i && i % 254 == 0) PUT(256);
        PUT(pix[i]);
    }
    PUT(257);
#undef PUT
    size_t nbytes = (nb + 7) / 8;
    for (size_t at = 0; at < nbytes; at += 255) {
        size_t k = nbytes - at < 255 ? nbytes - at : 255;
        *p++ = (uint8_t)k;
        memcpy(p, bits + at, k), p += k;
    }
    *p++ = 0;   /* block terminator */
    *p++ = ';'; /* trailer */
    free(bits);
    *n = (size_t)(p - g);
    return g;
}

static void mem_writer(void *ctx, void *data, int size) {
    uint8_t **pp = ctx; /* pp[0]: buffer start; pp[1]: write pointer */
    memcpy(pp[1], data, (size_t)size);
    pp[1] += size;
}

static uint8_t *png_encode(const uint8_t *pix, int h, int w, int c, size_t *n) {
    uint8_t *buf = malloc((size_t)h * w * c * 2 + 4096), *pp[2] = {buf, buf};
    CHECK(stbi_write_png_to_func(mem_writer, pp, w, h, c, pix, w * c));
    *n = (size_t)(pp[1] - buf);
    return buf;
}

static uint8_t *bmp_encode(const uint8_t *pix, int h, int w, int c, size_t *n) {
    uint8_t *buf = malloc((size_t)h * (w + 4) * 4 + 4096), *pp[2] = {buf, buf};
    CHECK(stbi_write_bmp_to_func(mem_writer, pp, w, h, c, pix));
    *n = (size_t)(pp[1] - buf);
    return buf;
}

static int max_diff(const uint8_t *a, const uint8_t *b, size_t n) {
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        m = d > m ? d : m;
    }
    return m;
}

static uint8_t luma(const uint8_t *p) {
    return (uint8_t)((299 * p[0] + 587 * p[1] + 114 * p[2] + 500) / 1000);
}

/* ---- decoding ---- */

static void test_sniff_and_extensions(void) {
    CHECK(kiln_image_sniff("\xFF\xD8\xFF\xE0", 4) == KILN_IMAGE_JPEG);
    CHECK(kiln_image_sniff("\x89PNG\r\n\x1a\n", 8) == KILN_IMAGE_PNG);
    CHECK(kiln_image_sniff("GIF89a", 6) == KILN_IMAGE_GIF);
    CHECK(kiln_image_sniff("BM", 2) == KILN_IMAGE_BMP);
    CHECK(kiln_image_sniff("hello", 5) == KILN_IMAGE_UNKNOWN);
    CHECK(kiln_image_has_extension("a.JPG") && kiln_image_has_extension("b.jpeg"));
    CHECK(kiln_image_has_extension("c.Png") && kiln_image_has_extension("d.bmp"));
    CHECK(kiln_image_has_extension("e.GIF") && !kiln_image_has_extension("f.txt"));
    CHECK(!kiln_image_has_extension(".jpg") && !kiln_image_has_extension("jpg"));
}

static void test_decode_png_bmp_gif(void) {
    kiln_image_decoder *d = NULL;
    CHECK_OK(kiln_image_decoder_new(&d));
    if (!d) return;
    int h = 13, w = 17;
    uint8_t *rgb = pattern(h, w, 3, 1), *gray = pattern(h, w, 1, 2);
    uint8_t *rgba = pattern(h, w, 4, 3);
    for (int fmt = 0; fmt < 2; fmt++) {
        for (int c = 1; c <= 4; c++) {
            if (c == 2) continue;
            const uint8_t *src = c == 1 ? gray : c == 3 ? rgb : rgba;
            if (fmt == 1 && c == 4) continue; /* stb writes BMP without alpha for c = 4? skip */
            size_t n;
            uint8_t *enc = fmt ? bmp_encode(src, h, w, c, &n) : png_encode(src, h, w, c, &n);
            for (int want = 1; want <= 3; want += 2) {
                kiln_image img;
                kiln_image_decode_opts o = {.channels = want};
                CHECK_OK(kiln_image_decode(d, enc, n, "x", &o, &img));
                CHECK(img.h == h && img.w == w && img.c == want);
                int bad = 0;
                for (int y = 0; y < h; y++)
                    for (int x = 0; x < w; x++) {
                        const uint8_t *s = src + ((size_t)y * w + x) * c;
                        const uint8_t *g = img.data + y * img.stride + x * want;
                        if (want == 1)
                            bad += g[0] != (c == 1 ? s[0] : luma(s));
                        else
                            for (int k = 0; k < 3; k++) bad += g[k] != (c == 1 ? s[0] : s[k]);
                    }
                CHECK_MSG(bad == 0, "%s c=%d -> %d: %d wrong values", fmt ? "bmp" : "png", c, want,
                          bad);
            }
            free(enc);
        }
    }
    size_t n;
    uint8_t *gif = gif_encode(gray, h, w, &n);
    kiln_image img;
    kiln_image_decode_opts o = {.channels = 1};
    CHECK_OK(kiln_image_decode(d, gif, n, "g.gif", &o, &img));
    CHECK(img.h == h && img.w == w && img.c == 1);
    if (img.h == h && img.w == w) {
        int bad = 0;
        for (int y = 0; y < h; y++)
            bad += memcmp(img.data + y * img.stride, gray + y * w, (size_t)w) != 0;
        CHECK_MSG(bad == 0, "gif: %d rows differ", bad);
    }
    free(gif), free(rgb), free(gray), free(rgba);
    kiln_image_decoder_free(d);
}

static void test_decode_jpeg(void) {
    kiln_image_decoder *d = NULL;
    CHECK_OK(kiln_image_decoder_new(&d));
    if (!d) return;
    int h = 24, w = 40;
    for (int c = 1; c <= 3; c += 2) {
        uint8_t *src = pattern(h, w, c, 4);
        size_t n;
        uint8_t *jpg = jpeg_encode(src, h, w, c, 95, &n);
        /* stb_image's own JPEG decoder is the reference */
        int rw, rh, rc;
        uint8_t *ref = stbi_load_from_memory(jpg, (int)n, &rw, &rh, &rc, c);
        CHECK(ref && rw == w && rh == h);
        kiln_image img;
        kiln_image_decode_opts o = {.channels = c};
        CHECK_OK(kiln_image_decode(d, jpg, n, "p.jpg", &o, &img));
        CHECK(img.h == h && img.w == w && img.c == c && img.stride == (ptrdiff_t)w * c);
        if (ref && img.h == h && img.w == w) {
            int md = max_diff(img.data, ref, (size_t)h * w * c);
            CHECK_MSG(md <= 3, "c=%d: max diff vs stb's JPEG decoder %d", c, md);
            int mo = max_diff(img.data, src, (size_t)h * w * c);
            CHECK_MSG(mo <= 40, "c=%d: max diff vs the original %d", c, mo);
        }
        /* the other channel count: gray from color is BT.601 luma of the decoded color */
        kiln_image_decode_opts o2 = {.channels = 4 - c};
        kiln_image img2;
        CHECK_OK(kiln_image_decode(d, jpg, n, "p.jpg", &o2, &img2));
        CHECK(img2.c == 4 - c && img2.h == h);
        if (ref && c == 3 && img2.h == h) {
            int bad = 0;
            for (int i = 0; i < h * w; i++) bad += abs((int)img2.data[i] - luma(ref + 3 * i)) > 3;
            CHECK_MSG(bad == 0, "%d gray pixels off the luma of the color decode", bad);
        }
        if (ref && c == 1 && img2.h == h) {
            int bad = 0;
            for (int i = 0; i < h * w; i++)
                bad += img2.data[3 * i] != img2.data[3 * i + 2] ||
                       abs((int)img2.data[3 * i] - ref[i]) > 3;
            CHECK_MSG(bad == 0, "%d rgb pixels off the gray decode", bad);
        }
        stbi_image_free(ref);
        free(jpg), free(src);
    }
    /* DCT scaling: a 64 x 96 JPEG asked for a shorter side >= 16 decodes at 1/4 */
    uint8_t *big = pattern(64, 96, 1, 5);
    size_t n;
    uint8_t *jpg = jpeg_encode(big, 64, 96, 1, 95, &n);
    kiln_image img;
    kiln_image_decode_opts o = {.channels = 1, .min_short = 16};
    CHECK_OK(kiln_image_decode(d, jpg, n, "big.jpg", &o, &img));
    CHECK_MSG(img.h == 16 && img.w == 24, "scaled to %d x %d", img.h, img.w);
    o.min_short = 17; /* 1/4 is too small now: 1/2 */
    CHECK_OK(kiln_image_decode(d, jpg, n, "big.jpg", &o, &img));
    CHECK_MSG(img.h == 32 && img.w == 48, "scaled to %d x %d", img.h, img.w);
    o = (kiln_image_decode_opts){.channels = 1, .min_h = 9, .min_w = 12};
    CHECK_OK(kiln_image_decode(d, jpg, n, "big.jpg", &o, &img));
    CHECK_MSG(img.h == 16 && img.w == 24, "scaled to %d x %d", img.h, img.w);
    o = (kiln_image_decode_opts){.channels = 1, .min_h = 8, .min_w = 12};
    CHECK_OK(kiln_image_decode(d, jpg, n, "big.jpg", &o, &img));
    CHECK_MSG(img.h == 8 && img.w == 12, "scaled to %d x %d", img.h, img.w);
    free(jpg), free(big);
    kiln_image_decoder_free(d);
}

/* ---- EXIF orientation ---- */

/* The APP1 segment: "Exif\0\0", a TIFF header (II or MM), IFD0 with two entries (ImageWidth
 * first, then Orientation = o). */
static size_t app1(uint8_t *out, int o, int little) {
    uint8_t t[64];
    size_t n = 0;
#define W16(v)                                                                                     \
    (little ? (t[n] = (uint8_t)(v), t[n + 1] = (uint8_t)((v) >> 8))                                \
            : (t[n] = (uint8_t)((v) >> 8), t[n + 1] = (uint8_t)(v))),                              \
        n += 2
#define W32(v)                                                                                     \
    (little ? (W16((v)&0xFFFF), W16((uint32_t)(v) >> 16))                                          \
            : (W16((uint32_t)(v) >> 16), W16((v)&0xFFFF)))
    t[n++] = little ? 'I' : 'M', t[n++] = little ? 'I' : 'M';
    W16(42);
    W32(8);
    W16(2);                                      /* entries */
    W16(0x0100), W16(4), W32(1), W32(77);        /* ImageWidth, LONG */
    W16(0x0112), W16(3), W32(1), W16(o), W16(0); /* Orientation, SHORT, value then padding */
    W32(0);                                      /* next IFD */
#undef W16
#undef W32
    size_t seg = 2 + 6 + n;
    out[0] = 0xFF, out[1] = 0xE1, out[2] = (uint8_t)(seg >> 8), out[3] = (uint8_t)seg;
    memcpy(out + 4, "Exif\0\0", 6);
    memcpy(out + 10, t, n);
    return 2 + seg;
}

/* Reference transforms (HWC, c channels): mirror left-right, and a 90-degree clockwise turn. */
static uint8_t *ref_mirror(const uint8_t *s, int h, int w, int c) {
    uint8_t *d = malloc((size_t)h * w * c);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            memcpy(d + (y * w + x) * c, s + (y * w + (w - 1 - x)) * c, (size_t)c);
    return d;
}
static uint8_t *ref_cw(const uint8_t *s, int *h, int *w, int c) { /* new h = old w */
    int oh = *h, ow = *w;
    uint8_t *d = malloc((size_t)oh * ow * c);
    /* the clockwise turn puts the old bottom-left at the new top-left: new (y, x) = old (oh-1-x, y)
     */
    for (int y = 0; y < ow; y++)
        for (int x = 0; x < oh; x++)
            memcpy(d + (y * oh + x) * c, s + ((oh - 1 - x) * ow + y) * c, (size_t)c);
    *h = ow, *w = oh;
    return d;
}

static void test_exif_orientation(void) {
    kiln_image_decoder *d = NULL;
    CHECK_OK(kiln_image_decoder_new(&d));
    if (!d) return;
    int h = 16, w = 24; /* not square, so turns show */
    uint8_t *src = pattern(h, w, 3, 6);
    size_t n;
    uint8_t *jpg = jpeg_encode(src, h, w, 3, 95, &n);
    kiln_image base;
    kiln_image_decode_opts o = {.channels = 3};
    CHECK_OK(kiln_image_decode(d, jpg, n, "base.jpg", &o, &base));
    uint8_t *plain = malloc((size_t)h * w * 3);
    memcpy(plain, base.data, (size_t)h * w * 3);
    CHECK(kiln_image_exif_orientation(jpg, n) == 1);
    uint8_t *with = malloc(n + 128);
    for (int little = 0; little < 2; little++)
        for (int ori = 1; ori <= 8; ori++) {
            size_t k = app1(with + 2, ori, little);
            with[0] = 0xFF, with[1] = 0xD8;
            memcpy(with + 2 + k, jpg + 2, n - 2); /* APP1 right after SOI */
            size_t m = n + k;
            CHECK(kiln_image_exif_orientation(with, m) == ori);
            /* the expected picture, from the plain primitives */
            int eh = h, ew = w;
            uint8_t *e = malloc((size_t)h * w * 3), *t;
            memcpy(e, plain, (size_t)h * w * 3);
            int turns = ori == 3 || ori == 4   ? 2
                        : ori == 5 || ori == 6 ? 1
                        : ori == 7 || ori == 8 ? 3
                                               : 0;
            for (int r = 0; r < turns; r++) t = ref_cw(e, &eh, &ew, 3), free(e), e = t;
            if (ori == 2 || ori == 4 || ori == 5 || ori == 7)
                t = ref_mirror(e, eh, ew, 3), free(e), e = t;
            kiln_image img;
            CHECK_OK(kiln_image_decode(d, with, m, "o.jpg", &o, &img));
            CHECK_MSG(img.h == eh && img.w == ew, "orientation %d: %d x %d, want %d x %d", ori,
                      img.h, img.w, eh, ew);
            if (img.h == eh && img.w == ew)
                CHECK_MSG(max_diff(img.data, e, (size_t)eh * ew * 3) == 0, "orientation %d (%s)",
                          ori, little ? "II" : "MM");
            kiln_image_decode_opts no = {.channels = 3, .no_orientation = 1};
            CHECK_OK(kiln_image_decode(d, with, m, "o.jpg", &no, &img));
            CHECK(img.h == h && img.w == w && max_diff(img.data, plain, (size_t)h * w * 3) == 0);
            free(e);
        }
    /* damaged EXIF never reads outside the data: every cut of the segment gives 1 or the value */
    size_t k = app1(with + 2, 6, 1);
    with[0] = 0xFF, with[1] = 0xD8;
    for (size_t cut = 0; cut < k + 2; cut++) {
        int v = kiln_image_exif_orientation(with, cut);
        CHECK(v >= 1 && v <= 8);
    }
    with[2 + 2] = 0xFF; /* a segment length past the end */
    CHECK(kiln_image_exif_orientation(with, k + 2) == 1);
    free(with), free(plain), free(jpg), free(src);
    kiln_image_decoder_free(d);
}

/* ---- bad files ---- */

/* The offset of the first segment with marker m (walking the segment lengths), or 0. */
static size_t jpeg_segment(const uint8_t *b, size_t n, uint8_t m) {
    size_t i = 2;
    while (i + 4 <= n && b[i] == 0xFF) {
        if (b[i + 1] == m) return i;
        if (b[i + 1] == 0xDA) return 0;
        i += 2 + ((size_t)b[i + 2] << 8 | b[i + 3]);
    }
    return 0;
}

static void test_bad_files(void) {
    kiln_image_decoder *d = NULL;
    CHECK_OK(kiln_image_decoder_new(&d));
    if (!d) return;
    int h = 32, w = 32;
    uint8_t *g = pattern(h, w, 1, 7), *rgb = pattern(h, w, 3, 7);
    size_t nj, np, nb, ng;
    uint8_t *jpg = jpeg_encode(rgb, h, w, 3, 90, &nj), *png = png_encode(rgb, h, w, 3, &np);
    uint8_t *bmp = bmp_encode(rgb, h, w, 3, &nb), *gif = gif_encode(g, h, w, &ng);
    struct {
        const char *name;
        uint8_t *data;
        size_t n;
    } f[] = {
        {"cut.jpg", jpg, nj}, {"cut.png", png, np}, {"cut.bmp", bmp, nb}, {"cut.gif", gif, ng}};
    kiln_image_decode_opts o = {.channels = 3};
    kiln_image img;
    for (int i = 0; i < 4; i++) {
        CHECK_OK(kiln_image_decode(d, f[i].data, f[i].n, f[i].name, &o, &img));
        /* cut at several places: always an error naming the file, never a crash */
        size_t cuts[] = {f[i].n / 2, f[i].n * 3 / 4, f[i].n - 8, 20, 3};
        for (int c = 0; c < 5; c++) {
            kiln_status st = kiln_image_decode(d, f[i].data, cuts[c], f[i].name, &o, &img);
            CHECK_MSG(st == KILN_ERR_FORMAT, "%s cut to %zu bytes: %s", f[i].name, cuts[c],
                      kiln_status_name(st));
            CHECK_MSG(strstr(kiln_last_error(), f[i].name) != NULL, "%s", kiln_last_error());
        }
    }
    /* stray markers in the middle of the JPEG's entropy-coded data, and a bad Huffman table */
    uint8_t *bad = malloc(nj);
    memcpy(bad, jpg, nj);
    for (size_t j = 0; j < 16; j += 2)
        bad[nj / 2 + j] = 0xFF, bad[nj / 2 + j + 1] = (uint8_t)(0xD0 + j / 2);
    kiln_status st = kiln_image_decode(d, bad, nj, "garbled.jpg", &o, &img);
    CHECK_MSG(st == KILN_ERR_FORMAT, "garbled: %s", kiln_status_name(st));
    CHECK_ERR_HAS("garbled.jpg: corrupt or truncated JPEG");
    memcpy(bad, jpg, nj);
    size_t dht = jpeg_segment(bad, nj, 0xC4); /* DHT: a code count past the table */
    CHECK(dht > 0);
    if (dht) bad[dht + 5] = 0xFF;
    st = kiln_image_decode(d, bad, nj, "huffman.jpg", &o, &img);
    CHECK_MSG(st == KILN_ERR_FORMAT, "bad DHT: %s", kiln_status_name(st));
    CHECK_ERR_HAS("huffman.jpg");
    CHECK_OK(kiln_image_decode(d, jpg, nj, "good.jpg", &o, &img)); /* the decoder recovers */
    free(bad);
    CHECK(kiln_image_decode(d, "", 0, "empty.png", &o, &img) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("empty.png");
    CHECK(kiln_image_decode(d, "just some text", 14, "notes.jpg", &o, &img) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("notes.jpg: not a JPEG, PNG, BMP or GIF");
    /* decompression bombs: headers that claim 60000 x 60000 pixels */
    uint8_t *bomb = malloc(np);
    memcpy(bomb, png, np);
    bomb[16] = 0, bomb[17] = 0, bomb[18] = 0xEA, bomb[19] = 0x60; /* IHDR width */
    bomb[20] = 0, bomb[21] = 0, bomb[22] = 0xEA, bomb[23] = 0x60; /* IHDR height */
    CHECK(kiln_image_decode(d, bomb, np, "bomb.png", &o, &img) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("bomb.png");
    CHECK_ERR_HAS("over the limit");
    free(bomb);
    bomb = malloc(nj);
    memcpy(bomb, jpg, nj);
    size_t sof = jpeg_segment(bomb, nj, 0xC0); /* SOF0: length, precision, height, width */
    CHECK(sof > 0);
    if (sof) bomb[sof + 5] = 0xEA, bomb[sof + 6] = 0x60, bomb[sof + 7] = 0xEA, bomb[sof + 8] = 0x60;
    CHECK(kiln_image_decode(d, bomb, nj, "bomb.jpg", &o, &img) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("bomb.jpg");
    CHECK_ERR_HAS("over the limit");
    free(bomb);
    /* files: missing, and a folder */
    kiln_image_spec s = {.channels = 1, .out_h = 4, .out_w = 4};
    uint8_t out[16];
    char p[512];
    path_of(p, sizeof p, "no-such.png");
    CHECK(kiln_image_load(d, p, &s, out) == KILN_ERR_IO);
    CHECK_ERR_HAS("no-such.png");
    CHECK(kiln_image_load(d, tmpdir, &s, out) == KILN_ERR_IO);
    free(jpg), free(png), free(bmp), free(gif), free(g), free(rgb);
    kiln_image_decoder_free(d);
}

/* Mutated files (bytes flipped, cut, repeated) through every decoder: errors are fine, crashes
 * and reads outside the data are not (run under ASan to see those). */
static void test_fuzz_decoders(void) {
    kiln_image_decoder *d = NULL;
    CHECK_OK(kiln_image_decoder_new(&d));
    if (!d) return;
    int h = 19, w = 23;
    uint8_t *rgb = pattern(h, w, 3, 12), *g = pattern(h, w, 1, 12);
    size_t n[5];
    uint8_t *f[5] = {jpeg_encode(rgb, h, w, 3, 80, &n[0]), png_encode(rgb, h, w, 3, &n[1]),
                     bmp_encode(rgb, h, w, 3, &n[2]), gif_encode(g, h, w, &n[3]),
                     jpeg_encode(g, h, w, 1, 80, &n[4])};
    int ok = 0, failed = 0;
    for (int k = 0; k < 5; k++) {
        uint8_t *m = malloc(n[k] * 2 + 16);
        for (uint64_t it = 0; it < 300; it++) {
            memcpy(m, f[k], n[k]);
            size_t len = n[k];
            int edits = 1 + (int)kiln_rng_below(5, k, it * 8, 6);
            for (int e = 0; e < edits; e++) {
                size_t at = kiln_rng_below(5, k, it * 8 + 1 + e, (uint32_t)len);
                switch (kiln_rng_below(6, k, it * 8 + e, 4)) {
                case 0:
                    m[at] ^= (uint8_t)(1u << kiln_rng_below(7, k, it * 8 + e, 8));
                    break;
                case 1:
                    m[at] = (uint8_t)kiln_rng_below(8, k, it * 8 + e, 256);
                    break;
                case 2:
                    len = at > 2 ? at : len;
                    break; /* cut */
                default:   /* repeat a stretch */
                    if (len + 16 <= n[k] * 2 + 16 && at + 16 <= len) {
                        memmove(m + at + 16, m + at, len - at);
                        len += 16;
                    }
                }
            }
            kiln_image img;
            kiln_image_decode_opts o = {.channels = 1 + 2 * (int)(it % 2),
                                        .min_short = (int)(it % 3) * 4};
            if (kiln_image_decode(d, m, len, "fuzz", &o, &img) == KILN_OK) {
                ok++;
                CHECK(img.h >= 1 && img.w >= 1 && img.h <= KILN_IMAGE_MAX_SIDE);
                CHECK((int64_t)img.h * img.w <= KILN_IMAGE_MAX_PIXELS);
            } else {
                failed++;
                CHECK(strstr(kiln_last_error(), "fuzz") != NULL);
            }
            CHECK(kiln_image_exif_orientation(m, len) >= 1);
        }
        free(m), free(f[k]);
    }
    CHECK(ok > 0 && failed > 0);
    free(rgb), free(g);
    kiln_image_decoder_free(d);
}

/* ---- geometry ---- */

static double ref_filter(int area, double x) {
    if (area) return x > -0.5 && x <= 0.5 ? 1 : 0;
    x = x < 0 ? -x : x;
    return x < 1 ? 1 - x : 0;
}

/* Weights of output pixel i over all in inputs, from the definition (normalized). */
static void ref_weights(int in, int out, int i, int area, double *wt) {
    double scale = (double)in / out, fs = scale > 1 ? scale : 1;
    int box = area && scale > 1;
    double center = (i + 0.5) * scale, sum = 0;
    for (int j = 0; j < in; j++) {
        double v = ref_filter(box, (j + 0.5 - center) / fs);
        /* the support: only inputs whose pixel overlaps the stretched filter */
        wt[j] = v, sum += v;
    }
    for (int j = 0; j < in; j++) wt[j] /= sum;
}

/* A direct 2-D resample of src [h, w, c] to [oh, ow, c]. */
static uint8_t *ref_resize(const uint8_t *src, int h, int w, int c, int oh, int ow, int area) {
    uint8_t *d = malloc((size_t)oh * ow * c);
    double *wy = malloc(sizeof(double) * h), *wx = malloc(sizeof(double) * w);
    for (int y = 0; y < oh; y++) {
        ref_weights(h, oh, y, area, wy);
        for (int x = 0; x < ow; x++) {
            ref_weights(w, ow, x, area, wx);
            for (int k = 0; k < c; k++) {
                double acc = 0;
                for (int j = 0; j < h; j++)
                    for (int i = 0; i < w; i++)
                        acc += wy[j] * wx[i] * src[((size_t)j * w + i) * c + k];
                acc = acc < 0 ? 0 : acc > 255 ? 255 : acc;
                d[((size_t)y * ow + x) * c + k] = (uint8_t)(acc + 0.5);
            }
        }
    }
    free(wy), free(wx);
    return d;
}

static void test_resize(void) {
    struct {
        int h, w, oh, ow;
    } cases[] = {{20, 30, 10, 15}, {20, 30, 7, 11}, {9, 13, 20, 27}, {31, 17, 31, 5},
                 {28, 28, 14, 14}, {40, 25, 9, 25}, {5, 6, 12, 3},   {64, 48, 8, 6}};
    for (int cse = 0; cse < (int)(sizeof cases / sizeof *cases); cse++)
        for (int c = 1; c <= 3; c += 2)
            for (int area = 0; area < 2; area++) {
                int h = cases[cse].h, w = cases[cse].w, oh = cases[cse].oh, ow = cases[cse].ow;
                uint8_t *src = pattern(h, w, c, cse), *out = malloc((size_t)oh * ow * c);
                kiln_image s = {h, w, c, (ptrdiff_t)w * c, src}, dd = {oh, ow, 0, 0, out};
                CHECK_OK(
                    kiln_image_resize(&s, &dd, area ? KILN_INTERP_AREA : KILN_INTERP_BILINEAR));
                uint8_t *ref = ref_resize(src, h, w, c, oh, ow, area);
                int md = max_diff(out, ref, (size_t)oh * ow * c);
                CHECK_MSG(md <= 1, "%dx%dx%d -> %dx%d %s: max diff %d", h, w, c, oh, ow,
                          area ? "area" : "bilinear", md);
                free(src), free(out), free(ref);
            }
    /* area, shrinking by 2: the mean of each 2 x 2 block */
    uint8_t *src = pattern(8, 10, 1, 9), out[20];
    kiln_image s = {8, 10, 1, 10, src}, dd = {4, 5, 0, 0, out};
    CHECK_OK(kiln_image_resize(&s, &dd, KILN_INTERP_AREA));
    int bad = 0;
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 5; x++) {
            int sum = src[2 * y * 10 + 2 * x] + src[2 * y * 10 + 2 * x + 1] +
                      src[(2 * y + 1) * 10 + 2 * x] + src[(2 * y + 1) * 10 + 2 * x + 1];
            bad += abs(out[y * 5 + x] * 4 - sum) > 2;
        }
    CHECK_MSG(bad == 0, "%d blocks off their mean", bad);
    /* a constant image stays constant, whatever the sizes */
    memset(src, 77, 80);
    uint8_t big[33 * 7];
    kiln_image up = {33, 7, 0, 0, big};
    CHECK_OK(kiln_image_resize(&s, &up, KILN_INTERP_BILINEAR));
    bad = 0;
    for (int i = 0; i < 33 * 7; i++) bad += big[i] != 77;
    CHECK(bad == 0);
    free(src);
}

static void test_crop_and_chw(void) {
    int h = 9, w = 12, c = 3;
    uint8_t *src = pattern(h, w, c, 10);
    kiln_image s = {h, w, c, (ptrdiff_t)w * c, src}, v;
    CHECK_OK(kiln_image_center_crop(&s, 4, 7, &v));
    CHECK(v.h == 4 && v.w == 7 && v.stride == s.stride);
    uint8_t chw[3 * 4 * 7];
    kiln_image_to_chw(&v, chw);
    int bad = 0, top = (9 - 4) / 2, left = (12 - 7) / 2; /* 2, 2 */
    for (int k = 0; k < 3; k++)
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 7; x++)
                bad += chw[(k * 4 + y) * 7 + x] != src[((top + y) * w + left + x) * c + k];
    CHECK(bad == 0);
    CHECK(kiln_image_center_crop(&s, 10, 7, &v) == KILN_ERR_SHAPE);
    free(src);
}

static void test_pipeline(void) {
    kiln_image_decoder *d = NULL;
    CHECK_OK(kiln_image_decoder_new(&d));
    if (!d) return;
    /* a 30 x 50 PNG: shorter side to 12 (-> 12 x 20), center crop 10 x 10, gray */
    int h = 30, w = 50;
    uint8_t *rgb = pattern(h, w, 3, 11), *gray = malloc((size_t)h * w);
    for (int i = 0; i < h * w; i++) gray[i] = luma(rgb + 3 * i);
    size_t n;
    uint8_t *png = png_encode(rgb, h, w, 3, &n);
    kiln_image_spec s = {.channels = 1,
                         .resize_short = 12,
                         .interp = KILN_INTERP_AREA,
                         .crop_h = 10,
                         .crop_w = 10,
                         .out_h = 10,
                         .out_w = 10};
    CHECK_OK(kiln_image_spec_check(&s));
    uint8_t out[100];
    CHECK_OK(kiln_image_process(d, png, n, "p.png", &s, out));
    uint8_t *ref = ref_resize(gray, h, w, 1, 12, 20, 1);
    int md = 0;
    for (int y = 0; y < 10; y++)
        for (int x = 0; x < 10; x++) {
            int dv = abs((int)out[y * 10 + x] - ref[(1 + y) * 20 + 5 + x]);
            md = dv > md ? dv : md;
        }
    CHECK_MSG(md <= 1, "pipeline: max diff %d", md);
    free(ref);
    /* exact resize to [8, 16], rgb, bilinear: CHW of the reference */
    kiln_image_spec e = {.channels = 3, .resize_h = 8, .resize_w = 16, .out_h = 8, .out_w = 16};
    uint8_t chw[3 * 8 * 16];
    CHECK_OK(kiln_image_process(d, png, n, "p.png", &e, chw));
    ref = ref_resize(rgb, h, w, 3, 8, 16, 0);
    md = 0;
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 8 * 16; i++) {
            int dv = abs((int)chw[k * 128 + i] - ref[3 * i + k]);
            md = dv > md ? dv : md;
        }
    CHECK_MSG(md <= 1, "pipeline rgb: max diff %d", md);
    free(ref);
    /* no resize: the image must already have the size */
    kiln_image_spec plain = {.channels = 1, .out_h = 28, .out_w = 28};
    CHECK(kiln_image_process(d, png, n, "p.png", &plain, out) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("p.png: the image is 30 x 50");
    /* specs that cannot give the output size */
    kiln_image_spec bad = {.channels = 1, .crop_h = 12, .crop_w = 12, .out_h = 10, .out_w = 10};
    CHECK(kiln_image_spec_check(&bad) == KILN_ERR_SHAPE);
    bad = (kiln_image_spec){
        .channels = 1, .resize_short = 8, .crop_h = 10, .crop_w = 10, .out_h = 10, .out_w = 10};
    CHECK(kiln_image_spec_check(&bad) == KILN_ERR_SHAPE);
    bad = (kiln_image_spec){.channels = 2, .out_h = 10, .out_w = 10};
    CHECK(kiln_image_spec_check(&bad) == KILN_ERR_INVALID);
    free(png), free(rgb), free(gray);
    kiln_image_decoder_free(d);
}

/* ---- the folder source ---- */

static void mkdirs(const char *rel) {
    char p[512];
    path_of(p, sizeof p, rel);
    mkdir(p, 0755);
}

/* A 4 x 4 gray image whose pixels all equal v, in the format the name's extension says. */
static void put_image(const char *rel, uint8_t v) {
    uint8_t pix[16];
    memset(pix, v, 16);
    size_t n = 0;
    const char *dot = strrchr(rel, '.');
    uint8_t *b = !strcasecmp(dot, ".png")   ? png_encode(pix, 4, 4, 1, &n)
                 : !strcasecmp(dot, ".bmp") ? bmp_encode(pix, 4, 4, 1, &n)
                 : !strcasecmp(dot, ".gif") ? gif_encode(pix, 4, 4, &n)
                                            : jpeg_encode(pix, 4, 4, 1, 100, &n);
    char p[512];
    path_of(p, sizeof p, rel);
    write_file(p, b, n);
    free(b);
}

static kiln_image_spec SPEC4 = {.channels = 1, .out_h = 4, .out_w = 4};

static void test_folder_source(void) {
    mkdirs("tree"), mkdirs("tree/b_cls"), mkdirs("tree/a_cls"), mkdirs("tree/a_cls/sub");
    mkdirs("tree/c_empty"), mkdirs("tree/.hidden");
    put_image("tree/b_cls/1.png", 10);
    put_image("tree/b_cls/0.BMP", 20);
    put_image("tree/a_cls/z.JPG", 30);
    put_image("tree/a_cls/sub/y.jpeg", 40);
    put_image("tree/a_cls/m.Gif", 50);
    put_image("tree/.hidden/h.png", 60);
    put_image("tree/a_cls/.dot.png", 70);
    put_image("tree/top.png", 80); /* files at the root are not a class */
    char p[512];
    path_of(p, sizeof p, "tree/a_cls/notes.txt");
    write_file(p, "not an image", 12);
    char root[512];
    path_of(root, sizeof root, "tree");
    kiln_image_source_options o = {.root = root, .spec = SPEC4};
    kiln_dataset *ds = NULL;
    CHECK_OK(kiln_data_load_images(&o, &ds));
    if (!ds) return;
    CHECK(kiln_dataset_is_source(ds));
    CHECK(kiln_dataset_rows(ds) == 5);
    CHECK(kiln_dataset_num_classes(ds) == 3);
    CHECK(!strcmp(kiln_dataset_class_name(ds, 0), "a_cls"));
    CHECK(!strcmp(kiln_dataset_class_name(ds, 1), "b_cls"));
    CHECK(!strcmp(kiln_dataset_class_name(ds, 2), "c_empty"));
    /* rows class by class, paths in byte order: a_cls/m.Gif, a_cls/sub/y.jpeg, a_cls/z.JPG,
     * b_cls/0.BMP, b_cls/1.png */
    const char *want[] = {"a_cls/m.Gif", "a_cls/sub/y.jpeg", "a_cls/z.JPG", "b_cls/0.BMP",
                          "b_cls/1.png"};
    float vals[] = {50, 40, 30, 20, 10};
    int labs[] = {0, 0, 0, 1, 1};
    for (int i = 0; i < 5; i++) {
        const char *nm = kiln_dataset_row_name(ds, i);
        CHECK_MSG(nm && strstr(nm, want[i]), "row %d is %s, want %s", i, nm ? nm : "-", want[i]);
        float x[16];
        int32_t y = -1;
        CHECK_OK(kiln_dataset_get(ds, i, x, &y));
        CHECK_MSG(y == labs[i], "row %d label %d", i, y);
        CHECK_NEAR(x[0], vals[i], 1);
        CHECK_NEAR(x[15], vals[i], 1);
    }
    kiln_shape xs = kiln_dataset_x_shape(ds);
    CHECK(xs.ndim == 3 && xs.dims[0] == 1 && xs.dims[1] == 4 && xs.dims[2] == 4);
    CHECK(kiln_dataset_x_dtype(ds) == KILN_U8);
    /* the same classes, given: a split with a subset of the folders maps onto them */
    mkdirs("val"), mkdirs("val/b_cls");
    put_image("val/b_cls/q.png", 90);
    const char *cls[] = {"a_cls", "b_cls", "c_empty"};
    char vroot[512];
    path_of(vroot, sizeof vroot, "val");
    kiln_image_source_options vo = {.root = vroot, .spec = SPEC4, .classes = cls, .num_classes = 3};
    kiln_dataset *v = NULL;
    CHECK_OK(kiln_data_load_images(&vo, &v));
    if (v) {
        int32_t y = -1;
        CHECK_OK(kiln_dataset_get(v, 0, NULL, &y));
        CHECK(y == 1 && kiln_dataset_num_classes(v) == 3);
        CHECK(!strcmp(kiln_dataset_class_name(v, 2), "c_empty"));
        kiln_dataset_free(v);
    }
    mkdirs("val/zebra");
    CHECK(kiln_data_load_images(&vo, &v) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("class folder 'zebra' is not one of the 3 classes");
    /* empty trees */
    mkdirs("none"), mkdirs("none/cls");
    path_of(p, sizeof p, "none");
    o.root = p;
    CHECK(kiln_data_load_images(&o, &v) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("no image files");
    path_of(p, sizeof p, "none/cls");
    CHECK(kiln_data_load_images(&o, &v) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("no class folders");
    path_of(p, sizeof p, "missing");
    CHECK(kiln_data_load_images(&o, &v) == KILN_ERR_NOTFOUND);
    CHECK_ERR_HAS("missing");
    kiln_dataset_free(ds);
}

static void test_manifests(void) {
    mkdirs("man"), mkdirs("man/img");
    put_image("man/img/a.png", 11);
    put_image("man/img/b.png", 22);
    put_image("man/img/c.jpg", 33);
    char abs_c[512], p[512];
    path_of(abs_c, sizeof abs_c, "man/img/c.jpg");
    char csv[1024];
    snprintf(csv, sizeof csv, "id,path,label\n1,img/b.png,dog\n2,\"img/a.png\",cat\n3,%s,dog\n",
             abs_c);
    path_of(p, sizeof p, "man/list.csv");
    write_file(p, csv, strlen(csv));
    kiln_image_source_options o = {.manifest = p, .spec = SPEC4};
    kiln_dataset *ds = NULL;
    CHECK_OK(kiln_data_load_images(&o, &ds));
    if (ds) {
        CHECK(kiln_dataset_rows(ds) == 3 && kiln_dataset_num_classes(ds) == 2);
        CHECK(!strcmp(kiln_dataset_class_name(ds, 0), "cat"));
        int32_t y[3];
        float x[3][16];
        for (int i = 0; i < 3; i++) CHECK_OK(kiln_dataset_get(ds, i, x[i], &y[i]));
        CHECK(y[0] == 1 && y[1] == 0 && y[2] == 1);
        CHECK_NEAR(x[0][0], 22, 1);
        CHECK_NEAR(x[1][0], 11, 1);
        CHECK_NEAR(x[2][5], 33, 1);
        kiln_dataset_free(ds);
    }
    /* JSONL, integer labels: bare ids */
    const char *jl =
        "{\"path\": \"img/a.png\", \"label\": 3}\n\n{\"label\": 0, \"path\": \"img/b.png\"}\n";
    path_of(p, sizeof p, "man/list.jsonl");
    write_file(p, jl, strlen(jl));
    o.manifest = p;
    CHECK_OK(kiln_data_load_images(&o, &ds));
    if (ds) {
        CHECK(kiln_dataset_rows(ds) == 2 && kiln_dataset_num_classes(ds) == 4);
        CHECK(kiln_dataset_class_name(ds, 0) == NULL);
        int32_t y;
        CHECK_OK(kiln_dataset_get(ds, 0, NULL, &y));
        CHECK(y == 3);
        kiln_dataset_free(ds);
    }
    /* JSONL string labels mapped onto given classes; an unknown one names the line */
    const char *cls[] = {"cat", "dog"};
    const char *jl2 = "{\"path\": \"img/a.png\", \"label\": \"dog\"}\n{\"path\": \"img/b.png\", "
                      "\"label\": \"cow\"}\n";
    write_file(p, jl2, strlen(jl2));
    o.classes = cls, o.num_classes = 2;
    CHECK(kiln_data_load_images(&o, &ds) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("list.jsonl:2: label 'cow' is not one of the 2 classes");
    /* broken manifests */
    o.classes = NULL, o.num_classes = 0;
    write_file(p, "{\"path\": 3, \"label\": 1}\n", 24);
    CHECK(kiln_data_load_images(&o, &ds) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("list.jsonl:1: needs \"path\"");
    write_file(p, "{nope\n", 6);
    CHECK(kiln_data_load_images(&o, &ds) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("list.jsonl:1: not a JSON object");
    path_of(p, sizeof p, "man/bad.csv");
    write_file(p, "file,label\nimg/a.png,1\n", 23);
    o.manifest = p;
    CHECK(kiln_data_load_images(&o, &ds) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("bad.csv:1: the header must name the columns 'path' and 'label'");
    write_file(p, "path,label\n", 11);
    CHECK(kiln_data_load_images(&o, &ds) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("no images listed");
}

/* A tree with n good 4 x 4 images (value = 3 i) in two classes and, when bad, a corrupt one. */
static void make_tree(const char *name, int n, int bad) {
    char rel[256];
    mkdirs(name);
    snprintf(rel, sizeof rel, "%s/x", name), mkdirs(rel);
    snprintf(rel, sizeof rel, "%s/y", name), mkdirs(rel);
    for (int i = 0; i < n; i++) {
        snprintf(rel, sizeof rel, "%s/%s/%03d.png", name, i % 2 ? "y" : "x", i);
        put_image(rel, (uint8_t)(3 * i));
    }
    if (bad) {
        char p[512];
        snprintf(rel, sizeof rel, "%s/x/050-broken.jpg", name);
        path_of(p, sizeof p, rel);
        write_file(p, "\xFF\xD8\xFF\xE0 this is not a jpeg", 24);
    }
}

static void test_errors_skip_and_loader(void) {
    make_tree("skip", 20, 1);
    char root[512];
    path_of(root, sizeof root, "skip");
    kiln_image_source_options o = {.root = root, .spec = SPEC4};
    kiln_dataset *ds = NULL, *good = NULL;
    CHECK_OK(kiln_data_load_images(&o, &ds));
    if (!ds) return;
    CHECK(kiln_dataset_rows(ds) == 21);
    /* reading the bad row is an error naming the file */
    int64_t bad_row = -1;
    for (int64_t i = 0; i < 21; i++)
        if (strstr(kiln_dataset_row_name(ds, i), "broken")) bad_row = i;
    float x[16];
    CHECK(kiln_dataset_get(ds, bad_row, x, NULL) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("050-broken.jpg");
    /* the loader reports it too, with prefetch and without, and stays where it was */
    for (int pf = 0; pf < 2; pf++) {
        kiln_loader_config c = {.batch_size = 8, .prefetch = pf, .norm = {.scale = 1}};
        kiln_loader *l = NULL;
        CHECK_OK(kiln_loader_new(ds, &c, &l));
        float bx[8 * 16];
        int32_t by[8];
        int rows, r, fails = 0;
        while ((r = kiln_loader_next(l, bx, by, &rows)) != 0) {
            if (r < 0) {
                fails++;
                CHECK_ERR_HAS("050-broken.jpg");
                if (fails > 2) break;
            }
        }
        CHECK_MSG(fails == 3, "prefetch %d: %d failures", pf, fails); /* the same batch again */
        kiln_loader_free(l);
    }
    /* on_error: skip */
    int64_t skipped = -1;
    char first[512];
    CHECK_OK(kiln_data_drop_unreadable(ds, &good, &skipped, first, sizeof first));
    CHECK(skipped == 1 && strstr(first, "050-broken.jpg"));
    if (good) {
        CHECK(kiln_dataset_rows(good) == 20);
        kiln_loader_config c = {.batch_size = 6, .prefetch = 1, .norm = {.scale = 1}};
        kiln_loader *l = NULL;
        CHECK_OK(kiln_loader_new(good, &c, &l));
        float bx[6 * 16];
        int32_t by[6];
        int rows, total = 0, r;
        while ((r = kiln_loader_next(l, bx, by, &rows)) == 1) total += rows;
        CHECK(r == 0 && total == 20);
        kiln_loader_free(l);
        /* a split of the good rows works as on any dataset */
        kiln_dataset *tr = NULL, *va = NULL;
        CHECK_OK(kiln_data_split(good, 0.25, 7, &tr, &va));
        CHECK(tr && va && kiln_dataset_rows(tr) == 15 && kiln_dataset_rows(va) == 5);
        kiln_dataset_free(tr), kiln_dataset_free(va);
    }
    kiln_dataset_free(good);
    kiln_dataset_free(ds);
    /* nothing readable at all */
    mkdirs("allbad"), mkdirs("allbad/c");
    char p[512];
    path_of(p, sizeof p, "allbad/c/a.png");
    write_file(p, "\x89PNG\r\n\x1a\nnope", 12);
    o.root = root;
    path_of(root, sizeof root, "allbad");
    CHECK_OK(kiln_data_load_images(&o, &ds));
    if (ds) {
        CHECK(kiln_data_drop_unreadable(ds, &good, &skipped, NULL, 0) == KILN_ERR_FORMAT);
        CHECK_ERR_HAS("none of the 1 rows");
        kiln_dataset_free(ds);
    }
}

typedef struct {
    kiln_dataset *ds;
    uint8_t *out; /* [n, 16] */
    int from;
    kiln_status st;
} reader_arg;

static void *reader(void *a) {
    reader_arg *r = a;
    int64_t n = kiln_dataset_rows(r->ds);
    for (int64_t k = 0; k < n && !r->st; k++) {
        int64_t i = (k + r->from) % n;
        r->st = kiln_dataset_read(r->ds, i, r->out + i * 16);
    }
    return NULL;
}

static void test_threads_cache_and_stats(void) {
    make_tree("many", 60, 0);
    char root[512];
    path_of(root, sizeof root, "many");
    for (int cache = 0; cache < 2; cache++) {
        /* a cache of 25 rows: some rows cached, the rest decoded every time */
        kiln_image_source_options o = {
            .root = root, .spec = SPEC4, .cache_bytes = cache ? 25 * 16 : 0};
        kiln_dataset *ds = NULL;
        CHECK_OK(kiln_data_load_images(&o, &ds));
        if (!ds) continue;
        uint8_t serial[60 * 16];
        for (int i = 0; i < 60; i++) CHECK_OK(kiln_dataset_read(ds, i, serial + i * 16));
        pthread_t th[4];
        reader_arg ra[4];
        for (int t = 0; t < 4; t++) {
            ra[t] = (reader_arg){ds, calloc(60 * 16, 1), t * 15, KILN_OK};
            pthread_create(&th[t], NULL, reader, &ra[t]);
        }
        for (int t = 0; t < 4; t++) {
            pthread_join(th[t], NULL);
            CHECK_OK(ra[t].st);
            CHECK(memcmp(ra[t].out, serial, sizeof serial) == 0);
            free(ra[t].out);
        }
        /* channel stats through the source equal those of the same bytes in memory */
        float m1, s1, m2, s2;
        CHECK_OK(kiln_dataset_channel_stats(ds, 1.0f / 255, &m1, &s1));
        int32_t y[60];
        for (int i = 0; i < 60; i++) CHECK_OK(kiln_dataset_get(ds, i, NULL, &y[i]));
        kiln_dataset_desc d = {.rows = 60,
                               .x_dtype = KILN_U8,
                               .x_shape = kiln_dataset_x_shape(ds),
                               .x = serial,
                               .y_kind = KILN_LABEL_CLASS,
                               .y = y};
        kiln_dataset *mem = NULL;
        CHECK_OK(kiln_dataset_new(&d, &mem));
        CHECK_OK(kiln_dataset_channel_stats(mem, 1.0f / 255, &m2, &s2));
        CHECK_NEAR(m1, m2, 1e-6);
        CHECK_NEAR(s1, s2, 1e-6);
        /* and batches through the loader equal those of the in-memory copy */
        kiln_loader_config c = {
            .batch_size = 7, .shuffle = 1, .seed = 3, .prefetch = 1, .norm = {.scale = 1.0f / 255}};
        kiln_loader *a = NULL, *b = NULL;
        CHECK_OK(kiln_loader_new(ds, &c, &a));
        CHECK_OK(kiln_loader_new(mem, &c, &b));
        float xa[7 * 16], xb[7 * 16];
        int32_t ya[7], yb[7];
        int ra_, rb_, diff = 0;
        for (int k = 0; k < 20 && a && b; k++) {
            int na = kiln_loader_next(a, xa, ya, &ra_), nb = kiln_loader_next(b, xb, yb, &rb_);
            diff += na != nb || ra_ != rb_ ||
                    (na == 1 &&
                     (memcmp(xa, xb, (size_t)ra_ * 16 * 4) || memcmp(ya, yb, (size_t)ra_ * 4)));
        }
        CHECK(diff == 0);
        kiln_loader_free(a), kiln_loader_free(b);
        kiln_dataset_free(mem);
        kiln_dataset_free(ds);
    }
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kiln-test-images-XXXXXX");
    if (!mkdtemp(tmpdir)) return perror("mkdtemp"), 1;
    RUN(test_sniff_and_extensions);
    RUN(test_decode_png_bmp_gif);
    RUN(test_decode_jpeg);
    RUN(test_exif_orientation);
    RUN(test_bad_files);
    RUN(test_fuzz_decoders);
    RUN(test_resize);
    RUN(test_crop_and_chw);
    RUN(test_pipeline);
    RUN(test_folder_source);
    RUN(test_manifests);
    RUN(test_errors_skip_and_loader);
    RUN(test_threads_cache_and_stats);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return kiln_test_summary();
}
