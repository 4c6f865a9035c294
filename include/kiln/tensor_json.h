/* kiln/tensor_json.h — tensors in the JSON bodies of TF Serving's REST API and of the Open
 * Inference Protocol (KServe v2), both ways.
 *
 * Requests are parsed by a purpose-built one-pass parser, not into a cJSON tree: numbers go
 * straight into the typed buffer of their tensor (a 60 MB body of numbers costs its tensors
 * and nothing per number), shapes are inferred from the nesting as it is read, and the work is
 * linear in the body. Responses are written by a streaming writer into a kiln_sbuf.
 *
 * TF Serving predict (https://www.tensorflow.org/tfx/serving/api_rest):
 *   {"signature_name": "...",               optional
 *    "instances": [...]}                    row format, or
 *    "inputs": ...}                         columnar format
 *   Row format: a list with one entry per instance. An entry is a value (a number, a nested list
 *   of numbers, a string, or {"b64": "..."}), giving one unnamed input of shape
 *   [n_instances, ...entry shape]; or an object {"name": value, ...}, giving one input per name
 *   (every instance must have the same names and, per name, the same shape). Columnar: the
 *   value itself (one unnamed input, shape = nesting) or {"name": value, ...}.
 *   Responses: {"predictions": [...]} (row: one entry per instance, the output's row or, with
 *   several outputs, an object {"name": row, ...}) and {"outputs": ...} (columnar: the value, or
 *   {"name": value, ...}).
 * Open Inference Protocol v2 (https://kserve.github.io/website/latest/modelserving/data_plane/
 * v2_protocol/):
 *   {"id": "...", "parameters": {...}, "inputs": [{"name", "shape", "datatype", "data",
 *   "parameters"}], "outputs": [{"name", "parameters"}]}; data is a flat or nested list in
 *   row-major order with prod(shape) elements. Responses:
 *   {"model_name", "model_version", "id", "outputs": [{"name", "shape", "datatype", "data"}]}.
 *   Triton's binary tensor data extension (server/docs/protocol/extension_binary_data.md), which
 *   tritonclient uses by default, is read and written too: tensors as little-endian bytes after
 *   the JSON, named by "binary_data_size", "binary_data" and "binary_data_output" parameters
 *   (kiln_tj_parse_v2_binary, kiln_tj_write_v2_binary).
 *
 * Element types. What an input becomes (float32, int32, int64 or bytes) is the model's call: the
 * caller passes a kiln_tj_schema whose callback answers per input name (and rejects unknown
 * names); without one, numbers become float32 and strings bytes. Values are checked against
 * the target: integers must be integral and in range, float32 values in float32 range.
 * v2 data must also match its declared datatype (BOOL: true/false; UINT8..INT64: integers in
 * that type's range; FP32/FP64: numbers; BYTES: strings); FP16 and BF16 are refused.
 * Bytes inputs: a JSON string gives its UTF-8 bytes; {"b64": "..."} gives the decoded bytes
 * (standard or URL-safe alphabet, padding optional).
 *
 * NaN and Infinity: JSON has no such numbers, but TF Serving (api_rest.md, "JSON conformance")
 * and Triton read the bare tokens NaN, Infinity and -Infinity (rapidjson's kParseNanAndInfFlag,
 * which also takes -NaN, Inf and -Inf) wherever a number may stand, and so does kiln: float
 * inputs (FP32, FP64, and the float32 the schema asks for) take them; integer and BOOL inputs,
 * shapes and strings refuse them ("NaN is not an integer (datatype INT32)"; "NaN" in quotes is a
 * string). A literal too large for the type (1e400) is still an error. Outputs are written as
 * the model produced them: a non-finite float becomes NaN, Infinity or -Infinity, as both write
 * them (Python's json reads them).
 *
 * Errors name where in the body: "instances[3][1]: expected 28 values, got 27",
 * "inputs.image[0][2]: expected a number, got a string", "input 'x' data[5]: 1.5 is not an
 * integer (datatype INT32)", "input 'x': shape [2, 3] needs 6 values, data has 5". Syntax errors
 * name line and column. Parsing returns KILN_ERR_FORMAT for malformed JSON, KILN_ERR_INVALID
 * for well-formed bodies that break these rules (both HTTP 400), the schema's own code when it
 * refuses an input, and KILN_ERR_NOMEM when memory runs out.
 */
#ifndef KILN_TENSOR_JSON_H
#define KILN_TENSOR_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/sbuf.h"
#include "kiln/status.h"
#include "kiln/tensor.h"

#define KILN_TJ_MAX_INPUTS 64 /* inputs (or outputs) per request */

typedef enum { KILN_TJ_F32 = 0, KILN_TJ_I32, KILN_TJ_I64, KILN_TJ_BYTES } kiln_tj_type;

/* "FP32", "INT32", "INT64", "BYTES": the v2 datatype names. */
const char *kiln_tj_type_name(kiln_tj_type t);

/* One parsed input; its buffers (malloc'd) are freed with the request. */
typedef struct {
    char *name; /* "" for TF's unnamed input */
    kiln_tj_type type;
    kiln_shape shape;  /* inferred from the nesting (TF) or given (v2) */
    void *data;        /* F32/I32/I64: [numel] values, row-major; BYTES: the bytes, concatenated */
    int64_t *offsets;  /* BYTES: [numel + 1], element i is data[offsets[i], offsets[i+1]) */
    size_t data_bytes; /* size of data */
} kiln_tj_tensor;

