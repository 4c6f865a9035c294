/* instances_image.c — an image file as one instance (kiln/instances.h).
 *
 * JPEG goes through kiln/image.h's decoder (libjpeg-turbo, EXIF orientation applied): the one
 * that reads training images (data.source: images), so a served JPEG becomes the same pixels a
 * trained one did, and corrupt JPEG bytes from a client never reach stb's JPEG decoder, which
 * Debian builds with assertions that abort the process on some corrupt files. Everything else
 * (PNG, BMP, GIF, PGM/PPM, ...) is decoded by stb_image as follows.
 *
 * The header is read first (stbi_info_from_memory) and the size compared with the input's, so a
 * huge or wrong-sized image is refused before any pixel memory is allocated; stb then decodes
 * straight to the input's channel count (it converts gray, RGB and RGBA among themselves), and
 * the interleaved HWC bytes are laid out channel-major (CHW) as float 0..255, the layout and
 * range of the IDX images the models train on. Nothing is resized or normalized here.
 *
 * stb reads a binary PGM/PPM whose pixels stop short without complaint (the rest comes out as
 * zeros), so for those the raster's size is checked against the header first.
 */
#include <limits.h>
#include <stb_image.h>
#include <stdint.h>

#include "kiln/image.h"
#include "serve/instances_internal.h"

/* A JPEG as x [C, H, W] (C 1, 3 or 4: alpha 255), its oriented size exactly H x W. */
static kiln_status jpeg_instance(const char *name, const unsigned char *data, size_t len,
                                 int64_t C, int64_t H, int64_t W, float *x) {
    kiln_image_decoder *d = NULL;
    kiln_status st = kiln_image_decoder_new(&d);
    if (st) return st;
    kiln_image im;
    kiln_image_decode_opts o = {.channels = C == 1 ? 1 : 3};
    st = kiln_image_decode(d, data, len, name, &o, &im);
    if (!st && (im.w != W || im.h != H))
        st = kiln_error(KILN_ERR_FORMAT,
                        "%s: the image is %dx%d (width x height), the model's input is "
                        "%lldx%lld; resize it first",
                        name, im.w, im.h, (long long)W, (long long)H);
    if (!st) {
        int64_t plane = H * W;
        for (int64_t y = 0; y < H; y++) /* x [C, H, W] <- im [H, W, c] */
            for (int64_t i = 0; i < W; i++) {
                const uint8_t *p = im.data + y * im.stride + i * im.c;
                for (int64_t c = 0; c < C; c++)
                    x[c * plane + y * W + i] = c < im.c ? (float)p[c] : 255.0f;
            }
    }
    kiln_image_decoder_free(d);
    return st;
}

/* For a binary PGM/PPM ("P5"/"P6", width, height, maxval, one whitespace byte, the raster):
 * the raster bytes the header promises (*need) and those present (*have); 0 when the data is
 * not such a header (stb then judges it). */
static int pnm_raster(const unsigned char *d, size_t len, int64_t *need, int64_t *have) {
    if (len < 3 || d[0] != 'P' || (d[1] != '5' && d[1] != '6')) return 0;
    size_t i = 2;
    int64_t v[3];
    for (int k = 0; k < 3; k++) {
        for (;;) { /* whitespace and # comments */
            while (i < len && (d[i] == ' ' || d[i] == '\t' || d[i] == '\r' || d[i] == '\n')) i++;
            if (i < len && d[i] == '#')
                while (i < len && d[i] != '\n') i++;
            else
                break;
        }
        if (i >= len || d[i] < '0' || d[i] > '9') return 0;
        for (v[k] = 0; i < len && d[i] >= '0' && d[i] <= '9' && v[k] < 100000000; i++)
            v[k] = v[k] * 10 + (d[i] - '0');
    }
    if (i >= len) return 0;
    i++; /* the one whitespace byte before the raster */
    *need = v[0] * v[1] * (d[1] == '6' ? 3 : 1) * (v[2] > 255 ? 2 : 1);
    *have = (int64_t)(len - i);
    return 1;
}

kiln_status kiln_instances_image(const char *name, const unsigned char *data, size_t len,
                                 const kiln_shape *row, float *x) {
    char rs[96];
    int64_t C, H, W;
    if (row->ndim == 3) {
        C = row->dims[0], H = row->dims[1], W = row->dims[2];
    } else if (row->ndim == 2) {
        C = 1, H = row->dims[0], W = row->dims[1];
    } else {
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: the model's input row %s is not an image shape ([C, H, W] or "
                          "[H, W]); give its values as JSON, CSV or NPY",
                          name, kiln_shape_str(row, rs, sizeof rs));
    }
    if (C != 1 && C != 3 && C != 4)
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: the model's input row %s has %lld channels; an image gives 1 "
                          "(gray), 3 (RGB) or 4 (RGBA)",
                          name, kiln_shape_str(row, rs, sizeof rs), (long long)C);
    if (len > INT_MAX)
        return kiln_error(KILN_ERR_FORMAT, "%s: an image file of %zu bytes is too large", name,
                          len);
    if (kiln_image_sniff(data, len) == KILN_IMAGE_JPEG)
        return jpeg_instance(name, data, len, C, H, W, x);
    int w, h, comp;
    if (!stbi_info_from_memory(data, (int)len, &w, &h, &comp))
        return kiln_error(KILN_ERR_FORMAT, "%s: not a readable image (%s)", name,
                          stbi_failure_reason());
    if (w != W || h != H)
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: the image is %dx%d (width x height), the model's input is "
                          "%lldx%lld; resize it first",
                          name, w, h, (long long)W, (long long)H);
    int64_t need, have;
    if (pnm_raster(data, len, &need, &have) && have < need)
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: truncated: %lld bytes of pixels, the header says %lld", name,
                          (long long)have, (long long)need);
    unsigned char *px = stbi_load_from_memory(data, (int)len, &w, &h, &comp, (int)C);
    if (!px)
        return kiln_error(KILN_ERR_FORMAT, "%s: cannot decode the image (%s)", name,
                          stbi_failure_reason());
    if (w != W || h != H) { /* the header said otherwise: a malformed file */
        stbi_image_free(px);
        return kiln_error(KILN_ERR_FORMAT,
                          "%s: the image decodes to %dx%d, its header says %lldx%lld", name, w, h,
                          (long long)W, (long long)H);
    }
    int64_t plane = H * W;
    for (int64_t c = 0; c < C; c++) /* x [C, H, W] <- px [H, W, C] */
        for (int64_t i = 0; i < plane; i++) x[c * plane + i] = (float)px[i * C + c];
    stbi_image_free(px);
    return KILN_OK;
}
