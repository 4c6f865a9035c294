/* schema.c — what a kiln config may say: keys, types, bounds, choices and defaults
 * (docs/config.md is the user's version of this table), and kiln_config_resolve, which checks a
 * tree against it and fills the defaults.
 *
 * A schema entry is a key with a type. Maps list their keys; ONEOF entries (optimizer, schedule,
 * loss, each layer, each metric) are written either as a bare name ("adam", "flatten") or as a
 * one-key map whose value holds that alternative's parameters ({adam: {learning_rate: 0.01}});
 * resolve rewrites the bare form into the map form so readers see one shape. Errors carry
 * file:line:column and the key path, and unknown keys get the closest valid one suggested.
 * Checks that need more than one key (shape chains, from: names, which files a data source
 * needs) belong to the code that builds the model and the data, which has the positions too.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/config.h"

typedef enum {
    T_STR, T_INT, T_NUM, T_BOOL, T_ENUM,
    T_MAP,        /* keys in sub */
    T_SEQ_INT, T_SEQ_NUM, T_SEQ_STR,
    T_STRS,       /* a string or a list of strings (from:) */
    T_INT_PAIR,   /* an int or [int, int] (kernel sizes) */
    T_ONEOF,      /* one of sub, by name */
    T_ONEOF_SEQ,  /* a list of T_ONEOF items (layers, metrics) */
    T_ANY,        /* checked elsewhere (stages) */
    T_STRS_OR_MAPS, /* a list of strings, or a map of user-named entries each a T_MAP of sub */
    T_INTS,       /* an int or a list of nd ints (kernel sizes of an nd-axis conv) */
    T_PADDING,    /* valid | same | an int | a list of nd ints | a list of 2 nd ints (ONNX order) */
} type;

typedef struct schema schema;
struct schema {
    const char *key;
    type t;
    const char *def; /* default, as YAML text; NULL: none */
    const schema *sub;
    const char *const *choices; /* T_ENUM */
    double lo, hi;              /* numeric bounds when lo < hi (inclusive lo, hi) */
    int required;
    int lo_open;                /* lo itself is out of range (epsilon: above 0) */
    int nd;                     /* T_INTS, T_PADDING: spatial axes */
};

#define END {NULL, 0, NULL, NULL, NULL, 0, 0, 0, 0}
#define ANYSIGN -1e300, 1e300

static const char *const ACTS[] = {"none", "linear", "relu", "leaky_relu", "gelu", "sigmoid", "tanh",
                                   "relu6", "hard_sigmoid", "hard_swish", NULL};
static const char *const INITS[] = {"zeros", "ones", "glorot_uniform", "glorot_normal", "he_uniform",
                                    "he_normal", NULL};
static const char *const PADS[] = {"valid", "same", NULL};
static const char *const SOURCES[] = {"idx", "csv", "npy", "images", "tfrecord", "kafka", NULL};
static const char *const TASKS[] = {"classification", "regression", NULL};
static const char *const MODES[] = {"auto", "min", "max", NULL};
static const char *const PRECISIONS[] = {"fp32", NULL}; /* bf16 mixed precision: not built yet */

/* ---- layers ---- */
#define COMMON {"name", T_STR}, {"from", T_STRS}
/* conv and pool padding (valid | same | N | d ints | 2d ints), pools' ceil_mode, d-axis sizes */
#define PADDING(d) {.key = "padding", .t = T_PADDING, .def = "valid", .choices = PADS, .lo = 0, .hi = 1e6, .nd = d}
#define CEIL {"ceil_mode", T_BOOL, "false"}
#define INTS(k, d, n, req) {.key = k, .t = T_INTS, .def = d, .lo = 1, .hi = 1e6, .required = req, .nd = n}
#define INIT(k, d) {k, T_ENUM, d, NULL, INITS}
static const schema L_DENSE[] = {{"units", T_INT, NULL, NULL, NULL, 1, 1e9, 1}, {"activation", T_ENUM, "none", NULL, ACTS},
                                 {"use_bias", T_BOOL, "true"}, INIT("kernel_initializer", "glorot_uniform"),
                                 INIT("bias_initializer", "zeros"), COMMON, END};
static const schema L_CONV[] = {{"filters", T_INT, NULL, NULL, NULL, 1, 1e9, 1}, {"kernel", T_INT_PAIR, NULL, NULL, NULL, 1, 1e6, 1},
                                {"strides", T_INT_PAIR, "1", NULL, NULL, 1, 1e6}, PADDING(2),
                                {"dilation", T_INT_PAIR, "1", NULL, NULL, 1, 1e6}, {"groups", T_INT, "1", NULL, NULL, 1, 1e9},
                                {"activation", T_ENUM, "none", NULL, ACTS}, {"use_bias", T_BOOL, "true"},
                                INIT("kernel_initializer", "glorot_uniform"), INIT("bias_initializer", "zeros"), COMMON, END};
static const schema L_POOL[] = {{"size", T_INT_PAIR, "2", NULL, NULL, 1, 1e6}, {"strides", T_INT_PAIR, NULL, NULL, NULL, 1, 1e6},
                                PADDING(2), CEIL, COMMON, END};
static const schema L_BN[] = {{"momentum", T_NUM, "0.99", NULL, NULL, 0, 1}, {"epsilon", T_NUM, "0.001", NULL, NULL, 1e-12, 1},
                              {"scale", T_BOOL, "true"}, {"center", T_BOOL, "true"}, COMMON, END};
static const schema L_LN[] = {{"epsilon", T_NUM, "0.00001", NULL, NULL, 1e-12, 1}, {"scale", T_BOOL, "true"},
                              {"center", T_BOOL, "true"}, COMMON, END};
