/* inputs_images.c — data.source: images: a config's data.image, data.on_error and data.cache
 * turned into kiln_data_load_images calls (see inputs_images.h and docs/data.md).
 *
 * The geometry must end at model.input [C, H, W]: data.image.channels (grayscale = 1, rgb = 3;
 * by default whatever C is) must give C, and a center_crop (or, without one, an exact resize)
 * must give [H, W]; otherwise it is a config error naming both keys. A shorter-side resize
 * without a crop fixes only one side, so only the images can tell: each one that does not come
 * out H x W is an error naming its file.
 *
 * data.cache: decoded gives each split a decoded cache out of one budget, half of the machine's
 * memory or data.cache_mb when smaller, train first (kiln_inputs.cache_left keeps what is left).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "model/inputs_images.h"

/* An int or [h, w] config value into *h, *w (an int n gives n, n; *pair says which). */
static void int_pair(const kiln_cfg *c, int *h, int *w, int *pair) {
    int64_t a = 0, b = 0;
    *pair = c->type == KILN_CFG_SEQ;
    if (*pair) {
        kiln_cfg_parse_int(c->items[0], &a), kiln_cfg_parse_int(c->items[1], &b);
    } else {
        kiln_cfg_parse_int(c, &a), b = a;
    }
    *h = (int)a, *w = (int)b;
}

static const char *shape_text(const kiln_model *m, char *buf, size_t cap) {
    kiln_shape s = kiln_node_shape(m->input);
    s.ndim--;
    memmove(s.dims, s.dims + 1, sizeof s.dims - sizeof s.dims[0]);
    return kiln_shape_str(&s, buf, cap);
}

/* The spec from data.image and model.input; config errors carry the key's position. */
kiln_status kiln_inputs_image_spec(const kiln_cfg *cfg, const kiln_model *m, kiln_image_spec *s) {
    kiln_shape in = kiln_node_shape(m->input); /* [B, C, H, W] */
    char where[300], sh[128];
    const kiln_cfg *img = kiln_cfg_at(cfg, "data.image");
    memset(s, 0, sizeof *s);
    shape_text(m, sh, sizeof sh);
    if (in.ndim != 4 || (in.dims[1] != 1 && in.dims[1] != 3))
        return kiln_error(KILN_ERR_INVALID,
                          "data.source %s: model.input must be [C, H, W] with C = 1 "
                          "(grayscale) or 3 (rgb), not %s",
                          kiln_cfg_str(cfg, "data.source", "images"), sh);
    int C = (int)in.dims[1];
    s->out_h = (int)in.dims[2], s->out_w = (int)in.dims[3];
    const kiln_cfg *ch = img ? kiln_cfg_child(img, "channels") : NULL;
    s->channels = ch ? (!strcmp(ch->text, "rgb") ? 3 : 1) : C;
    if (s->channels != C)
        return kiln_error(KILN_ERR_INVALID,
                          "%s: data.image.channels: %s gives %d channel%s, but model.input is %s",
                          kiln_cfg_where(ch, where, sizeof where), ch->text, s->channels,
                          s->channels == 1 ? "" : "s", sh);
    const kiln_cfg *rs = img ? kiln_cfg_child(img, "resize") : NULL;
    const kiln_cfg *cc = img ? kiln_cfg_child(img, "center_crop") : NULL;
    int pair = 0;
    if (rs) {
        int h, w;
        int_pair(rs, &h, &w, &pair);
        if (pair)
            s->resize_h = h, s->resize_w = w;
        else
            s->resize_short = h;
    }
    if (cc) {
        int cpair;
        int_pair(cc, &s->crop_h, &s->crop_w, &cpair);
    }
    const char *interp = img ? kiln_cfg_str(img, "interpolation", "bilinear") : "bilinear";
    s->interp = !strcmp(interp, "area") ? KILN_INTERP_AREA : KILN_INTERP_BILINEAR;
    const kiln_cfg *fix = cc ? cc : pair ? rs : NULL; /* what fixes the final size */
    int fh = cc ? s->crop_h : s->resize_h, fw = cc ? s->crop_w : s->resize_w;
    if (fix && (fh != s->out_h || fw != s->out_w))
        return kiln_error(KILN_ERR_INVALID,
                          "%s: data.image.%s gives %d x %d images (height x width), but "
                          "model.input is %s",
                          kiln_cfg_where(fix, where, sizeof where), cc ? "center_crop" : "resize",
                          fh, fw, sh);
    kiln_status st = kiln_image_spec_check(s);
    if (st) {
        kiln_error_prefix("%s: data.image", kiln_cfg_where(img ? img : cfg, where, sizeof where));
        return KILN_ERR_INVALID;
    }
    return KILN_OK;
}