/* A view of a numeric input as a kiln_tensor (dtype F32, I32 or I64; data not copied). */
kiln_tensor kiln_tj_as_tensor(const kiln_tj_tensor *t);

typedef enum { KILN_TJ_TF_ROW = 0, KILN_TJ_TF_COLUMNAR, KILN_TJ_V2 } kiln_tj_format;

typedef struct {
    kiln_tj_format format;
    char *signature_name; /* TF; NULL when absent */
    char *id;             /* v2; NULL when absent (echo it in the response) */
    int named;            /* TF: the inputs came as {"name": value} */
    int n_inputs;
    kiln_tj_tensor *inputs;
    int n_outputs; /* v2: the outputs asked for; 0 = all */
    char **outputs;
    /* v2, binary tensor data extension: which outputs to answer as binary data.
     * outputs_binary[i] for outputs[i]: its "parameters": {"binary_data": b}, else
     * binary_data_output (the request's "parameters": {"binary_data_output": b}), which is
     * also the choice for every output when none is asked for by name. */
    unsigned char *outputs_binary; /* [n_outputs] */
    int binary_data_output;
} kiln_tj_request;

/* What the model wants for an input. Called once per input name, after signature_name (TF;
 * NULL when absent or for v2) is known. Set *type and return KILN_OK, or return an error whose
 * message (kiln_error) says why the name is refused (the parser prefixes where it was seen). */
typedef kiln_status (*kiln_tj_input_fn)(void *ctx, const char *signature_name,
                                        const char *input_name, kiln_tj_type *type);
typedef struct {
    kiln_tj_input_fn input_type;
    void *ctx;
} kiln_tj_schema;

/* Parse a body of len bytes (body[len] need not be NUL). schema may be NULL. On error *out is
 * left empty (nothing to free) and kiln_last_error() says what and where. */
kiln_status kiln_tj_parse_tf(const char *body, size_t len, const kiln_tj_schema *schema,
                             kiln_tj_request *out);
kiln_status kiln_tj_parse_v2(const char *body, size_t len, const kiln_tj_schema *schema,
                             kiln_tj_request *out);
/* A v2 request with Triton's binary tensor data extension: the JSON is body[0, json_len) (the
 * Inference-Header-Content-Length header), and body[json_len, len) holds, in the order of
 * "inputs", the data of each input whose "parameters" has "binary_data_size": n (n bytes,
 * little-endian, row-major, no padding; BOOL one byte 0 or 1; BYTES elements each a 4-byte
 * little-endian length and the bytes; FP16/BF16 refused as in JSON). Every byte must belong to
 * an input. (kiln_tj_parse_v2, for a request without the header, refuses binary_data_size.) */
kiln_status kiln_tj_parse_v2_binary(const char *body, size_t len, size_t json_len,
                                    const kiln_tj_schema *schema, kiln_tj_request *out);
/* Triton's raw binary request (Inference-Header-Content-Length: 0): the whole body is the data
 * of the model's one input, of datatype dtype ("FP32", ...) and the given full shape (batch
 * included); every output is answered as binary data (binary_data_output set). */
kiln_status kiln_tj_parse_v2_raw(const char *body, size_t len, const char *input_name,
                                 const char *dtype, const kiln_shape *shape,
                                 const kiln_tj_schema *schema, kiln_tj_request *out);
void kiln_tj_request_free(kiln_tj_request *r);

/* One model output to write. data holds numel(shape) values of type F32, I32 or I64; for BYTES,
 * numel(shape) pointers to NUL-terminated strings (const char *const *), written as JSON
 * strings (bytes that are not UTF-8 become U+FFFD). binary (v2 only): written as binary tensor
 * data after the JSON instead of "data" (see kiln_tj_write_v2_binary). */
typedef struct {
    const char *name;
    kiln_tj_type type;
    kiln_shape shape;
    const void *data;
    int binary;
} kiln_tj_output;

/* {"predictions": ...}: every output needs a leading batch dim, the same for all. */
kiln_status kiln_tj_write_tf_row(kiln_sbuf *b, const kiln_tj_output *outs, int n);
/* {"outputs": ...}. */
kiln_status kiln_tj_write_tf_columnar(kiln_sbuf *b, const kiln_tj_output *outs, int n);
/* {"model_name": ..., "model_version": ..., "id": ..., "outputs": [...]}; model_version and id
 * are left out when NULL. */
kiln_status kiln_tj_write_v2(kiln_sbuf *b, const char *model_name, const char *model_version,
                             const char *id, const kiln_tj_output *outs, int n);
/* The same with Triton's binary tensor data extension: an output with .binary set carries
 * "parameters": {"binary_data_size": n} instead of "data", and its n bytes (little-endian,
 * row-major; BYTES elements each a 4-byte little-endian length and the bytes) follow the JSON,
 * in the order of the outputs. *json_len gets the JSON's length: the answer's
 * Inference-Header-Content-Length when it is less than what was written (b->len grew by
 * more), and its Content-Type is then application/octet-stream. */
kiln_status kiln_tj_write_v2_binary(kiln_sbuf *b, const char *model_name, const char *model_version,
                                    const char *id, const kiln_tj_output *outs, int n,
                                    size_t *json_len);

#endif
