/* instances_image.c — an image file as one instance (kiln/instances.h), decoded by stb_image.
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

#include "serve/instances_internal.h"

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