static const schema L_DROPOUT[] = {{"rate", T_NUM, NULL, NULL, NULL, 0, 0.999999, 1}, COMMON, END};
static const schema L_RESHAPE[] = {{"shape", T_SEQ_INT, NULL, NULL, NULL, -1, 1e12, 1}, COMMON, END};
static const schema L_CONCAT[] = {{"axis", T_INT, "1", NULL, NULL, -6, 5}, COMMON, END};
static const schema L_ACTIVATION[] = {{"activation", T_ENUM, NULL, NULL, ACTS, 0, 0, 1}, COMMON, END};
static const schema L_LEAKY[] = {{"alpha", T_NUM, "0.01", NULL, NULL, 0, 1e6}, COMMON, END};
static const schema L_EMBED[] = {{"input_dim", T_INT, NULL, NULL, NULL, 1, 1e12, 1},
                                 {"output_dim", T_INT, NULL, NULL, NULL, 1, 1e9, 1}, COMMON, END};
static const schema L_PLAIN[] = {COMMON, END};
/* issue 13: clip, upsampling (size of upsampling3d: an int or [d, h, w], checked in model.c) */
static const char *const UP1[] = {"nearest", "linear", NULL}, *const UP2[] = {"nearest", "bilinear", NULL},
                  *const UP3[] = {"nearest", "trilinear", NULL};
static const schema L_CLIP[] = {{"min", T_NUM, NULL, NULL, NULL, ANYSIGN}, {"max", T_NUM, NULL, NULL, NULL, ANYSIGN}, COMMON, END};
static const schema L_UP1[] = {{"size", T_INT, "2", NULL, NULL, 1, 65536}, {"interpolation", T_ENUM, "nearest", NULL, UP1}, COMMON, END};
static const schema L_UP2[] = {{"size", T_INT_PAIR, "2", NULL, NULL, 1, 65536}, {"interpolation", T_ENUM, "nearest", NULL, UP2},
                               COMMON, END};
static const schema L_UP3[] = {{"size", T_ANY, "2"}, {"interpolation", T_ENUM, "nearest", NULL, UP3}, COMMON, END};
/* conv1d / conv3d / conv2d_transpose / depthwise_conv2d, 1-D and 3-D pools (src/model/model_conv.c) */
#define CONV_TAIL(d) PADDING(d), {"activation", T_ENUM, "none", NULL, ACTS}, {"use_bias", T_BOOL, "true"}, \
                     INIT("kernel_initializer", "glorot_uniform"), INIT("bias_initializer", "zeros"), COMMON
#define CONV_ND(d) {"filters", T_INT, NULL, NULL, NULL, 1, 1e9, 1}, INTS("kernel", NULL, d, 1), INTS("strides", "1", d, 0), \
                   INTS("dilation", "1", d, 0), {"groups", T_INT, "1", NULL, NULL, 1, 1e9}, CONV_TAIL(d), END
static const schema L_CONV1[] = {CONV_ND(1)};
static const schema L_CONV3[] = {CONV_ND(3)};
static const schema L_CONV_T[] = {{"output_padding", T_INT_PAIR, "0", NULL, NULL, 0, 1e6}, CONV_ND(2)};
static const schema L_DWCONV[] = {{"kernel", T_INT_PAIR, NULL, NULL, NULL, 1, 1e6, 1}, {"strides", T_INT_PAIR, "1", NULL, NULL, 1, 1e6},
                                  {"depth_multiplier", T_INT, "1", NULL, NULL, 1, 1e6},
                                  {"dilation", T_INT_PAIR, "1", NULL, NULL, 1, 1e6}, CONV_TAIL(2), END};
static const schema L_POOL1[] = {INTS("size", "2", 1, 0), INTS("strides", NULL, 1, 0), PADDING(1), CEIL, COMMON, END};
static const schema L_POOL3[] = {INTS("size", "2", 3, 0), INTS("strides", NULL, 3, 0), PADDING(3), CEIL, COMMON, END};
/* blocks and built-in backbones (src/model/blocks.c expands them; a block's parameters are its
 * own, checked after substitution) */
static const char *const POOLINGS[] = {"avg", "max", "none", NULL};
#define BACKBONE {"include_top", T_BOOL, "true"}, {"pooling", T_ENUM, "none", NULL, POOLINGS}, \
                 {"classes", T_INT, "1000", NULL, NULL, 1, 1e9}, COMMON
static const char *const RESNET_DEPTHS[] = {"18", "34", "50", NULL};
static const char *const VGG_DEPTHS[] = {"11", "16", NULL};
static const schema L_RESNET[] = {{"depth", T_ENUM, "18", NULL, RESNET_DEPTHS}, BACKBONE, END};
static const schema L_VGG[] = {{"depth", T_ENUM, "16", NULL, VGG_DEPTHS}, BACKBONE, END};
static const schema L_MOBILENET_V2[] = {{"alpha", T_NUM, "1.0", NULL, NULL, 0, 100, 0, 1},
                                        {"dropout", T_NUM, "0.2", NULL, NULL, 0, 0.999999}, BACKBONE, END};
static const schema L_ADAPTIVE[] = {{"size", T_INT_PAIR, NULL, NULL, NULL, 1, 1e6, 1}, COMMON, END};

