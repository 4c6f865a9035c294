/* test_config.c — YAML parsing with positions, schema checks with did-you-mean, defaults,
 * --set overrides, writing the resolved config back, hashing. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kiln/config.h"

static const char *CNN =
    "experiment: fashion-mnist\n"
    "seed: 1\n"
    "data:\n"
    "  source: idx\n"
    "  train: {images: a.gz, labels: b.gz}\n"
    "  validation_split: 0.1\n"
    "  normalize: {scale: 0.00392156862}\n"
    "  batch_size: 128\n"
    "model:\n"
    "  input: [1, 28, 28]\n"
    "  layers:\n"
    "    - conv2d: {filters: 32, kernel: 3, padding: same, activation: relu}\n"
    "    - maxpool2d: {size: 2}\n"
    "    - flatten\n"
    "    - dense: {units: 128, activation: relu}\n"
    "    - dropout: {rate: 0.25}\n"
    "    - dense: {units: 10}\n"
    "loss: softmax_cross_entropy\n"
    "metrics: [accuracy]\n"
    "optimizer: {adam: {learning_rate: 0.001}}\n"
    "schedule: {cosine: {warmup_steps: 200}}\n"
    "train:\n"
    "  epochs: 10\n"
    "  ema_decay: 0.999\n"
    "  early_stopping: {monitor: val_loss, patience: 3}\n"
    "  checkpoint: {every_steps: 500, keep: 3}\n"
    "  export: {every_epochs: 1}\n"
    "log: {tensorboard: true, histograms_every_epochs: 1}\n";

static kiln_cfg *parse_ok(const char *text) {
    kiln_cfg *c = NULL;
    kiln_status st = kiln_config_parse(text, "t.yaml", &c);
    CHECK_MSG(st == KILN_OK, "%s", kiln_last_error());
    return c;
}

static void test_parse_positions_and_lookup(void) {
    kiln_cfg *c = parse_ok(CNN);
    if (!c) return;
    kiln_cfg *f = kiln_cfg_at(c, "model.layers[0].conv2d.filters");
    CHECK(f && strcmp(f->text, "32") == 0 && f->line == 12);
    CHECK(kiln_cfg_int(c, "data.batch_size", 0) == 128);
    CHECK_NEAR(kiln_cfg_num(c, "data.normalize.scale", 0), 0.00392156862, 1e-12);
    CHECK(strcmp(kiln_cfg_str(c, "model.layers[2]", "?"), "flatten") == 0);
    CHECK(kiln_cfg_at(c, "model.layers[9]") == NULL && kiln_cfg_at(c, "nope.x") == NULL);
    CHECK_OK(kiln_config_resolve(c));
    /* defaults filled and bare names canonicalized */
    CHECK(kiln_cfg_int(c, "train.checkpoint.every_epochs", -1) == 1);
    CHECK(kiln_cfg_int(c, "train.early_stopping.patience", -1) == 3);
    CHECK(strcmp(kiln_cfg_str(c, "train.early_stopping.mode", ""), "auto") == 0);
    CHECK(kiln_cfg_at(c, "model.layers[2].flatten") != NULL);
    CHECK(kiln_cfg_at(c, "loss.softmax_cross_entropy.label_smoothing") != NULL);
    CHECK_NEAR(kiln_cfg_num(c, "optimizer.adam.beta_2", 0), 0.999, 1e-12);
    CHECK(strcmp(kiln_cfg_str(c, "model.layers[1].maxpool2d.padding", ""), "valid") == 0);
    CHECK(kiln_cfg_at(c, "metrics[0].accuracy") != NULL);
    kiln_cfg *d = kiln_cfg_at(c, "train.precision");
    CHECK(d && strcmp(d->file, "default") == 0);
    kiln_cfg_free(c);
}

static void expect_error(const char *text, const char *sub) {
    kiln_cfg *c = NULL;
    kiln_status st = kiln_config_parse(text, "t.yaml", &c);
    if (st == KILN_OK) st = kiln_config_resolve(c);
    CHECK_MSG(st != KILN_OK, "accepted: %s", text);
    CHECK_MSG(strstr(kiln_last_error(), sub) != NULL, "error '%s' lacks '%s'", kiln_last_error(), sub);
    kiln_cfg_free(c);
}

static char *with(const char *from, const char *to) {
    static char buf[4096];
    const char *p = strstr(CNN, from);
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)(p - CNN), CNN, to, p + strlen(from));
    return buf;
}

