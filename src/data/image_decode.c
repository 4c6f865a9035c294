/* image_decode.c — image bytes to pixels: JPEG through TurboJPEG, PNG/BMP/GIF through stb_image,
 * EXIF orientation, and the whole decode -> geometry -> CHW pipeline (see kiln/image.h).
 *
 * Memory. A decoder owns a TurboJPEG handle and four scratch buffers that only grow (file bytes,
 * decoded pixels, a second pixel buffer for orientation or conversion, the resized image), so a
 * steady stream of same-sized images allocates nothing after the first; stb_image allocates its
 * own output, which is freed before returning. Every pixel buffer is sized from a header that
 * has already been checked against KILN_IMAGE_MAX_SIDE and KILN_IMAGE_MAX_PIXELS.
 *
 * Truncation. TurboJPEG reports a premature end as a warning (and pads with gray); we make it an
 * error. stb_image reads past the end as zeros without complaint for BMP and GIF, so it reads
 * through callbacks that note any request for bytes beyond the end: a decode that needed them
 * is a truncated file.
 *
 * Threads: nothing here is shared between decoders (stb_image keeps its failure reason in
 * thread-local storage in the Debian build, and we change none of its global settings).
 */
#include <errno.h>
#include <fcntl.h>
#include <stb_image.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "kiln/image.h"

enum { BUF_FILE, BUF_PIX, BUF_PIX2, BUF_RESIZE, N_BUFS };

struct kiln_image_decoder {
    tjhandle tj;
    uint8_t *buf[N_BUFS];
    size_t cap[N_BUFS];
};

kiln_status kiln_image_decoder_new(kiln_image_decoder **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return kiln_error(KILN_ERR_NOMEM, "image decoder: out of memory");
    if (!((*out)->tj = tjInitDecompress())) {
        free(*out);
        *out = NULL;
        return kiln_error(KILN_ERR_NOMEM, "image decoder: cannot start TurboJPEG: %s",
                          tjGetErrorStr2(NULL));
    }
    return KILN_OK;
}

void kiln_image_decoder_free(kiln_image_decoder *d) {
    if (!d) return;
    tjDestroy(d->tj);
    for (int i = 0; i < N_BUFS; i++) free(d->buf[i]);
    free(d);
}

/* Scratch buffer `which` with room for n bytes (NULL when out of memory). */
static uint8_t *scratch(kiln_image_decoder *d, int which, size_t n) {
    if (n > d->cap[which]) {
        size_t c = n + n / 4 + 64;
        uint8_t *p = realloc(d->buf[which], c);
        if (!p) return NULL;
        d->buf[which] = p, d->cap[which] = c;
    }
    return d->buf[which];
}

kiln_image_format kiln_image_sniff(const void *data, size_t len) {
    const uint8_t *p = data;
    if (len >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return KILN_IMAGE_JPEG;
    if (len >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8)) return KILN_IMAGE_PNG;
    if (len >= 6 && (!memcmp(p, "GIF87a", 6) || !memcmp(p, "GIF89a", 6))) return KILN_IMAGE_GIF;
    if (len >= 2 && p[0] == 'B' && p[1] == 'M') return KILN_IMAGE_BMP;
    return KILN_IMAGE_UNKNOWN;
}

const char *kiln_image_format_name(kiln_image_format f) {
    static const char *const names[] = {"unknown", "jpeg", "png", "bmp", "gif"};
    return (unsigned)f <= KILN_IMAGE_GIF ? names[f] : "unknown";
}

int kiln_image_has_extension(const char *name) {
    static const char *const ext[] = {".jpg", ".jpeg", ".png", ".bmp", ".gif"};
    size_t n = strlen(name);
    for (int i = 0; i < 5; i++) {
        size_t k = strlen(ext[i]);
        if (n > k && !strcasecmp(name + n - k, ext[i])) return 1;
    }
    return 0;
}

