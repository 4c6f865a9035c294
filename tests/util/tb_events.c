/* tb_events.c — see tb_events.h. */
#include "tb_events.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint32_t tb_crc32c_bitwise(const void *data, size_t n) {
    const unsigned char *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

uint32_t tb_masked_crc(const void *data, size_t n) {
    uint32_t c = tb_crc32c_bitwise(data, n);
    return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

static uint64_t le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

int tb_events_load(const char *path, tb_events *out, char *err, size_t cap) {
    memset(out, 0, sizeof *out);
    snprintf(out->path, sizeof out->path, "%s", path);
    FILE *f = fopen(path, "rb");
    if (!f) return snprintf(err, cap, "%s: cannot open", path), -1;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(size > 0 ? (size_t)size : 1);
    size_t len = buf ? fread(buf, 1, (size_t)size, f) : 0;
    fclose(f);
    if (!buf || len != (size_t)size)
        return free(buf), snprintf(err, cap, "%s: cannot read", path), -1;
    int rc = 0, capn = 0;
    size_t at = 0;
    while (at < len) {
        if (len - at < 12) {
            rc = -1, snprintf(err, cap, "%s: offset %zu: truncated header", path, at);
            break;
        }
        uint64_t n = le(buf + at, 8);
        if ((uint32_t)le(buf + at + 8, 4) != tb_masked_crc(buf + at, 8)) {
            rc = -1, snprintf(err, cap, "%s: offset %zu: bad length checksum", path, at);
            break;
        }
        if (n > len - at - 12 || len - at - 12 - n < 4) {
            rc = -1, snprintf(err, cap, "%s: offset %zu: truncated record", path, at);
            break;
        }
        const unsigned char *data = buf + at + 12;
        if ((uint32_t)le(data + n, 4) != tb_masked_crc(data, (size_t)n)) {
            rc = -1, snprintf(err, cap, "%s: offset %zu: bad data checksum", path, at);
            break;
        }
        Tensorflow__Event *ev = tensorflow__event__unpack(NULL, (size_t)n, data);
        if (!ev) {
            rc = -1, snprintf(err, cap, "%s: offset %zu: not an Event", path, at);
            break;
        }
        if (out->n == capn) {
            capn = capn ? 2 * capn : 64;
            out->ev = realloc(out->ev, (size_t)capn * sizeof *out->ev);
            out->offset = realloc(out->offset, (size_t)capn * sizeof *out->offset);
        }
        out->ev[out->n] = ev, out->offset[out->n] = (int64_t)at, out->n++;
        at += 12 + (size_t)n + 4;
    }
    free(buf);
    return rc;
}

void tb_events_free(tb_events *e) {
    for (int i = 0; i < e->n; i++) tensorflow__event__free_unpacked(e->ev[i], NULL);
    free(e->ev);
    free(e->offset);
    memset(e, 0, sizeof *e);
}

const Tensorflow__Summary__Value *tb_value(const tb_events *e, int i) {
    const Tensorflow__Event *ev = e->ev[i];
    if (ev->what_case != TENSORFLOW__EVENT__WHAT_SUMMARY || ev->summary->n_value != 1) return NULL;
    return ev->summary->value[0];
}

int tb_count_tag(const tb_events *e, const char *tag, int *first) {
    int n = 0;
    for (int i = 0; i < e->n; i++) {
        const Tensorflow__Summary__Value *v = tb_value(e, i);
        if (!v || strcmp(v->tag, tag)) continue;
        if (n++ == 0 && first) *first = i;
    }
    return n;
}

Tensorboard__Hparams__HParamsPluginData *tb_hparams_content(const Tensorflow__Summary__Value *v) {
    if (!v || !v->metadata || !v->metadata->plugin_data) return NULL;
    const ProtobufCBinaryData *c = &v->metadata->plugin_data->content;
    return tensorboard__hparams__hparams_plugin_data__unpack(NULL, c->len, c->data);
}

static int cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int tb_event_files(const char *dir, char **names, int cap) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < cap) {
        if (strncmp(de->d_name, "events.out.tfevents.", 20)) continue;
        size_t len = strlen(dir) + strlen(de->d_name) + 2;
        names[n] = malloc(len);
        snprintf(names[n], len, "%s/%s", dir, de->d_name);
        n++;
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp);
    return n;
}