static const schema LAYERS[] = {
    {"dense", T_MAP, NULL, L_DENSE},        {"conv2d", T_MAP, NULL, L_CONV},
    {"maxpool2d", T_MAP, NULL, L_POOL},     {"avgpool2d", T_MAP, NULL, L_POOL},
    {"global_avgpool2d", T_MAP, NULL, L_PLAIN}, {"batchnorm", T_MAP, NULL, L_BN},
    {"layernorm", T_MAP, NULL, L_LN},       {"dropout", T_MAP, NULL, L_DROPOUT},
    {"flatten", T_MAP, NULL, L_PLAIN},      {"reshape", T_MAP, NULL, L_RESHAPE},
    {"add", T_MAP, NULL, L_PLAIN},          {"concat", T_MAP, NULL, L_CONCAT},
    {"activation", T_MAP, NULL, L_ACTIVATION}, {"relu", T_MAP, NULL, L_PLAIN},
    {"leaky_relu", T_MAP, NULL, L_LEAKY},   {"gelu", T_MAP, NULL, L_PLAIN},
    {"sigmoid", T_MAP, NULL, L_PLAIN},      {"tanh", T_MAP, NULL, L_PLAIN},
    {"softmax", T_MAP, NULL, L_PLAIN},      {"embedding", T_MAP, NULL, L_EMBED},
    {"relu6", T_MAP, NULL, L_PLAIN},        {"hard_sigmoid", T_MAP, NULL, L_PLAIN},
    {"hard_swish", T_MAP, NULL, L_PLAIN},   {"clip", T_MAP, NULL, L_CLIP},
    {"multiply", T_MAP, NULL, L_PLAIN},     {"upsampling1d", T_MAP, NULL, L_UP1},
    {"upsampling2d", T_MAP, NULL, L_UP2},   {"upsampling3d", T_MAP, NULL, L_UP3},
    {"global_maxpool1d", T_MAP, NULL, L_PLAIN}, {"global_maxpool2d", T_MAP, NULL, L_PLAIN},
    {"global_maxpool3d", T_MAP, NULL, L_PLAIN}, {"global_avgpool1d", T_MAP, NULL, L_PLAIN},
    {"global_avgpool3d", T_MAP, NULL, L_PLAIN},
    {"conv1d", T_MAP, NULL, L_CONV1},       {"conv3d", T_MAP, NULL, L_CONV3},
    {"conv2d_transpose", T_MAP, NULL, L_CONV_T}, {"depthwise_conv2d", T_MAP, NULL, L_DWCONV},
    {"maxpool1d", T_MAP, NULL, L_POOL1},    {"maxpool3d", T_MAP, NULL, L_POOL3},
    {"avgpool1d", T_MAP, NULL, L_POOL1},    {"avgpool3d", T_MAP, NULL, L_POOL3},
    {"block", T_ANY},                       {"resnet", T_MAP, NULL, L_RESNET},
    {"vgg", T_MAP, NULL, L_VGG},            {"mobilenet_v2", T_MAP, NULL, L_MOBILENET_V2},
    {"adaptive_avgpool2d", T_MAP, NULL, L_ADAPTIVE},
    END};

/* ---- losses, metrics, optimizers, schedules ---- */
static const schema NOARGS[] = {END};
static const schema LOSS_SCE[] = {{"label_smoothing", T_NUM, "0", NULL, NULL, 0, 0.999999}, END};
static const schema LOSS_HUBER[] = {{"delta", T_NUM, "1.0", NULL, NULL, 1e-12, 1e12}, END};
static const schema LOSSES[] = {{"softmax_cross_entropy", T_MAP, NULL, LOSS_SCE},
                                {"binary_cross_entropy", T_MAP, NULL, NOARGS},
                                {"mse", T_MAP, NULL, NOARGS}, {"mae", T_MAP, NULL, NOARGS},
                                {"huber", T_MAP, NULL, LOSS_HUBER}, END};
static const schema M_TOPK[] = {{"k", T_INT, "5", NULL, NULL, 1, 1e9}, END};
static const schema METRICS[] = {{"accuracy", T_MAP, NULL, NOARGS}, {"top_k_accuracy", T_MAP, NULL, M_TOPK},
                                 {"precision", T_MAP, NULL, NOARGS}, {"recall", T_MAP, NULL, NOARGS},
                                 {"f1", T_MAP, NULL, NOARGS},        {"mse", T_MAP, NULL, NOARGS},
                                 {"mae", T_MAP, NULL, NOARGS},       {"r2", T_MAP, NULL, NOARGS}, END};
#define LR(d) {"learning_rate", T_NUM, d, NULL, NULL, 0, 1e6}
#define WD(d) {"weight_decay", T_NUM, d, NULL, NULL, 0, 1e6}
#define EPS {"epsilon", T_NUM, "1e-7", NULL, NULL, 0, 1, 0, 1} /* added to a divisor: not 0 */
static const schema O_SGD[] = {LR("0.01"), {"momentum", T_NUM, "0", NULL, NULL, 0, 0.999999}, {"nesterov", T_BOOL, "false"}, WD("0"), END};
static const schema O_ADAM[] = {LR("0.001"), {"beta_1", T_NUM, "0.9", NULL, NULL, 0, 0.999999},
                                {"beta_2", T_NUM, "0.999", NULL, NULL, 0, 0.999999}, EPS, WD("0"), END};
static const schema O_ADAMW[] = {LR("0.001"), {"beta_1", T_NUM, "0.9", NULL, NULL, 0, 0.999999},
                                 {"beta_2", T_NUM, "0.999", NULL, NULL, 0, 0.999999}, EPS, WD("0.004"), END};
static const schema O_RMS[] = {LR("0.001"), {"rho", T_NUM, "0.9", NULL, NULL, 0, 0.999999},
                               {"momentum", T_NUM, "0", NULL, NULL, 0, 0.999999}, EPS, WD("0"), END};
static const schema OPTIMIZERS[] = {{"sgd", T_MAP, NULL, O_SGD}, {"adam", T_MAP, NULL, O_ADAM},
                                    {"adamw", T_MAP, NULL, O_ADAMW}, {"rmsprop", T_MAP, NULL, O_RMS}, END};
#define WARM {"warmup_steps", T_INT, "0", NULL, NULL, 0, 1e15}
#define TOTAL {"total_steps", T_INT, NULL, NULL, NULL, 1, 1e15}
static const schema S_CONST[] = {WARM, END};
static const schema S_STEP[] = {{"step_size", T_INT, NULL, NULL, NULL, 1, 1e15, 1}, {"gamma", T_NUM, "0.1", NULL, NULL, 0, 1e6}, WARM, END};
static const schema S_EXP[] = {{"decay_steps", T_INT, NULL, NULL, NULL, 1, 1e15, 1}, {"decay_rate", T_NUM, NULL, NULL, NULL, 0, 1e6, 1},
                               {"staircase", T_BOOL, "false"}, WARM, END};
