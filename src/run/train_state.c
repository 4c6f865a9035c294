/* train_state.c — state.json (see train_state.h), JSON via cJSON, written atomically. The best
 * value is stored as a decimal string with 17 significant digits so that it reads back bit for
 * bit (a double's exact round trip), which keeps resumed early stopping identical. */
#include "run/train_state.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/version.h"
#include "kiln/fileio.h"
#include "kiln/mem.h"

kiln_status kiln_train_state_write(const char *path, const kiln_train_state *s) {
    cJSON *o = cJSON_CreateObject();
    char best[64];
    snprintf(best, sizeof best, "%.17g", s->best);
    if (!o || !cJSON_AddNumberToObject(o, "step", (double)s->step) || !cJSON_AddNumberToObject(o, "epoch", (double)s->epoch) ||
        !cJSON_AddNumberToObject(o, "batch", (double)s->batch) || !cJSON_AddBoolToObject(o, "has_best", s->has_best) ||
        !cJSON_AddStringToObject(o, "best", best) || !cJSON_AddNumberToObject(o, "best_step", (double)s->best_step) ||
        !cJSON_AddNumberToObject(o, "wait", (double)s->wait) ||
        !cJSON_AddStringToObject(o, "best_checkpoint", s->best_checkpoint) ||
        !cJSON_AddStringToObject(o, "config_hash", s->config_hash) ||
        !cJSON_AddStringToObject(o, "kiln_version", KILN_VERSION) ||
        (s->stage_step + s->stage + s->stage_epoch > 0 &&
         (!cJSON_AddNumberToObject(o, "stage", (double)s->stage) ||
          !cJSON_AddNumberToObject(o, "stage_step", (double)s->stage_step) ||
          !cJSON_AddNumberToObject(o, "stage_epoch", (double)s->stage_epoch)))) {
        cJSON_Delete(o);
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", path);
    }
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text) return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", path);
    kiln_status st = kiln_file_write_atomic(path, text, strlen(text));
    free(text);
    return st;
}

static int get_int(const cJSON *o, const char *k, int64_t *v) {
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(n) || n->valuedouble < 0 || n->valuedouble > 9e15) return -1;
    *v = (int64_t)n->valuedouble;
    return 0;
}

static int get_str(const cJSON *o, const char *k, char *buf, size_t cap) {
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsString(n) || strlen(n->valuestring) >= cap) return -1;
    memcpy(buf, n->valuestring, strlen(n->valuestring) + 1);
    return 0;
}

kiln_status kiln_train_state_read(const char *path, kiln_train_state *s) {
    void *text;
    size_t len;
    kiln_status st = kiln_file_read_all(path, &text, &len, 1 << 20);
    if (st) return st;
    cJSON *o = cJSON_ParseWithLength(text, len);
    kiln_free(text);
    memset(s, 0, sizeof *s);
    char best[64];
    const cJSON *hb = o ? cJSON_GetObjectItemCaseSensitive(o, "has_best") : NULL;
    if (!o || get_int(o, "step", &s->step) || get_int(o, "epoch", &s->epoch) || get_int(o, "batch", &s->batch) ||
        !cJSON_IsBool(hb) || get_str(o, "best", best, sizeof best) || get_int(o, "best_step", &s->best_step) ||
        get_int(o, "wait", &s->wait) || get_str(o, "best_checkpoint", s->best_checkpoint, sizeof s->best_checkpoint) ||
        get_str(o, "config_hash", s->config_hash, sizeof s->config_hash)) {
        cJSON_Delete(o);
        return kiln_error(KILN_ERR_FORMAT, "%s: not a kiln training state (missing or malformed fields)", path);
    }
    if (cJSON_GetObjectItemCaseSensitive(o, "stage") &&
        (get_int(o, "stage", &s->stage) || get_int(o, "stage_step", &s->stage_step) ||
         get_int(o, "stage_epoch", &s->stage_epoch))) {
        cJSON_Delete(o);
        return kiln_error(KILN_ERR_FORMAT, "%s: malformed stage fields", path);
    }
    s->has_best = cJSON_IsTrue(hb);
    s->best = strtod(best, NULL);
    cJSON_Delete(o);
    return KILN_OK;
}
