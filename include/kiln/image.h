/* kiln/image.h — decoding image files (JPEG, PNG, BMP, GIF) and the geometry that turns them into
 * a model's [C, H, W] input: EXIF orientation, grayscale/RGB, resize, center crop, HWC -> CHW.
 *
 * Decoding. JPEG goes through libjpeg-turbo's TurboJPEG API; PNG, BMP and GIF (its first frame)
 * through stb_image. Formats are told apart by their first bytes, never by the file name. A JPEG
 * whose decoded size may shrink (kiln_image_decode_opts.min_*) is decoded with the DCT scaling
 * factor 1/2, 1/4 or 1/8 when the scaled image still covers what the geometry needs, which skips
 * most of the IDCT work for a large photo headed for a small input. The EXIF orientation (APP1
 * "Exif", IFD0 tag 0x0112) of a JPEG is applied, so pixels come out the way a viewer shows them.
 *
 * Channels: 1 (grayscale) or 3 (RGB). A color image becomes gray by ITU-R BT.601 luma,
 * Y = 0.299 R + 0.587 G + 0.114 B, rounded (for a color JPEG this is its decoded Y channel, which
 * the JFIF encoder computed with the same weights); a gray image becomes RGB by repeating Y.
 * Alpha is dropped (not blended), as PIL's convert("RGB") does.
 *
 * Bad input never crashes and never allocates what a header merely claims: the width and height
 * are checked against KILN_IMAGE_MAX_SIDE and KILN_IMAGE_MAX_PIXELS (decompression bombs) before
 * any pixel memory is allocated, a truncated or corrupt file is KILN_ERR_FORMAT, and every
 * message starts with the name the caller gave (the file). JPEG warnings are errors too
 * (premature end, bad Huffman code: the pixels would be garbage), except "extraneous bytes
 * before marker", which does not touch the pixels and which many real files have.
 *
 * Geometry (kiln_image_spec), in this order: decode -> orient -> channels -> resize -> center
 * crop -> [C, H, W] u8. resize is either the shorter side to N (the longer one scaled by the same
 * factor and truncated to an integer, as torchvision does) or an exact [H, W]. Interpolation:
 * bilinear or area, both antialiased when they shrink (the filter's support grows with the
 * scale factor, as in PIL's resize: bilinear is the triangle filter, area the box filter of
 * OpenCV's INTER_AREA); sample centers are aligned (pixel i covers [i, i + 1)). center_crop takes
 * the middle [H, W], the top-left corner at ((h - H) / 2, (w - W) / 2) rounded down. After all
 * that the image must be out_h x out_w (the model's input), or it is an error naming the file.
 *
 * Threads. A kiln_image_decoder holds one TurboJPEG handle and scratch buffers, and is used by
 * one thread at a time; use one per thread (a data source keeps a pool of them). Every other
 * function here is pure.
 */
#ifndef KILN_IMAGE_H
#define KILN_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

#define KILN_IMAGE_MAX_SIDE   65535                /* pixels per side */
#define KILN_IMAGE_MAX_PIXELS ((int64_t)1 << 27)   /* 134M pixels: a decompression bomb beyond */
#define KILN_IMAGE_MAX_BYTES  ((int64_t)256 << 20) /* bytes of an encoded image file */

/* An 8-bit image, interleaved (HWC): pixel (y, x) channel k is data[y * stride + x * c + k]. */
typedef struct {
    int h, w, c;      /* c: 1 or 3 (decode may also report 4 internally) */
    ptrdiff_t stride; /* bytes per row, >= w * c */
    uint8_t *data;
} kiln_image;

typedef enum { KILN_INTERP_BILINEAR = 0, KILN_INTERP_AREA } kiln_interp;

typedef enum {
    KILN_IMAGE_UNKNOWN = 0,
    KILN_IMAGE_JPEG,
    KILN_IMAGE_PNG,
    KILN_IMAGE_BMP,
    KILN_IMAGE_GIF,
} kiln_image_format;

/* The format the bytes start with (KILN_IMAGE_UNKNOWN when none of the four). */
kiln_image_format kiln_image_sniff(const void *data, size_t len);
const char *kiln_image_format_name(kiln_image_format f); /* "jpeg", "png", ... */
/* True when the file name ends in .jpg .jpeg .png .bmp .gif (any case). */
int kiln_image_has_extension(const char *name);