static const schema S_COS[] = {WARM, TOTAL, {"alpha", T_NUM, "0", NULL, NULL, 0, 1}, END};
static const schema S_ONE[] = {TOTAL, {"pct_start", T_NUM, "0.3", NULL, NULL, 0, 1}, {"div_factor", T_NUM, "25", NULL, NULL, 1e-12, 1e12},
                               {"final_div_factor", T_NUM, "10000", NULL, NULL, 1e-12, 1e12}, END};
static const schema SCHEDULES[] = {{"constant", T_MAP, NULL, S_CONST}, {"step", T_MAP, NULL, S_STEP},
                                   {"exponential", T_MAP, NULL, S_EXP}, {"cosine", T_MAP, NULL, S_COS},
                                   {"one_cycle", T_MAP, NULL, S_ONE}, END};

/* ---- data, train, log ---- */
static const schema FILES[] = {{"images", T_STR}, {"labels", T_STR}, {"path", T_STR}, {"x", T_STR}, {"y", T_STR},
                               {"manifest", T_STR}, {"topic", T_STRS}, END};
/* data.source: kafka (src/model/inputs_kafka.c reads these; docs/kafka.md) */
static const char *const KAFKA_FORMATS[] = {"tf_example", "npy", "json", "raw", NULL};
static const char *const KAFKA_MODES[] = {"replay", "stream", NULL};
static const schema KAFKA[] = {{"brokers", T_STR}, {"group_id", T_STR, "kiln"},
                               {"format", T_ENUM, "tf_example", NULL, KAFKA_FORMATS},
                               {"mode", T_ENUM, "replay", NULL, KAFKA_MODES},
                               {"epoch_records", T_INT, "0", NULL, NULL, 0, 1e12},
                               {"epoch_seconds", T_NUM, "0", NULL, NULL, 0, 1e9},
                               {"timeout_s", T_NUM, "0", NULL, NULL, 0, 1e9},
                               {"properties", T_SEQ_STR}, {"trace", T_STR}, END};
/* data.source: images (src/model/inputs_images.c reads these; docs/data.md) */
static const char *const IMG_CHANNELS[] = {"grayscale", "rgb", NULL};
static const char *const IMG_INTERP[] = {"bilinear", "area", NULL};
static const char *const ON_ERROR[] = {"error", "skip", NULL};
static const char *const DATA_CACHE[] = {"none", "decoded", NULL};
static const schema IMAGE[] = {{"channels", T_ENUM, NULL, NULL, IMG_CHANNELS},
                               {"resize", T_INT_PAIR, NULL, NULL, NULL, 1, 65535},
                               {"interpolation", T_ENUM, "bilinear", NULL, IMG_INTERP},
                               {"center_crop", T_INT_PAIR, NULL, NULL, NULL, 1, 65535}, END};
#define DATA_IMAGE_KEYS {"image", T_MAP, NULL, IMAGE}, {"on_error", T_ENUM, "error", NULL, ON_ERROR}, \
                        {"cache", T_ENUM, "none", NULL, DATA_CACHE}
/* data.source: tfrecord (src/model/inputs_tfrecord.c reads these; docs/data.md) */
static const char *const COMPRESSIONS[] = {"auto", "none", "gzip", "zlib", NULL};
static const char *const FEAT_DECODE[] = {"image", NULL};
static const char *const FEAT_DTYPE[] = {"float", "int64", "bytes", NULL};
static const schema FEATURE[] = {{"key", T_STR}, {"decode", T_ENUM, NULL, NULL, FEAT_DECODE},
                                 {"dtype", T_ENUM, NULL, NULL, FEAT_DTYPE},
                                 {"shape", T_SEQ_INT, NULL, NULL, NULL, 1, 1e9},
                                 {"names_key", T_STR}, END};
/* data.augment (the definitions: kiln/augment.h; src/model/inputs_augment.c reads these) */
static const char *const PAD_MODES[] = {"constant", "reflect", NULL};
#define AUG_P(d) {"p", T_NUM, d, NULL, NULL, 0, 1}
#define AUG_PAIR(k, d, hi) {k, T_SEQ_NUM, d, NULL, NULL, 0, hi, 0, 1}
static const schema A_RRC[] = {AUG_PAIR("scale", "[0.08, 1.0]", 1), AUG_PAIR("ratio", "[0.75, 1.3333333333333333]", 1e6),
                               {"interpolation", T_ENUM, "bilinear", NULL, IMG_INTERP}, AUG_P("1"), END};
static const schema A_CROP[] = {{"padding", T_INT, "4", NULL, NULL, 0, 65535},
                                {"padding_mode", T_ENUM, "constant", NULL, PAD_MODES},
                                {"fill", T_NUM, "0", NULL, NULL, 0, 1}, AUG_P("1"), END};
static const schema A_FLIP[] = {AUG_P("0.5"), END};
static const schema A_ROT[] = {{"degrees", T_NUM, NULL, NULL, NULL, 0, 180, 1}, {"fill", T_NUM, "0", NULL, NULL, 0, 1},
                               AUG_P("1"), END};
static const schema A_JITTER[] = {{"brightness", T_NUM, "0", NULL, NULL, 0, 1e6}, {"contrast", T_NUM, "0", NULL, NULL, 0, 1e6},
                                  {"saturation", T_NUM, "0", NULL, NULL, 0, 1e6}, {"hue", T_NUM, "0", NULL, NULL, 0, 0.5},
                                  AUG_P("1"), END};
static const schema A_NOISE[] = {{"std", T_NUM, "0.1", NULL, NULL, 0, 1e6}, {"mean", T_NUM, "0", NULL, NULL, ANYSIGN},
                                 {"clip", T_BOOL, "true"}, AUG_P("1"), END};