static kiln_status check_size(const char *name, const char *fmt, int64_t w, int64_t h) {
    if (w < 1 || h < 1 || w > KILN_IMAGE_MAX_SIDE || h > KILN_IMAGE_MAX_SIDE)
        return kiln_error(KILN_ERR_FORMAT, "%s: %s image of %lld x %lld pixels (each side 1 to %d)",
                          name, fmt, (long long)w, (long long)h, KILN_IMAGE_MAX_SIDE);
    if (w * h > KILN_IMAGE_MAX_PIXELS)
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: %s image of %lld x %lld pixels is over the limit of %lld pixels "
                          "(a decompression bomb?)",
                          name, fmt, (long long)w, (long long)h, (long long)KILN_IMAGE_MAX_PIXELS);
    return KILN_OK;
}

/* ---- EXIF orientation ---- */

static unsigned rd16(const uint8_t *p, int le) {
    return le ? (unsigned)p[0] | (unsigned)p[1] << 8 : (unsigned)p[0] << 8 | p[1];
}
static uint32_t rd32(const uint8_t *p, int le) {
    return le ? (uint32_t)rd16(p, 1) | (uint32_t)rd16(p + 2, 1) << 16
              : (uint32_t)rd16(p, 0) << 16 | rd16(p + 2, 0);
}

/* Orientation in a TIFF structure t [n] (the APP1 payload after "Exif\0\0"), or 1. */
static int tiff_orientation(const uint8_t *t, size_t n) {
    if (n < 8) return 1;
    int le;
    if (t[0] == 'I' && t[1] == 'I')
        le = 1;
    else if (t[0] == 'M' && t[1] == 'M')
        le = 0;
    else
        return 1;
    if (rd16(t + 2, le) != 42) return 1;
    uint32_t ifd = rd32(t + 4, le);
    if (ifd > n - 2) return 1;
    unsigned count = rd16(t + ifd, le);
    for (unsigned i = 0; i < count; i++) {
        size_t e = (size_t)ifd + 2 + (size_t)i * 12; /* tag, type, count, value */
        if (e + 12 > n) return 1;
        if (rd16(t + e, le) != 0x0112) continue;
        unsigned type = rd16(t + e + 2, le);
        uint32_t cnt = rd32(t + e + 4, le);
        if (type != 3 || cnt != 1) return 1; /* SHORT, one value, stored in the entry */
        unsigned v = rd16(t + e + 8, le);
        return v >= 1 && v <= 8 ? (int)v : 1;
    }
    return 1;
}

int kiln_image_exif_orientation(const void *data, size_t len) {
    const uint8_t *p = data;
    if (len < 4 || p[0] != 0xFF || p[1] != 0xD8) return 1;
    size_t i = 2;
    while (i + 4 <= len) {
        if (p[i] != 0xFF) return 1;
        uint8_t m = p[i + 1];
        if (m == 0xFF) { /* fill byte */
            i++;
            continue;
        }
        if (m == 0xD9 || m == 0xDA) return 1; /* end of image, start of scan: no EXIF before */
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) { /* markers without a length */
            i += 2;
            continue;
        }
        size_t seg = rd16(p + i + 2, 0); /* includes its own two bytes */
        if (seg < 2 || i + 2 + seg > len) return 1;
        if (m == 0xE1 && seg >= 2 + 6 + 8 && !memcmp(p + i + 4, "Exif\0\0", 6))
            return tiff_orientation(p + i + 10, seg - 8);
        i += 2 + seg;
    }
    return 1;
}