/* ---- decoding ---- */

typedef struct kiln_image_decoder kiln_image_decoder;
kiln_status kiln_image_decoder_new(kiln_image_decoder **out);
void kiln_image_decoder_free(kiln_image_decoder *d); /* NULL is ignored */

typedef struct {
    int channels; /* 1 or 3 */
    /* JPEG DCT scaling: the decoder may return the image scaled by 1/2, 1/4 or 1/8 as long as,
     * after orientation, its height >= min_h, width >= min_w and shorter side >= min_short.
     * All 0: full size. */
    int min_h, min_w, min_short;
    int no_orientation; /* 1: ignore the EXIF orientation */
} kiln_image_decode_opts;

/* Decodes data [len] (name: for messages). *out points into d's scratch memory and stays valid
 * until d's next call. */
kiln_status kiln_image_decode(kiln_image_decoder *d, const void *data, size_t len, const char *name,
                              const kiln_image_decode_opts *o, kiln_image *out);

/* The EXIF orientation (1 to 8) of a JPEG: 1 when it has none or it cannot be read. Reads only
 * inside data [len]. */
int kiln_image_exif_orientation(const void *data, size_t len);

/* ---- geometry (pure functions) ---- */

/* dst (its data holding w * h * c bytes for the oriented size; dst->stride is set) <- src shown
 * with EXIF orientation o: 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise,
 * 7 transverse, 8 rotate 90 counter-clockwise. 5 to 8 swap the height and width. */
kiln_status kiln_image_orient(const kiln_image *src, int orientation, kiln_image *dst);
/* dst [h, w, c] (allocated by the caller, dst->h, dst->w set; c and stride are set here) <- src
 * with c channels (1 or 3; src 1, 3 or 4). */
kiln_status kiln_image_convert(const kiln_image *src, int channels, kiln_image *dst);
/* dst (dst->h, dst->w, dst->data set by the caller, c = src->c) <- src resampled. */
kiln_status kiln_image_resize(const kiln_image *src, kiln_image *dst, kiln_interp interp);
/* A view of the middle h x w of src (no copy); KILN_ERR_SHAPE when src is smaller. */
kiln_status kiln_image_center_crop(const kiln_image *src, int h, int w, kiln_image *view);
/* dst [c, h, w] <- src [h, w, c]. */
void kiln_image_to_chw(const kiln_image *src, uint8_t *dst);

/* ---- the whole pipeline ---- */

typedef struct {
    int channels;           /* 1 or 3 */
    int resize_short;       /* the shorter side to this (0: not) */
    int resize_h, resize_w; /* exact size (0 0: not); not with resize_short */
    kiln_interp interp;
    int crop_h, crop_w; /* center crop (0 0: none) */
    int out_h, out_w;   /* what every image must come out as */
} kiln_image_spec;

/* Checks a spec on its own (sizes in range, one kind of resize, the crop and resize leave
 * out_h x out_w when they fix the size). Messages name the problem, not a file. */
kiln_status kiln_image_spec_check(const kiln_image_spec *s);
/* Decodes data [len] and applies s, writing chw [channels, out_h, out_w]. Errors name `name`. */
kiln_status kiln_image_process(kiln_image_decoder *d, const void *data, size_t len,
                               const char *name, const kiln_image_spec *s, uint8_t *chw);
/* kiln_image_process of a file's bytes (at most KILN_IMAGE_MAX_BYTES), read with d's buffer. */
kiln_status kiln_image_load(kiln_image_decoder *d, const char *path, const kiln_image_spec *s,
                            uint8_t *chw);
/* A file's bytes (at most KILN_IMAGE_MAX_BYTES) into d's buffer: *data [*len] stays valid until
 * d's next read_file or load. KILN_ERR_IO when it cannot be read, naming the path. */
kiln_status kiln_image_read_file(kiln_image_decoder *d, const char *path, const void **data,
                                 size_t *len);
/* The height and width data [len] decodes to, as shown (after the EXIF orientation), from its
 * header alone; checked against the limits like kiln_image_decode. */
kiln_status kiln_image_info(kiln_image_decoder *d, const void *data, size_t len, const char *name,
                            int *h, int *w);

#endif