static const schema A_ERASE[] = {AUG_P("0.5"), AUG_PAIR("scale", "[0.02, 0.33]", 1), AUG_PAIR("ratio", "[0.3, 3.3]", 1e6),
                                 {"value", T_STR, "0"}, END};
static const schema A_MIX[] = {{"alpha", T_NUM, "1.0", NULL, NULL, 0, 1e6, 0, 1}, AUG_P("1"), END};
static const schema AUGMENTS[] = {{"random_resized_crop", T_MAP, NULL, A_RRC}, {"random_crop", T_MAP, NULL, A_CROP},
                                  {"horizontal_flip", T_MAP, NULL, A_FLIP},     {"vertical_flip", T_MAP, NULL, A_FLIP},
                                  {"rotation", T_MAP, NULL, A_ROT},             {"color_jitter", T_MAP, NULL, A_JITTER},
                                  {"gaussian_noise", T_MAP, NULL, A_NOISE},     {"random_erasing", T_MAP, NULL, A_ERASE},
                                  {"mixup", T_MAP, NULL, A_MIX},                {"cutmix", T_MAP, NULL, A_MIX}, END};
/* data.workers (0: one per core), data.prefetch (batches made ahead), data.cache_mb (the decoded
 * cache's budget; 0: half the memory), data.augment */
#define DATA_PIPELINE_KEYS {"workers", T_INT, "0", NULL, NULL, 0, 1024}, {"prefetch", T_INT, "2", NULL, NULL, 0, 64}, \
                           {"cache_mb", T_INT, "0", NULL, NULL, 0, 1e9}, \
                           {"augment", T_ONEOF_SEQ, NULL, AUGMENTS}
static const schema NORMALIZE[] = {{"scale", T_NUM, "1.0", NULL, NULL, ANYSIGN}, {"mean", T_SEQ_NUM, NULL, NULL, NULL, ANYSIGN},
                                   {"std", T_SEQ_NUM, NULL, NULL, NULL, 1e-12, 1e12},
                                   {"standardize", T_BOOL, "false"}, END};
static const schema DATA[] = {{"source", T_ENUM, NULL, NULL, SOURCES, 0, 0, 1}, {"train", T_MAP, NULL, FILES, NULL, 0, 0, 1},
                              {"validation", T_MAP, NULL, FILES}, {"test", T_MAP, NULL, FILES},
                              {"validation_split", T_NUM, "0", NULL, NULL, 0, 0.99},
                              {"normalize", T_MAP, NULL, NORMALIZE}, {"batch_size", T_INT, "32", NULL, NULL, 1, 1e7},
                              {"shuffle", T_BOOL, "true"}, {"label", T_STR, "label"},
                              {"features", T_STRS_OR_MAPS, NULL, FEATURE},
                              {"compression", T_ENUM, "auto", NULL, COMPRESSIONS},
                              {"kafka", T_MAP, NULL, KAFKA},
                              {"task", T_ENUM, "classification", NULL, TASKS}, DATA_IMAGE_KEYS,
                              DATA_PIPELINE_KEYS, END};
static const schema MODEL[] = {{"input", T_SEQ_INT, NULL, NULL, NULL, 1, 1e12, 1}, {"layers", T_ONEOF_SEQ, NULL, LAYERS, NULL, 0, 0, 1},
                               {"class_names", T_SEQ_STR},
                               {"blocks", T_ANY}, {"init_from", T_ANY}, /* src/model/blocks.c, init_from.c */
                               END};
static const char *const OPT_STATES[] = {"reset", "keep", NULL};
static const schema EARLY[] = {{"monitor", T_STR, "val_loss"}, {"mode", T_ENUM, "auto", NULL, MODES},
                               {"patience", T_INT, "3", NULL, NULL, 0, 1e9}, {"min_delta", T_NUM, "0", NULL, NULL, 0, 1e300},
                               {"restore_best", T_BOOL, "true"}, END};
static const schema CKPT[] = {{"every_steps", T_INT, "0", NULL, NULL, 0, 1e15}, {"every_epochs", T_INT, "1", NULL, NULL, 0, 1e9},
                              {"keep", T_INT, "3", NULL, NULL, 1, 1e6}, END};
static const schema EXPORT[] = {{"every_steps", T_INT, "0", NULL, NULL, 0, 1e15}, {"every_epochs", T_INT, "1", NULL, NULL, 0, 1e9}, END};
static const char *const PRUNE_SCHEDULES[] = {"polynomial", "constant", NULL};
static const schema PRUNE[] = {{"sparsity", T_NUM, NULL, NULL, NULL, 0, 0.999999, 1},
                               {"initial_sparsity", T_NUM, "0", NULL, NULL, 0, 0.999999},
                               {"start_epoch", T_INT, "0", NULL, NULL, 0, 1e9}, {"end_epoch", T_INT, NULL, NULL, NULL, 0, 1e9},
                               {"schedule", T_ENUM, "polynomial", NULL, PRUNE_SCHEDULES},
                               {"power", T_NUM, "3", NULL, NULL, 0, 100, 0, 1},
                               {"frequency", T_INT, "100", NULL, NULL, 1, 1e15}, {"params", T_SEQ_STR}, END};
static const schema DISTILL[] = {{"teacher", T_STR, NULL, NULL, NULL, 0, 0, 1},
                                 {"temperature", T_NUM, "4", NULL, NULL, 0, 1e6, 0, 1},
                                 {"alpha", T_NUM, "0.9", NULL, NULL, 0, 1}, END};