kiln_status kiln_image_orient(const kiln_image *src, int o, kiln_image *dst) {
    if (o < 1 || o > 8)
        return kiln_error(KILN_ERR_INVALID, "image orientation %d is not 1 to 8", o);
    int h = src->h, w = src->w, c = src->c, swap = o >= 5;
    dst->h = swap ? w : h, dst->w = swap ? h : w, dst->c = c;
    dst->stride = (ptrdiff_t)dst->w * c;
    for (int y = 0; y < dst->h; y++) {
        uint8_t *d = dst->data + y * dst->stride;
        for (int x = 0; x < dst->w; x++) {
            int sx, sy; /* the source pixel shown at (y, x) */
            switch (o) {
            case 2:
                sx = w - 1 - x, sy = y;
                break;
            case 3:
                sx = w - 1 - x, sy = h - 1 - y;
                break;
            case 4:
                sx = x, sy = h - 1 - y;
                break;
            case 5:
                sx = y, sy = x;
                break;
            case 6:
                sx = y, sy = h - 1 - x;
                break;
            case 7:
                sx = w - 1 - y, sy = h - 1 - x;
                break;
            case 8:
                sx = w - 1 - y, sy = x;
                break;
            default:
                sx = x, sy = y;
                break;
            }
            memcpy(d + (ptrdiff_t)x * c, src->data + sy * src->stride + (ptrdiff_t)sx * c,
                   (size_t)c);
        }
    }
    return KILN_OK;
}

kiln_status kiln_image_convert(const kiln_image *src, int channels, kiln_image *dst) {
    if ((channels != 1 && channels != 3) || src->c < 1 || src->c > 4)
        return kiln_error(KILN_ERR_INVALID, "image convert: %d channels to %d (1 to 4 to 1 or 3)",
                          src->c, channels);
    int c = src->c;
    dst->c = channels, dst->stride = (ptrdiff_t)dst->w * channels;
    for (int y = 0; y < src->h; y++) {
        const uint8_t *s = src->data + y * src->stride;
        uint8_t *d = dst->data + y * dst->stride;
        for (int x = 0; x < src->w; x++, s += c) {
            if (channels == 1) {
                d[x] = c <= 2 ? s[0]
                              : (uint8_t)((299u * s[0] + 587u * s[1] + 114u * s[2] + 500u) / 1000u);
            } else if (c <= 2) {
                d[3 * x] = d[3 * x + 1] = d[3 * x + 2] = s[0];
            } else {
                memcpy(d + 3 * x, s, 3);
            }
        }
    }
    return KILN_OK;
}

/* ---- JPEG ---- */

/* The error, and a fresh handle: after a failed call TurboJPEG 2.1 can leave the handle in a
 * state where the next header read fails with the old message. */
static kiln_status tj_fail(kiln_image_decoder *d, const char *name, const char *what) {
    kiln_status st =
        kiln_error(KILN_ERR_FORMAT, "%s: %s JPEG: %s", name, what, tjGetErrorStr2(d->tj));
    tjhandle fresh = tjInitDecompress();
    if (fresh) tjDestroy(d->tj), d->tj = fresh;
    return st;
}