static void test_schema_errors(void) {
    expect_error(with("{filters: 32", "{filter: 32"),
                 "t.yaml:12:16: model.layers[0].conv2d: unknown key 'filter' (did you mean 'filters'?)");
    expect_error(with("epochs: 10", "epochs: ten"), "t.yaml:23:3: train.epochs: expected an integer, got 'ten'");
    expect_error(with("epochs: 10", "epochs: 2.5"), "train.epochs: expected an integer, got '2.5'");
    expect_error(with("rate: 0.25", "rate: 1.5"), "model.layers[4].dropout.rate: 1.5 is out of range");
    expect_error(with("activation: relu}\n    - maxpool2d", "activation: rleu}\n    - maxpool2d"),
                 "got 'rleu' (did you mean 'relu'?)");
    expect_error(with("- flatten", "- flaten"), "model.layers[2]: unknown layer 'flaten' (did you mean 'flatten'?)");
    expect_error(with("{adam:", "{adma:"), "optimizer: unknown optimizer 'adma' (did you mean 'adam'?)");
    expect_error(with("experiment:", "experimnt:"), "t.yaml:1:1: (root): unknown key 'experimnt' (did you mean 'experiment'?)");
    expect_error(with("    - dense: {units: 10}\n", "    - dense: {activation: relu}\n"),
                 "model.layers[5].dense: missing required key 'units'");
    expect_error(with("loss: softmax_cross_entropy\n", ""), "missing required key 'loss'");
    expect_error(with("tensorboard: true", "tensorboard: maybe"), "log.tensorboard: expected true or false, got 'maybe'");
    expect_error(with("input: [1, 28, 28]", "input: 784"), "model.input: expected a list of integers");
    expect_error(with("input: [1, 28, 28]", "input: [1, 0, 28]"), "model.input[1]: 0 is out of range");
    expect_error(with("seed: 1\n", "seed: 1\nseed: 2\n"), "t.yaml:3:1: duplicate key 'seed'");
    expect_error("a: [1, 2\n", "t.yaml:2:1:");
    expect_error("- 1\n- 2\n", "a config must be a map");
    expect_error(with("{adam: {learning_rate: 0.001}}", "{adam: {learning_rate: 0.001}, sgd: {}}"),
                 "optimizer: expected optimizer: a name or a map with one key");
    expect_error(with("every_steps: 500", "every_steps: .nan"), "expected an integer");
    expect_error(with("ema_decay: 0.999", "ema_decay: .nan"), "train.ema_decay: expected a finite number");
    expect_error(with("labels: b.gz}", "labels: [b.gz]}"), "data.train.labels: expected a string");
    /* values that would train nothing or divide by zero */
    expect_error(with("epochs: 10", "epochs: 0"), "t.yaml:23:3: train.epochs: 0 is out of range (1 .. 1e+09)");
    expect_error(with("epochs: 10", "epochs: 10\n  max_steps: -1"),
                 "t.yaml:24:3: train.max_steps: -1 is out of range (0 .. 1e+15)");
    expect_error(with("{learning_rate: 0.001}", "{learning_rate: 0.001, epsilon: 0}"),
                 "t.yaml:20:42: optimizer.adam.epsilon: 0 is out of range (above 0, up to 1)");
    expect_error(with("{adam: {learning_rate: 0.001}}", "{rmsprop: {epsilon: -1e-8}}"),
                 "optimizer.rmsprop.epsilon: -1e-8 is out of range (above 0, up to 1)");
    kiln_cfg *c = parse_ok(with("{learning_rate: 0.001}", "{learning_rate: 0.001, epsilon: 1e-12}"));
    if (c) CHECK_OK(kiln_config_resolve(c));
    kiln_cfg_free(c);
}