static const schema TRAIN[] = {{"epochs", T_INT, "10", NULL, NULL, 1, 1e9}, {"max_steps", T_INT, "0", NULL, NULL, 0, 1e15},
                               {"validate_every_steps", T_INT, "0", NULL, NULL, 0, 1e15},
                               {"ema_decay", T_NUM, "0", NULL, NULL, 0, 0.999999999}, {"clip_norm", T_NUM, "0", NULL, NULL, 0, 1e12},
                               {"early_stopping", T_MAP, NULL, EARLY}, {"checkpoint", T_MAP, "{}", CKPT},
                               {"export", T_MAP, NULL, EXPORT}, {"precision", T_ENUM, "fp32", NULL, PRECISIONS},
                               {"threads", T_INT, "0", NULL, NULL, 0, 4096}, {"deterministic", T_BOOL, "true"},
                               /* freezing and stages (src/config/stages.c, docs/models.md) */
                               {"freeze", T_SEQ_STR}, {"freeze_batchnorm", T_BOOL, "true"},
                               {"optimizer_state", T_ENUM, "reset", NULL, OPT_STATES},
                               /* issue 15: src/train/prune.c, src/train/distill.c */
                               {"prune", T_MAP, NULL, PRUNE}, {"distill", T_MAP, NULL, DISTILL}, END};
/* log.explain (issue 20, src/train/tb_explain.c): attributions of validation samples as
 * TensorBoard images. No default: a config without it resolves (and hashes) as before. */
static const char *const EXPLAIN_METHODS[] = {"saliency", "grad_x_input", "integrated_gradients",
                                              "smoothgrad", "gradcam", "gradcam_pp", "occlusion",
                                              NULL};
static const schema LOG_EXPLAIN[] = {{"method", T_ENUM, "integrated_gradients", NULL, EXPLAIN_METHODS},
                                     {"every_epochs", T_INT, "1", NULL, NULL, 1, 1e9},
                                     {"samples", T_INT, "8", NULL, NULL, 1, 64}, END};
static const schema LOG[] = {{"every_steps", T_INT, "50", NULL, NULL, 1, 1e12}, {"tensorboard", T_BOOL, "true"},
                             {"histograms_every_epochs", T_INT, "1", NULL, NULL, 0, 1e9},
                             {"images_every_epochs", T_INT, "1", NULL, NULL, 0, 1e9},
                             {"image_samples", T_INT, "16", NULL, NULL, 0, 1024},
                             {"projector_samples", T_INT, "1000", NULL, NULL, 0, 100000},
                             {"explain", T_MAP, NULL, LOG_EXPLAIN}, END};
/* dist: data-parallel training (src/dist/; docs/distributed.md). No default: a config without it
 * resolves (and hashes) as before. */
static const char *const DIST_COMPRESS[] = {"none", "bf16", NULL};
static const schema DIST[] = {{"compress", T_ENUM, "none", NULL, DIST_COMPRESS},
                              {"bucket_mb", T_NUM, "4", NULL, NULL, 0.001, 4096},
                              {"sync_batchnorm", T_BOOL, "false"}, END};
static const schema ROOT[] = {{"experiment", T_STR, "default"}, {"description", T_STR}, {"seed", T_INT, "1", NULL, NULL, 0, 1.8e19},
                              {"data", T_MAP, NULL, DATA, NULL, 0, 0, 1}, {"model", T_MAP, NULL, MODEL, NULL, 0, 0, 1},
                              {"loss", T_ONEOF, NULL, LOSSES, NULL, 0, 0, 1}, {"metrics", T_ONEOF_SEQ, "[]", METRICS},
                              {"optimizer", T_ONEOF, "adam", OPTIMIZERS}, {"schedule", T_ONEOF, "constant", SCHEDULES},
                              {"train", T_MAP, "{}", TRAIN}, {"log", T_MAP, "{}", LOG},
                              {"stages", T_ANY}, {"dist", T_MAP, NULL, DIST},
                              {"tune", T_ANY} /* src/tune/space.c */, END};

/* ---- checking ---- */

int kiln_cfg_edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

/* " (did you mean 'x'?)" for the closest candidate within reach, else "". */
static const char *suggest(const char *got, const schema *cands, const char *const *names, char *buf, size_t cap) {
    const char *best = NULL;
    int bd = 99;
    for (int i = 0; cands ? cands[i].key != NULL : names[i] != NULL; i++) {
        const char *k = cands ? cands[i].key : names[i];
        int d = kiln_cfg_edit_distance(got, k);
        if (strstr(k, got) == k || strstr(got, k) == got) d = d < 2 ? d : 2; /* prefixes */
        if (d < bd) bd = d, best = k;
    }
    int reach = (int)strlen(got) / 3 > 2 ? (int)strlen(got) / 3 : 2;
    buf[0] = 0;
    if (best && bd <= reach) snprintf(buf, cap, " (did you mean '%s'?)", best);
    return buf;
}

static kiln_status err_at(const kiln_cfg *at, const char *path, const char *fmt, const char *a, const char *b) {
    char where[300], msg[600];
    snprintf(msg, sizeof msg, fmt, a, b);
    return kiln_error(KILN_ERR_INVALID, "%s: %s: %s", kiln_cfg_where(at, where, sizeof where), path[0] ? path : "(root)", msg);
}

static const char *type_name(type t) {
    switch (t) {
    case T_STR: return "a string";
    case T_INT: return "an integer";
    case T_NUM: return "a number";
    case T_BOOL: return "true or false";
    case T_ENUM: return "one of the listed names";
    case T_MAP: return "a map of keys";
    case T_SEQ_INT: return "a list of integers";
    case T_SEQ_NUM: return "a list of numbers";
    case T_SEQ_STR: return "a list of strings";
    case T_STRS: return "a name or a list of names";
    case T_STRS_OR_MAPS: return "a list of names or a map of named entries";
    case T_INT_PAIR: return "an integer or [h, w]";
    default: return "a value";
    }
}

static kiln_status check(kiln_cfg *c, const schema *s, const char *path);

/* T_INTS and T_PADDING: an int (T_PADDING: or valid / same), or a list of nd ints (T_PADDING:
 * or 2 nd, ONNX's [x1_begin, x2_begin, ..., x1_end, x2_end]); each int within s's bounds. */