static kiln_status decode_jpeg(kiln_image_decoder *d, const uint8_t *data, size_t len,
                               const char *name, const kiln_image_decode_opts *o, kiln_image *out) {
    int w, h, sub, cs;
    if (tjDecompressHeader3(d->tj, data, (unsigned long)len, &w, &h, &sub, &cs) != 0)
        return tj_fail(d, name, "not a readable");
    kiln_status st = check_size(name, "JPEG", w, h);
    if (st) return st;
    int orient = o->no_orientation ? 1 : kiln_image_exif_orientation(data, len);
    /* DCT scaling: the smallest of 1/8, 1/4, 1/2 that still covers what the geometry needs */
    int num = 1, den = 1;
    if (o->min_h > 0 || o->min_w > 0 || o->min_short > 0) {
        for (int k = 8; k >= 2; k /= 2) {
            int sw = (w + k - 1) / k, sh = (h + k - 1) / k; /* TJSCALED */
            int oh = orient >= 5 ? sw : sh, ow = orient >= 5 ? sh : sw;
            if (oh >= o->min_h && ow >= o->min_w && (oh < ow ? oh : ow) >= o->min_short) {
                den = k;
                break;
            }
        }
    }
    tjscalingfactor f = {num, den};
    int sw = TJSCALED(w, f), sh = TJSCALED(h, f);
    int cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
    int pf = cmyk ? TJPF_CMYK : o->channels == 1 ? TJPF_GRAY : TJPF_RGB, pc = tjPixelSize[pf];
    uint8_t *pix = scratch(d, BUF_PIX, (size_t)sw * sh * pc);
    if (!pix)
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory for %d x %d pixels", name, sw, sh);
    if (tjDecompress2(d->tj, data, (unsigned long)len, pix, sw, sw * pc, sh, pf,
                      TJFLAG_LIMITSCANS) != 0) {
        const char *msg = tjGetErrorStr2(d->tj);
        if (tjGetErrorCode(d->tj) != TJERR_WARNING || !strstr(msg, "extraneous bytes"))
            return tj_fail(d, name, "corrupt or truncated");
    }
    kiln_image img = {sh, sw, pc, (ptrdiff_t)sw * pc, pix};
    int next = BUF_PIX2;
    if (cmyk) { /* Adobe's inverted CMYK: R = C K / 255 (libjpeg-turbo's cmyk_to_rgb) */
        for (int64_t i = 0; i < (int64_t)sw * sh; i++) {
            uint8_t *p = pix + 4 * i;
            unsigned k = p[3];
            p[0] = (uint8_t)((p[0] * k + 127) / 255), p[1] = (uint8_t)((p[1] * k + 127) / 255);
            p[2] = (uint8_t)((p[2] * k + 127) / 255);
        }
        uint8_t *q = scratch(d, BUF_PIX2, (size_t)sw * sh * o->channels);
        if (!q) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", name);
        kiln_image conv = {sh, sw, 0, 0, q};
        kiln_image_convert(&img, o->channels, &conv);
        img = conv, next = BUF_PIX;
    }
    if (orient != 1) {
        uint8_t *q = scratch(d, next, (size_t)sw * sh * img.c);
        if (!q) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", name);
        kiln_image r = {0, 0, 0, 0, q};
        kiln_image_orient(&img, orient, &r);
        img = r;
    }
    *out = img;
    return KILN_OK;
}

/* ---- PNG, BMP, GIF (stb_image), read through callbacks that notice reads past the end ---- */

typedef struct {
    const uint8_t *p;
    size_t len, pos;
    int overrun;
} mem_reader;

static int mr_read(void *u, char *buf, int size) {
    mem_reader *r = u;
    if (size <= 0) return 0;
    if (r->pos >= r->len) {
        r->overrun = 1;
        return 0;
    }
    size_t n = r->len - r->pos < (size_t)size ? r->len - r->pos : (size_t)size;
    memcpy(buf, r->p + r->pos, n);
    r->pos += n;
    return (int)n;
}
static void mr_skip(void *u, int n) {
    mem_reader *r = u;
    if (n < 0 && (size_t) - (int64_t)n > r->pos) n = -(int)r->pos;
    if (n > 0 && (size_t)n > r->len - r->pos) {
        r->overrun = 1;
        r->pos = r->len;
        return;
    }
    r->pos = (size_t)((int64_t)r->pos + n);
}
static int mr_eof(void *u) {
    mem_reader *r = u;
    return r->pos >= r->len;
}

/* Width and height as the header of a PNG (IHDR), BMP (BITMAPINFOHEADER or later; the
 * height's sign is the row order) or GIF (logical screen) says; 0 when too short to tell. */
static int header_size(const uint8_t *p, size_t len, kiln_image_format f, int64_t *w, int64_t *h) {
    if (f == KILN_IMAGE_PNG && len >= 24 && !memcmp(p + 12, "IHDR", 4)) {
        *w = rd32(p + 16, 0), *h = rd32(p + 20, 0);
        return 1;
    }
    if (f == KILN_IMAGE_BMP && len >= 26 && rd32(p + 14, 1) >= 40) {
        int32_t sw = (int32_t)rd32(p + 18, 1), sh = (int32_t)rd32(p + 22, 1);
        *w = sw, *h = sh < 0 ? -(int64_t)sh : sh;
        return 1;
    }
    if (f == KILN_IMAGE_GIF && len >= 10) {
        *w = rd16(p + 6, 1), *h = rd16(p + 8, 1);
        return 1;
    }
    return 0;
}