int64_t kiln_inputs_cache_budget(const kiln_cfg *cfg, kiln_inputs *in) {
    if (strcmp(kiln_cfg_str(cfg, "data.cache", "none"), "decoded")) return 0;
    if (in->cache_left < 0) {
        long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
        in->cache_left = pages > 0 && psize > 0 ? (int64_t)pages * psize / 2 : 0;
        int64_t mb = kiln_cfg_int(cfg, "data.cache_mb", 0); /* 0: half the memory */
        if (mb > 0 && (mb << 20) < in->cache_left) in->cache_left = mb << 20;
    }
    return in->cache_left;
}

void kiln_inputs_cache_used(kiln_inputs *in, int64_t given, int64_t rows, int64_t row_bytes) {
    if (!given) return;
    int64_t used = rows * row_bytes;
    in->cache_left -= used < given ? used : given;
}

kiln_status kiln_inputs_drop_unreadable(kiln_inputs *in, kiln_dataset **ds) {
    kiln_dataset *good = NULL;
    int64_t skipped = 0;
    char first[sizeof in->skipped_first];
    kiln_status st = kiln_data_drop_unreadable(*ds, &good, &skipped, first, sizeof first);
    kiln_dataset_free(*ds);
    *ds = good;
    if (st) return st;
    if (skipped && !in->skipped) snprintf(in->skipped_first, sizeof in->skipped_first, "%s", first);
    in->skipped += skipped;
    return KILN_OK;
}

kiln_status kiln_inputs_images_split(const kiln_cfg *cfg, const char *split, const kiln_cfg *sp,
                                     const kiln_model *m, kiln_inputs *in, kiln_dataset **out) {
    *out = NULL;
    char where[300];
    kiln_image_source_options o = {0};
    kiln_status st = kiln_inputs_image_spec(cfg, m, &o.spec);
    if (st) return st;
    const kiln_cfg *dir = sp ? kiln_cfg_child(sp, "path") : NULL;
    const kiln_cfg *man = sp ? kiln_cfg_child(sp, "manifest") : NULL;
    if (!dir == !man)
        return kiln_error(KILN_ERR_INVALID,
                          "%s: data.%s: source images needs 'path' (a folder of class folders) "
                          "or 'manifest' (a CSV or JSONL file), one of them",
                          kiln_cfg_where(sp ? sp : cfg, where, sizeof where), split);
    o.root = dir ? dir->text : NULL, o.manifest = man ? man->text : NULL;
    /* validation and test take the training split's class names */
    const char *names[4096];
    int k = in->train ? kiln_dataset_num_classes(in->train) : 0;
    if (k > 0 && k <= 4096 && kiln_dataset_class_name(in->train, 0)) {
        for (int c = 0; c < k; c++) names[c] = kiln_dataset_class_name(in->train, c);
        o.classes = names, o.num_classes = k;
    }
    o.cache_bytes = kiln_inputs_cache_budget(cfg, in);
    kiln_dataset *ds = NULL;
    if ((st = kiln_data_load_images(&o, &ds))) return st;
    kiln_inputs_cache_used(in, o.cache_bytes, kiln_dataset_rows(ds),
                           (int64_t)o.spec.channels * o.spec.out_h * o.spec.out_w);
    if (!strcmp(kiln_cfg_str(cfg, "data.on_error", "error"), "skip")) {
        if ((st = kiln_inputs_drop_unreadable(in, &ds))) return st;
    }
    *out = ds;
    return KILN_OK;
}