static kiln_status check_ints(kiln_cfg *c, const schema *s, const char *path) {
    static const char *const AX[3] = {"[w]", "[h, w]", "[d, h, w]"};
    schema one = *s;
    one.t = T_INT;
    int pad = s->t == T_PADDING, nd = s->nd;
    char msg[400], p[512];
    if (pad && c->type == KILN_CFG_SCALAR && (!strcmp(c->text, "valid") || !strcmp(c->text, "same")))
        return KILN_OK;
    if (c->type == KILN_CFG_SCALAR) {
        int64_t v;
        if (pad && kiln_cfg_parse_int(c, &v)) {
            char sug[128];
            snprintf(msg, sizeof msg, "expected valid, same, an integer or a list of integers; got '%.80s'%s", c->text,
                     suggest(c->text, NULL, s->choices, sug, sizeof sug));
            return err_at(c, path, "%s%s", msg, "");
        }
        return check(c, &one, path);
    }
    if (c->type != KILN_CFG_SEQ || (c->n_items != nd && !(pad && c->n_items == 2 * nd))) {
        int n = c->type == KILN_CFG_SEQ ? c->n_items : -1;
        if (pad)
            snprintf(msg, sizeof msg,
                     "expected valid, same, an integer, a list of %d (one per axis) or of %d integers (ONNX order: "
                     "the %d begins, then the %d ends)", nd, 2 * nd, nd, nd);
        else
            snprintf(msg, sizeof msg, "expected an integer or a list of %d (%s)", nd, AX[nd - 1]);
        if (n >= 0) snprintf(msg + strlen(msg), sizeof msg - strlen(msg), "; got a list of %d", n);
        return err_at(c, path, "%s%s", msg, "");
    }
    for (int i = 0; i < c->n_items; i++) {
        snprintf(p, sizeof p, "%s[%d]", path, i);
        kiln_status st = check(c->items[i], &one, p);
        if (st) return st;
    }
    return KILN_OK;
}

static kiln_status check_number(const kiln_cfg *c, const schema *s, const char *path, int integer) {
    double v;
    int64_t iv;
    char got[96];
    snprintf(got, sizeof got, "%.80s", c->type == KILN_CFG_SCALAR ? c->text : c->type == KILN_CFG_MAP ? "a map" : "a list");
    if (integer ? kiln_cfg_parse_int(c, &iv) : kiln_cfg_parse_num(c, &v))
        return err_at(c, path, "expected %s, got '%s'", integer ? "an integer" : "a number", got);
    if (integer) v = (double)iv;
    if (!integer && !isfinite(v)) return err_at(c, path, "expected a finite number, got '%s'%s", got, "");
    if (s->lo < s->hi && (v < s->lo || v > s->hi || (s->lo_open && v == s->lo))) {
        char range[128];
        if (s->lo_open) snprintf(range, sizeof range, "above %g, up to %g", s->lo, s->hi);
        else snprintf(range, sizeof range, "%g .. %g", s->lo, s->hi);
        return err_at(c, path, "%s is out of range (%s)", got, range);
    }
    return KILN_OK;
}

/* Checking one stage of stages: (kiln_config_check_partial): types and names only, no
 * defaults and no required keys, since a stage says only what changes. */
static _Thread_local int partial;

static kiln_status fill_defaults(kiln_cfg *map, const schema *sub, const char *path) {
    if (partial) return KILN_OK;
    for (int i = 0; sub[i].key; i++) {
        if (kiln_cfg_child(map, sub[i].key)) continue;
        char p[512];
        snprintf(p, sizeof p, "%s%s%s", path, path[0] ? "." : "", sub[i].key);
        if (sub[i].required) return err_at(map, path, "missing required key '%s'%s", sub[i].key, "");
        if (!sub[i].def) continue;
        char assign[600];
        snprintf(assign, sizeof assign, "%s=%s", sub[i].key, sub[i].def);
        kiln_status st = kiln_config_set(map, assign);
        if (st) return st;
        kiln_cfg *d = kiln_cfg_child(map, sub[i].key);
        d->file = "default";
        if ((st = check(d, &sub[i], p))) return st;
    }
    return KILN_OK;
}

/* Rewrites a bare name into {name: {}} and checks the parameters of the chosen alternative. */
static kiln_status check_oneof(kiln_cfg *c, const schema *alts, const char *path, const char *what) {
    char sug[128];
    if (c->type == KILN_CFG_SCALAR) {
        if (!c->text[0]) return err_at(c, path, "expected %s name, got nothing%s", what, "");
        kiln_cfg *args = calloc(1, sizeof *args), *item = args ? calloc(1, sizeof *item) : NULL;
        if (!item || !(item->items = malloc(sizeof *item->items))) {
            free(args), free(item);
            return kiln_error(KILN_ERR_NOMEM, "config: out of memory");
        }
        args->type = KILN_CFG_MAP, args->file = c->file, args->line = c->line, args->column = c->column;
        args->key = c->text;
        c->text = NULL;
        c->type = KILN_CFG_MAP;
        c->items = item->items, c->items[0] = args, c->n_items = 1;
        free(item);
    }
    if (c->type != KILN_CFG_MAP || c->n_items != 1)
        return err_at(c, path, "expected %s: a name or a map with one key (%s: {...})", what, what);
    kiln_cfg *chosen = c->items[0];
    for (int i = 0; alts[i].key; i++)
        if (strcmp(alts[i].key, chosen->key) == 0) {
            char p[512];
            snprintf(p, sizeof p, "%s.%s", path, chosen->key);
            if (chosen->type == KILN_CFG_SCALAR && !chosen->text[0]) chosen->type = KILN_CFG_MAP; /* "dense:" */
            return check(chosen, &alts[i], p);
        }
    char msg[300];
    snprintf(msg, sizeof msg, "unknown %s '%%s'%%s", what);
    return err_at(chosen, path, msg, chosen->key, suggest(chosen->key, alts, NULL, sug, sizeof sug));
}

