/* servable_lowp.c — the "quantization" section of a servable's model.json (written by kiln
 * optimize, docs/optimize.md) applied to the rebuilt graph:
 *
 *   "quantization": {"dtype": "int8", "calibration": "minmax", ...,
 *                    "layers": {"conv2d_1": {"input_scale": 0.0039, "input_signed": false},
 *                               "dense_1": {...}}}
 *   "quantization": {"dtype": "bf16", "layers": {"conv2d_1": {}, ...}}
 *
 * Each named layer must be a node of the graph with a low-precision form (kiln_lowp_supported);
 * int8 entries need a positive finite input_scale and a boolean input_signed. Anything else is
 * KILN_ERR_FORMAT naming model.json and the field, like every other defect the loader finds.
 * Other keys of the section are the optimizer's record and are not read. bf16 is dispatched at
 * load time: where the CPU has no AVX512-BF16 or AMX-BF16 (kiln/cpu.h) the layers stay fp32 and
 * the servable says so (kiln_servable_info.precision). The weights file holds fp32 weights in
 * every case; int8 kernels quantize them when a plan is compiled.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kiln/cpu.h"
#include "kiln/model.h"
#include "kiln/nn.h"
#include "model/servable_internal.h"

kiln_status kiln_servable_apply_lowp(const cJSON *q, kiln_model *m, const char *json_path,
                                     const char **precision) {
    *precision = "fp32";
    if (!q || cJSON_IsNull(q)) return KILN_OK;
#define BAD(...) kiln_error(KILN_ERR_FORMAT, __VA_ARGS__)
    if (!cJSON_IsObject(q)) return BAD("%s: \"quantization\": expected an object", json_path);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(q, "dtype"),
                *layers = cJSON_GetObjectItemCaseSensitive(q, "layers");
    int int8 = cJSON_IsString(dt) && !strcmp(dt->valuestring, "int8"),
        bf16 = cJSON_IsString(dt) && !strcmp(dt->valuestring, "bf16");
    if (!int8 && !bf16)
        return BAD("%s: \"quantization.dtype\": expected \"int8\" or \"bf16\"", json_path);
    if (!cJSON_IsObject(layers))
        return BAD("%s: \"quantization.layers\": expected an object (layer name -> parameters)", json_path);
    int run_bf16 = bf16 && kiln_cpu_has_bf16();
    for (const cJSON *l = layers->child; l; l = l->next) {
        kiln_node *n = kiln_graph_find(m->graph, l->string);
        if (!n || !kiln_lowp_supported(n))
            return BAD("%s: \"quantization.layers.%s\": %s", json_path, l->string,
                       n ? "that layer has no int8/bf16 form (only dense and conv1d/2d/3d)"
                         : "no such layer in the model");
        if (!cJSON_IsObject(l)) return BAD("%s: \"quantization.layers.%s\": expected an object", json_path, l->string);
        kiln_lowp_opts o = {bf16 ? KILN_PRECISION_BF16 : KILN_PRECISION_INT8, 1, 0};
        if (int8) {
            const cJSON *sc = cJSON_GetObjectItemCaseSensitive(l, "input_scale"),
                        *sg = cJSON_GetObjectItemCaseSensitive(l, "input_signed");
            if (!cJSON_IsNumber(sc) || !isfinite((float)sc->valuedouble) || !((float)sc->valuedouble > 0))
                return BAD("%s: \"quantization.layers.%s.input_scale\": expected a positive finite number",
                           json_path, l->string);
            if (!cJSON_IsBool(sg))
                return BAD("%s: \"quantization.layers.%s.input_signed\": expected true or false", json_path,
                           l->string);
            o.in_scale = (float)sc->valuedouble;
            o.in_signed = cJSON_IsTrue(sg);
        }
        if (int8 || run_bf16) {
            kiln_status st = kiln_lowp_convert(m->graph, n, &o);
            if (st) return kiln_error_prefix("%s: \"quantization.layers.%s\"", json_path, l->string), KILN_ERR_FORMAT;
        }
    }
#undef BAD
    *precision = int8 ? "int8" : run_bf16 ? "bf16" : "fp32 (bf16 version; this CPU has no AVX512-BF16 or AMX-BF16)";
    return KILN_OK;
}