static kiln_status decode_stb(kiln_image_decoder *d, const uint8_t *data, size_t len,
                              const char *name, kiln_image_format fmt,
                              const kiln_image_decode_opts *o, kiln_image *out) {
    const char *fn = fmt == KILN_IMAGE_PNG ? "PNG" : fmt == KILN_IMAGE_BMP ? "BMP" : "GIF";
    int64_t hw, hh; /* the header's own size, checked before stb looks (stb's limits differ) */
    if (header_size(data, len, fmt, &hw, &hh)) {
        kiln_status st = check_size(name, fn, hw, hh);
        if (st) return st;
    }
    int w, h, comp;
    if (len > INT32_MAX || !stbi_info_from_memory(data, (int)len, &w, &h, &comp))
        return kiln_error(KILN_ERR_FORMAT, "%s: not a readable %s image: %s", name, fn,
                          stbi_failure_reason());
    kiln_status st = check_size(name, fn, w, h);
    if (st) return st;
    mem_reader r = {data, len, 0, 0};
    stbi_io_callbacks cb = {mr_read, mr_skip, mr_eof};
    uint8_t *px = stbi_load_from_callbacks(&cb, &r, &w, &h, &comp, 0);
    if (!px)
        return kiln_error(KILN_ERR_FORMAT, "%s: corrupt or truncated %s image: %s", name, fn,
                          stbi_failure_reason());
    if (r.overrun || comp < 1 || comp > 4 || (st = check_size(name, fn, w, h))) {
        stbi_image_free(px);
        return st ? st
                  : kiln_error(KILN_ERR_FORMAT, "%s: truncated %s image (its data stops early)",
                               name, fn);
    }
    uint8_t *q = scratch(d, BUF_PIX, (size_t)w * h * o->channels);
    if (!q) {
        stbi_image_free(px);
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory for %d x %d pixels", name, w, h);
    }
    kiln_image src = {h, w, comp, (ptrdiff_t)w * comp, px}, dst = {h, w, 0, 0, q};
    kiln_image_convert(&src, o->channels, &dst);
    stbi_image_free(px);
    *out = dst;
    return KILN_OK;
}

kiln_status kiln_image_decode(kiln_image_decoder *d, const void *data, size_t len, const char *name,
                              const kiln_image_decode_opts *o, kiln_image *out) {
    if (!name) name = "image";
    if (o->channels != 1 && o->channels != 3)
        return kiln_error(KILN_ERR_INVALID, "%s: decode to %d channels (1 or 3)", name,
                          o->channels);
    kiln_image_format f = kiln_image_sniff(data, len);
    if (len > (size_t)KILN_IMAGE_MAX_BYTES)
        return kiln_error(KILN_ERR_FORMAT, "%s: %zu bytes is over the limit of %lld for an image",
                          name, len, (long long)KILN_IMAGE_MAX_BYTES);
    switch (f) {
    case KILN_IMAGE_JPEG:
        return decode_jpeg(d, data, len, name, o, out);
    case KILN_IMAGE_PNG:
    case KILN_IMAGE_BMP:
    case KILN_IMAGE_GIF:
        return decode_stb(d, data, len, name, f, o, out);
    default:
        return kiln_error(KILN_ERR_FORMAT, "%s: not a JPEG, PNG, BMP or GIF image (%s)", name,
                          len ? "unknown first bytes" : "empty file");
    }
}

/* ---- the pipeline ---- */