static kiln_status check(kiln_cfg *c, const schema *s, const char *path) {
    char sug[128], p[512];
    switch (s->t) {
    case T_ANY: return KILN_OK;
    case T_STR:
        if (c->type != KILN_CFG_SCALAR) return err_at(c, path, "expected a string%s%s", "", "");
        return KILN_OK;
    case T_INT: return check_number(c, s, path, 1);
    case T_NUM: return check_number(c, s, path, 0);
    case T_BOOL: {
        int b;
        if (kiln_cfg_parse_bool(c, &b))
            return err_at(c, path, "expected true or false, got '%.80s'%s", c->type == KILN_CFG_SCALAR ? c->text : "a collection", "");
        return KILN_OK;
    }
    case T_ENUM: {
        if (c->type == KILN_CFG_SCALAR)
            for (int i = 0; s->choices[i]; i++)
                if (strcmp(c->text, s->choices[i]) == 0) return KILN_OK;
        char list[300] = "";
        for (int i = 0; s->choices[i]; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", s->choices[i]);
        char got[200];
        snprintf(got, sizeof got, "'%.80s'%s", c->type == KILN_CFG_SCALAR ? c->text : "a collection",
                 c->type == KILN_CFG_SCALAR ? suggest(c->text, NULL, s->choices, sug, sizeof sug) : "");
        return err_at(c, path, "got %s; expected one of: %s", got, list);
    }
    case T_STRS:
        if (c->type == KILN_CFG_SCALAR) return KILN_OK;
        /* fall through */
    case T_SEQ_STR:
    case T_SEQ_INT:
    case T_SEQ_NUM:
        if (c->type != KILN_CFG_SEQ) return err_at(c, path, "expected %s%s", type_name(s->t), "");
        for (int i = 0; i < c->n_items; i++) {
            snprintf(p, sizeof p, "%s[%d]", path, i);
            schema item = *s;
            item.t = s->t == T_SEQ_INT ? T_INT : s->t == T_SEQ_NUM ? T_NUM : T_STR;
            kiln_status st = check(c->items[i], &item, p);
            if (st) return st;
        }
        return KILN_OK;
    case T_INT_PAIR: {
        schema one = *s;
        one.t = T_INT;
        if (c->type == KILN_CFG_SEQ && c->n_items == 2) {
            kiln_status st = check(c->items[0], &one, path);
            return st ? st : check(c->items[1], &one, path);
        }
        if (c->type == KILN_CFG_SEQ) return err_at(c, path, "expected an integer or [h, w]%s%s", "", "");
        return check(c, &one, path);
    }
    case T_MAP:
        if (c->type == KILN_CFG_SCALAR && !c->text[0]) c->type = KILN_CFG_MAP; /* "key:" with nothing */
        if (c->type != KILN_CFG_MAP) return err_at(c, path, "expected a map of keys%s%s", "", "");
        for (int i = 0; i < c->n_items; i++) {
            kiln_cfg *ci = c->items[i];
            const schema *sub = NULL;
            for (int k = 0; s->sub[k].key; k++)
                if (strcmp(s->sub[k].key, ci->key) == 0) sub = &s->sub[k];
            if (!sub) return err_at(ci, path, "unknown key '%s'%s", ci->key, suggest(ci->key, s->sub, NULL, sug, sizeof sug));
            snprintf(p, sizeof p, "%s%s%s", path, path[0] ? "." : "", ci->key);
            kiln_status st = check(ci, sub, p);
            if (st) return st;
        }
        return fill_defaults(c, s->sub, path);
    case T_STRS_OR_MAPS:
        if (c->type == KILN_CFG_MAP) {
            const schema entry = {s->key, T_MAP, NULL, s->sub};
            for (int i = 0; i < c->n_items; i++) {
                snprintf(p, sizeof p, "%s.%s", path, c->items[i]->key);
                kiln_status st = check(c->items[i], &entry, p);
                if (st) return st;
            }
            return KILN_OK;
        } else {
            schema strs = *s;
            strs.t = T_SEQ_STR;
            if (c->type != KILN_CFG_SEQ)
                return err_at(c, path, "expected %s%s", type_name(s->t), "");
            return check(c, &strs, path);
        }
    case T_INTS:
    case T_PADDING: return check_ints(c, s, path);
    case T_ONEOF: return check_oneof(c, s->sub, path, s->key);
    case T_ONEOF_SEQ:
        if (c->type == KILN_CFG_SCALAR && !c->text[0]) c->type = KILN_CFG_SEQ;
        if (c->type != KILN_CFG_SEQ) return err_at(c, path, "expected a list%s%s", "", "");
        for (int i = 0; i < c->n_items; i++) {
            snprintf(p, sizeof p, "%s[%d]", path, i);
            kiln_status st = check_oneof(c->items[i], s->sub, p,
                                         !strcmp(s->key, "layers")    ? "layer"
                                         : !strcmp(s->key, "augment") ? "augmentation"
                                                                      : "metric");
            if (st) return st;
        }
        return KILN_OK;
    }
    return KILN_OK;
}

kiln_status kiln_config_resolve(kiln_cfg *root) {
    static const schema root_schema = {"", T_MAP, NULL, ROOT};
    kiln_status st = check(root, &root_schema, "");
    if (!st && kiln_cfg_child(root, "stages")) st = kiln_config_stages_check(root);
    return st;
}

kiln_status kiln_config_check_partial(kiln_cfg *c, const char *path) {
    static const schema root_schema = {"", T_MAP, NULL, ROOT};
    partial = 1;
    kiln_status st = check(c, &root_schema, path);
    partial = 0;
    return st;
}

kiln_status kiln_config_check_layer(kiln_cfg *item, const char *path) {
    return check_oneof(item, LAYERS, path, "layer");
}
