/* image_input.c — encoded images as model inputs: TF Serving's {"b64": "..."} instances.
 *
 * Image classifiers served by TF Serving commonly take JPEG or PNG bytes, base64-encoded in
 * the JSON body. kiln models take pixels, so the server decodes the bytes (stb_image: PNG,
 * JPEG, BMP, GIF, PNM, TGA, PSD, HDR, PIC) into the model's input row [C, H, W] (C 1: gray,
 * 3: RGB, 4: RGBA; stb converts) as raw 0..255 values — what the training images were — and
 * the export's preprocessing follows as for any request. The size must match: resizing would
 * silently change what the model sees, so a mismatch is an error naming both sizes.
 */
#include <stb_image.h>
#include <stdio.h>
#include <string.h>

#include "serve/serve_internal.h"

kiln_status serve_image_decode(const unsigned char *bytes, size_t n, const kiln_shape *in,
                               float *x, const char *where) {
    /* in: the model's input shape with the batch, [-1, C, H, W] */
    if (in->ndim != 4 || !(in->dims[1] == 1 || in->dims[1] == 3 || in->dims[1] == 4))
        return kiln_error(KILN_ERR_INVALID,
                          "%s: an encoded image was sent, but the model's input is not an image "
                          "[C, H, W] with 1, 3 or 4 channels",
                          where);
    int c = (int)in->dims[1], h = (int)in->dims[2], w = (int)in->dims[3], iw, ih, comp;
    if (n > (size_t)INT32_MAX)
        return kiln_error(KILN_ERR_INVALID, "%s: image of %zu bytes is too large", where, n);
    unsigned char *px = stbi_load_from_memory(bytes, (int)n, &iw, &ih, &comp, c);
    if (!px)
        return kiln_error(KILN_ERR_INVALID, "%s: not a readable image (%s)", where,
                          stbi_failure_reason());
    if (iw != w || ih != h) {
        stbi_image_free(px);
        return kiln_error(KILN_ERR_INVALID, "%s: the image is %dx%d (width x height), the model "
                          "takes %dx%d", where, iw, ih, w, h);
    }
    /* px [h, w, c] -> x [c, h, w] */
    for (int k = 0; k < c; k++)
        for (int i = 0; i < h * w; i++) x[(size_t)k * h * w + i] = (float)px[(size_t)i * c + k];
    stbi_image_free(px);
    return KILN_OK;
}