kiln_status kiln_image_spec_check(const kiln_image_spec *s) {
    int big = KILN_IMAGE_MAX_SIDE;
    if (s->channels != 1 && s->channels != 3)
        return kiln_error(KILN_ERR_INVALID, "image channels %d (1 grayscale or 3 rgb)",
                          s->channels);
    if (s->out_h < 1 || s->out_w < 1 || s->out_h > big || s->out_w > big)
        return kiln_error(KILN_ERR_INVALID, "image size %d x %d (1 to %d a side)", s->out_h,
                          s->out_w, big);
    if (s->resize_short && (s->resize_h || s->resize_w))
        return kiln_error(KILN_ERR_INVALID, "image resize: a shorter side or [H, W], not both");
    if (s->resize_short < 0 || s->resize_short > big || s->resize_h < 0 || s->resize_w < 0 ||
        s->resize_h > big || s->resize_w > big || !s->resize_h != !s->resize_w)
        return kiln_error(KILN_ERR_INVALID, "image resize: sizes must be 1 to %d", big);
    if (s->crop_h < 0 || s->crop_w < 0 || !s->crop_h != !s->crop_w || s->crop_h > big ||
        s->crop_w > big)
        return kiln_error(KILN_ERR_INVALID, "image center_crop: sizes must be 1 to %d", big);
    if ((unsigned)s->interp > KILN_INTERP_AREA)
        return kiln_error(KILN_ERR_INVALID, "image interpolation %d", (int)s->interp);
    int h = s->crop_h ? s->crop_h : s->resize_h, w = s->crop_w ? s->crop_w : s->resize_w;
    if (h && (h != s->out_h || w != s->out_w))
        return kiln_error(KILN_ERR_SHAPE, "images come out %d x %d (%s) but must be %d x %d", h, w,
                          s->crop_h ? "center_crop" : "resize", s->out_h, s->out_w);
    if (s->crop_h && s->resize_h && (s->resize_h < s->crop_h || s->resize_w < s->crop_w))
        return kiln_error(KILN_ERR_SHAPE, "center_crop %d x %d is larger than resize %d x %d",
                          s->crop_h, s->crop_w, s->resize_h, s->resize_w);
    if (s->crop_h && s->resize_short &&
        s->resize_short < (s->crop_h < s->crop_w ? s->crop_h : s->crop_w))
        return kiln_error(KILN_ERR_SHAPE, "center_crop %d x %d is larger than resize %d allows",
                          s->crop_h, s->crop_w, s->resize_short);
    return KILN_OK;
}

kiln_status kiln_image_process(kiln_image_decoder *d, const void *data, size_t len,
                               const char *name, const kiln_image_spec *s, uint8_t *chw) {
    kiln_image_decode_opts o = {.channels = s->channels,
                                .min_h = s->resize_h,
                                .min_w = s->resize_w,
                                .min_short = s->resize_short};
    kiln_image img;
    kiln_status st = kiln_image_decode(d, data, len, name, &o, &img);
    if (st) return st;
    int nh = img.h, nw = img.w;
    if (s->resize_short) {
        int sh = img.h <= img.w;
        int64_t lng = (int64_t)s->resize_short * (sh ? img.w : img.h) / (sh ? img.h : img.w);
        if (lng < 1) lng = 1;
        if (lng > KILN_IMAGE_MAX_SIDE)
            return kiln_error(KILN_ERR_FORMAT,
                              "%s: a %d x %d image resized to a shorter side of "
                              "%d would be %lld pixels long",
                              name, img.h, img.w, s->resize_short, (long long)lng);
        nh = sh ? s->resize_short : (int)lng, nw = sh ? (int)lng : s->resize_short;
    } else if (s->resize_h) {
        nh = s->resize_h, nw = s->resize_w;
    }
    if (nh != img.h || nw != img.w) {
        /* the decoded image lives in BUF_PIX or BUF_PIX2; the result goes to BUF_RESIZE */
        uint8_t *q = scratch(d, BUF_RESIZE, (size_t)nh * nw * img.c);
        if (!q) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory resizing", name);
        kiln_image r = {nh, nw, img.c, (ptrdiff_t)nw * img.c, q};
        if ((st = kiln_image_resize(&img, &r, s->interp))) return st;
        img = r;
    }
    if (s->crop_h) {
        kiln_image v;
        if (kiln_image_center_crop(&img, s->crop_h, s->crop_w, &v))
            return kiln_error(KILN_ERR_FORMAT,
                              "%s: the image is %d x %d after resizing, smaller than center_crop "
                              "%d x %d",
                              name, img.h, img.w, s->crop_h, s->crop_w);
        img = v;
    }
    if (img.h != s->out_h || img.w != s->out_w)
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: the image is %d x %d (height x width)%s, but it must be %d x %d "
                          "(resize or center_crop it)",
                          name, img.h, img.w, s->resize_short ? " after resizing" : "", s->out_h,
                          s->out_w);
    kiln_image_to_chw(&img, chw);
    return KILN_OK;
}