static void test_overrides(void) {
    kiln_cfg *c = parse_ok(CNN);
    if (!c) return;
    CHECK_OK(kiln_config_set(c, "train.epochs=3"));
    CHECK_OK(kiln_config_set(c, "optimizer={sgd: {learning_rate: 0.1, momentum: 0.9}}"));
    CHECK_OK(kiln_config_set(c, "model.layers[4].dropout.rate=0.5"));
    CHECK_OK(kiln_config_set(c, "train.max_steps=100"));        /* a new key */
    CHECK_OK(kiln_config_set(c, "data.normalize.mean=[0.5]")); /* a new list */
    CHECK_OK(kiln_config_set(c, "experiment=\"with: colon\"")); /* YAML: quote to keep a colon */
    CHECK(kiln_config_set(c, "model.layers[9].dense.units=3") != KILN_OK);
    CHECK_ERR_HAS("no item [9]");
    CHECK(kiln_config_set(c, "train.epochs") != KILN_OK);
    CHECK_ERR_HAS("expected key.path=value");
    CHECK(kiln_config_set(c, "seed.x=1") != KILN_OK);
    CHECK_ERR_HAS("not a map");
    CHECK_OK(kiln_config_set(c, "train.early_stopping=null")); /* removes: early stopping off */
    CHECK(kiln_cfg_at(c, "train.early_stopping") == NULL);
    CHECK_OK(kiln_config_set(c, "train.ema_decay=null"));
    CHECK_OK(kiln_config_set(c, "train.nonexistent=null")); /* removing nothing is fine */
    CHECK_OK(kiln_config_resolve(c));
    CHECK(kiln_cfg_at(c, "train.early_stopping") == NULL);
    CHECK_NEAR(kiln_cfg_num(c, "train.ema_decay", -1), 0, 0); /* the default came back */
    CHECK(kiln_cfg_int(c, "train.epochs", 0) == 3 && kiln_cfg_int(c, "train.max_steps", 0) == 100);
    CHECK_NEAR(kiln_cfg_num(c, "optimizer.sgd.momentum", 0), 0.9, 1e-12);
    CHECK_NEAR(kiln_cfg_num(c, "model.layers[4].dropout.rate", 0), 0.5, 1e-12);
    CHECK(strcmp(kiln_cfg_str(c, "experiment", ""), "with: colon") == 0);
    CHECK(strcmp(kiln_cfg_at(c, "train.epochs")->file, "--set") == 0);
    /* an override is checked like the file */
    CHECK_OK(kiln_config_set(c, "train.epochs=-1"));
    CHECK(kiln_config_resolve(c) != KILN_OK);
    CHECK_ERR_HAS("--set: train.epochs: -1 is out of range");
    kiln_cfg_free(c);
}

static void test_write_roundtrip_and_hash(void) {
    kiln_cfg *c = parse_ok(CNN);
    if (!c) return;
    CHECK_OK(kiln_config_set(c, "description='a \"quoted\" #text: here'"));
    CHECK_OK(kiln_config_resolve(c));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK_OK(kiln_config_write(c, f));
    fclose(f);
    kiln_cfg *back = parse_ok(buf);
    if (back) {
        CHECK_OK(kiln_config_resolve(back));
        char h1[17], h2[17];
        kiln_cfg_hash(c, h1), kiln_cfg_hash(back, h2);
        CHECK_MSG(strcmp(h1, h2) == 0, "written:\n%s", buf);
        CHECK(strcmp(kiln_cfg_str(back, "description", ""), "a \"quoted\" #text: here") == 0);
        CHECK(kiln_cfg_int(back, "model.layers[0].conv2d.filters", 0) == 32);
        /* a change changes the hash */
        CHECK_OK(kiln_config_set(back, "seed=2"));
        kiln_cfg_hash(back, h2);
        CHECK(strcmp(h1, h2) != 0);
    }
    kiln_cfg_free(back);
    free(buf);
    kiln_cfg_free(c);
}