kiln_status kiln_image_read_file(kiln_image_decoder *d, const char *path, const void **data,
                                 size_t *len) {
    *data = NULL, *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return kiln_error(KILN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    kiln_status st = KILN_OK;
    uint8_t *buf = NULL;
    size_t n = 0;
    if (fstat(fd, &sb) != 0)
        st = kiln_error(KILN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(sb.st_mode))
        st = kiln_error(KILN_ERR_IO, "%s: not a regular file", path);
    else if (sb.st_size > KILN_IMAGE_MAX_BYTES)
        st = kiln_error(KILN_ERR_FORMAT, "%s: %lld bytes is over the limit of %lld for an image",
                        path, (long long)sb.st_size, (long long)KILN_IMAGE_MAX_BYTES);
    else if (!(buf = scratch(d, BUF_FILE, (size_t)sb.st_size + 1)))
        st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory", path);
    while (!st && n < (size_t)sb.st_size) {
        ssize_t got = read(fd, buf + n, (size_t)sb.st_size - n);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) st = kiln_error(KILN_ERR_IO, "%s: read error: %s", path, strerror(errno));
        if (got <= 0) break; /* a file that shrank: decode what is there */
        n += (size_t)got;
    }
    close(fd);
    if (!st) *data = buf, *len = n;
    return st;
}

kiln_status kiln_image_load(kiln_image_decoder *d, const char *path, const kiln_image_spec *s,
                            uint8_t *chw) {
    const void *data;
    size_t n;
    kiln_status st = kiln_image_read_file(d, path, &data, &n);
    return st ? st : kiln_image_process(d, data, n, path, s, chw);
}

kiln_status kiln_image_info(kiln_image_decoder *d, const void *data, size_t len, const char *name,
                            int *h, int *w) {
    *h = *w = 0;
    if (!name) name = "image";
    kiln_image_format f = kiln_image_sniff(data, len);
    int64_t hw = 0, hh = 0;
    if (f == KILN_IMAGE_JPEG) {
        int jw, jh, sub, cs;
        if (tjDecompressHeader3(d->tj, data, (unsigned long)len, &jw, &jh, &sub, &cs) != 0)
            return tj_fail(d, name, "not a readable");
        int o = kiln_image_exif_orientation(data, len);
        hw = o >= 5 ? jh : jw, hh = o >= 5 ? jw : jh;
    } else if (f != KILN_IMAGE_UNKNOWN) {
        int sw, sh, comp;
        if (len > INT32_MAX || !stbi_info_from_memory(data, (int)len, &sw, &sh, &comp))
            return kiln_error(KILN_ERR_FORMAT, "%s: not a readable %s image: %s", name,
                              kiln_image_format_name(f), stbi_failure_reason());
        hw = sw, hh = sh;
    } else {
        return kiln_error(KILN_ERR_FORMAT, "%s: not a JPEG, PNG, BMP or GIF image (%s)", name,
                          len ? "unknown first bytes" : "empty file");
    }
    kiln_status st = check_size(name, kiln_image_format_name(f), hw, hh);
    if (st) return st;
    *h = (int)hh, *w = (int)hw;
    return KILN_OK;
}