static void test_anchors_and_garbage(void) {
    kiln_cfg *c = parse_ok("base: &b {units: 4}\nother: *b\n");
    if (c) CHECK(kiln_cfg_int(c, "other.units", 0) == 4);
    kiln_cfg_free(c);
    /* random bytes never crash the parser */
    char text[512];
    for (int it = 0; it < 300; it++) {
        size_t n = 1 + kiln_rng_below(5, 1, (uint64_t)it, sizeof text - 2);
        for (size_t i = 0; i < n; i++) {
            static const char alphabet[] = "ab: -[]{},&*!|>'\"\n\t#%@`0123456789.";
            text[i] = alphabet[kiln_rng_below(5, 2, (uint64_t)it * 1000 + i, sizeof alphabet - 1)];
        }
        text[n] = 0;
        kiln_cfg *g = NULL;
        if (kiln_config_parse(text, "fuzz", &g) == KILN_OK) {
            kiln_config_resolve(g); /* errors are fine; crashes are not */
            kiln_cfg_free(g);
        }
    }
    /* bytes that are not UTF-8 are refused before the YAML parser sees them (libfyaml 0.7 loops
     * forever on some, such as a '%' directive followed by a stray byte) */
    kiln_cfg *bad = NULL;
    CHECK(kiln_config_parse("%\xe9", "bad.yaml", &bad) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("bad.yaml:1:2: not UTF-8 text");
    CHECK(kiln_config_parse("a: \xc0\xaf\n", "overlong.yaml", &bad) == KILN_ERR_FORMAT);
    CHECK(kiln_config_parse("a: caf\xc3\xa9\n", "ok.yaml", &bad) == KILN_OK); /* real UTF-8 is fine */
    kiln_cfg_free(bad);
    for (int it = 0; it < 300; it++) { /* any bytes at all */
        char raw[257];
        size_t n = 1 + kiln_rng_below(6, 1, (uint64_t)it, 256);
        for (size_t i = 0; i < n; i++) raw[i] = (char)(1 + kiln_rng_below(6, 2, (uint64_t)it * 1000 + i, 255));
        raw[n] = 0;
        kiln_cfg *g = NULL;
        if (kiln_config_parse(raw, "fuzz", &g) == KILN_OK) kiln_config_resolve(g);
        kiln_cfg_free(g);
    }
    CHECK(kiln_config_load("/nonexistent/x.yaml", &c) == KILN_ERR_IO);
    CHECK_ERR_HAS("/nonexistent/x.yaml: No such file");
}

/* Text in a malloc'd buffer from printf pieces (tests build large YAML with it). */
static char *build(FILE **f, char **buf, size_t *len) {
    if (*f) fclose(*f), *f = NULL;
    else *f = open_memstream(buf, len);
    return *buf;
}

static void test_alias_limits(void) {
    kiln_cfg *c = NULL;
    char *text = NULL;
    size_t len = 0;
    FILE *f = NULL;
    /* a "billion laughs" of 6 levels: 10^6 scalars, tens of MB once expanded */
    build(&f, &text, &len);
    fprintf(f, "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for (int i = 1; i < 6; i++) {
        fprintf(f, "l%d: &l%d [", i, i);
        for (int k = 0; k < 10; k++) fprintf(f, "%s*l%d", k ? ", " : "", i - 1);
        fprintf(f, "]\n");
    }
    build(&f, &text, &len);
    CHECK(kiln_config_parse(text, "bomb.yaml", &c) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("bomb.yaml:6:");
    CHECK_ERR_HAS("alias *l4: expanding the aliases would make the config larger than 16 MiB");
    kiln_cfg_free(c), c = NULL;
    free(text), text = NULL;
    /* the alias count: 10000 are fine, 10001 are not */
    for (int n = 10000; n <= 10001; n++) {
        build(&f, &text, &len);
        fprintf(f, "a: &a x\nlist: [");
        for (int k = 0; k < n; k++) fprintf(f, "%s*a", k ? ", " : "");
        fprintf(f, "]\n");
        build(&f, &text, &len);
        kiln_status st = kiln_config_parse(text, "many.yaml", &c);
        if (n == 10000) {
            CHECK_OK(st);
            if (c) CHECK(kiln_cfg_at(c, "list")->n_items == 10000);
        } else {
            CHECK(st == KILN_ERR_FORMAT);
            CHECK_ERR_HAS("many.yaml:2:");
            CHECK_ERR_HAS("alias *a: more than 10000 aliases in one config");
        }
        kiln_cfg_free(c), c = NULL;
        free(text), text = NULL;
    }
    /* few aliases of one long string count its length */
    build(&f, &text, &len);
    fprintf(f, "s: &s ");
    for (int k = 0; k < (1 << 20); k++) fputc('x', f);
    fprintf(f, "\nlist: [");
    for (int k = 0; k < 17; k++) fprintf(f, "%s*s", k ? ", " : "");
    fprintf(f, "]\n");
    build(&f, &text, &len);
    CHECK(kiln_config_parse(text, "long.yaml", &c) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("long.yaml:2:");
    CHECK_ERR_HAS("larger than 16 MiB");
    kiln_cfg_free(c), c = NULL;
    free(text), text = NULL;
    /* an alias does not nest deeper than the nesting limit (the free and write recursions rely
     * on it): 100 levels in the anchor, used 50 levels down */
    build(&f, &text, &len);
    fprintf(f, "a: &a ");
    for (int k = 0; k < 100; k++) fputc('[', f);
    for (int k = 0; k < 100; k++) fputc(']', f);
    fprintf(f, "\nb: ");
    for (int k = 0; k < 50; k++) fputc('[', f);
    fprintf(f, "*a");
    for (int k = 0; k < 50; k++) fputc(']', f);
    fprintf(f, "\n");
    build(&f, &text, &len);
    CHECK(kiln_config_parse(text, "deep.yaml", &c) == KILN_ERR_FORMAT);
    CHECK_ERR_HAS("deep.yaml:2:");
    CHECK_ERR_HAS("alias *a: nesting deeper than 128 levels");
    kiln_cfg_free(c), c = NULL;
    free(text), text = NULL;
}

int main(void) {
    RUN(test_parse_positions_and_lookup);
    RUN(test_schema_errors);
    RUN(test_overrides);
    RUN(test_write_roundtrip_and_hash);
    RUN(test_anchors_and_garbage);
    RUN(test_alias_limits);
    return kiln_test_summary();
}
