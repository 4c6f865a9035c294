/* cmd_predict.c — kiln predict: ask a model (an export in-process, or a server over TF Serving's
 * REST API) about instances read from files or streamed on stdin.
 *
 * Order of work: options, then the model (its signature says what rows look like), then every
 * input file (all must read before anything is predicted, so a bad file costs no model time and
 * prints no partial answer), then predictions in pieces of --batch rows, then the output.
 * --stream instead answers line by line, flushing each answer, and carries on past bad lines.
 * Exit codes: 2 for what the user can fix by asking differently (options, a missing export, an
 * input file that does not read or does not fit the model), 1 for failures of the model or the
 * server (unreachable, an HTTP error, a corrupt export).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/predict.h"

static const char *HELP =
    "usage: kiln predict (--server URL --model NAME [--version V] | --model_dir DIR) [options]\n"
    "                    [FILE... | --stream | --kafka-in T --kafka-out T --brokers B]\n"
    "\n"
    "Asks a model for predictions: in-process from an export (--model_dir, no server), or from a\n"
    "server speaking TF Serving's REST API (kiln serve, TF Serving) with --server. Inputs are\n"
    "raw values as in the training data (0..255 pixels): the preprocessing recorded in the\n"
    "export is applied by whoever runs the model. Classifiers print each instance's class,\n"
    "its probability and the top classes; other models print their output values.\n"
    "\n"
    "inputs (FILE or --input FILE, any number; - is stdin; the format comes from the extension,\n"
    "else from the content):\n"
    "  .json          {\"instances\": [...]}, {\"inputs\": ...}, a list of instances, or one\n"
    "                 instance; an instance is nested in the input's shape or a flat list\n"
    "  .csv .txt      one instance per line (a first line that is not all numbers is a header)\n"
    "  .npy[.gz]      [N, ...input shape] for N instances, or a single one\n"
    "  .png .jpg .bmp .gif .pgm .ppm\n"
    "                 one instance per image, which must have the input's [C, H, W] size\n"
    "                 (C = 1 gray, 3 RGB); images are never resized\n"
    "\n"
    "options:\n"
    "  --server URL       the server (http://host:8501)\n"
    "  --model NAME       the model's name on the server\n"
    "  --version V        that version (default: the server's choice; with --model_dir, a\n"
    "                     version under DIR instead of the highest)\n"
    "  --model_dir DIR    an export: a version folder (with model.json) or a folder of\n"
    "                     versions, of which the highest complete one is used\n"
    "  --input FILE       an input file (the same as a FILE argument)\n"
    "  --stream           read one instance per line from stdin (a JSON list or comma-separated\n"
    "                     numbers) and print one JSON prediction per line, flushed, until the\n"
    "                     end of input; bad lines are reported on stderr and skipped\n"
    "  --json             print {\"predictions\": [...]} instead of a table\n"
    "  --top K            classes listed per instance in the table (default 3, 0 for none)\n"
    "  --batch N          instances per request or per run of the model (default 64)\n"
    "  --timeout S        seconds allowed per request to the server (default 60)\n"
    "  --kafka-in TOPIC   answer the records of a Kafka topic instead of files (formats as in\n"
    "                     kiln data produce: --format tf_example|npy|json|raw), producing each\n"
    "                     prediction (JSON, as --stream prints) to --kafka-out TOPIC with its\n"
    "                     input's key; needs --brokers HOST:PORT; --group G (default\n"
    "                     kiln-predict), --max N records, --idle S: stop after S quiet seconds\n"
    "                     (docs/kafka.md)\n"
    "  --help             this text\n"
    "\n"
    "Exit codes: 0 ok; 1 the model or the server failed (the server's error and the HTTP status\n"
    "are printed); 2 a usage error or an input file that cannot be read or does not fit.\n";

/* Reads every file, runs the model over all instances and prints the answers. */
static int predict_files(kiln_cli_predictor *p, const char *const *files, int n_files, int json,
                         int top_k) {
    kiln_instances in = {0};
    float *out = NULL, *probs = NULL;
    int rc = KILN_EXIT_OK;
    for (int i = 0; i < n_files && rc == KILN_EXIT_OK; i++) {
        kiln_status st = kiln_instances_read(&in, files[i], &p->spec);
        if (st) {
            fprintf(stderr, "kiln predict: %s\n", kiln_last_error());
            rc = st == KILN_ERR_NOMEM ? KILN_EXIT_FAIL : KILN_EXIT_USAGE;
        }
    }
    if (rc == KILN_EXIT_OK) {
        out = malloc((size_t)(in.n * p->out_size) * sizeof *out);
        probs = p->prob_size ? malloc((size_t)(in.n * p->prob_size) * sizeof *probs) : NULL;
        if (!out || (p->prob_size && !probs)) {
            fprintf(stderr, "kiln predict: out of memory for %lld predictions\n", (long long)in.n);
            rc = KILN_EXIT_FAIL;
        }
    }
    if (rc == KILN_EXIT_OK) {
        kiln_status st = kiln_cli_predictor_run(p, in.x, in.n, out, probs);
        if (st) {
            fprintf(stderr, "kiln predict: %s\n", kiln_last_error());
            rc = KILN_EXIT_FAIL;
        } else {
            kiln_cli_predict_print(stdout, p, &in, out, probs, json, top_k);
        }
    }
    free(out);
    free(probs);
    kiln_instances_free(&in);
    return rc;
}

/* --stream: one instance per stdin line, one JSON answer per stdout line. */
static int predict_stream(kiln_cli_predictor *p) {
    int64_t rs = kiln_shape_numel(&p->spec.row);
    float *x = malloc((size_t)rs * sizeof *x), *out = malloc((size_t)p->out_size * sizeof *out);
    float *probs = p->prob_size ? malloc((size_t)p->prob_size * sizeof *probs) : NULL;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t lineno = 0;
    int failed = 0;
    kiln_sbuf b = KILN_SBUF_INIT;
    int no_mem = !x || !out || (p->prob_size && !probs);
    if (no_mem) fputs("kiln predict: out of memory\n", stderr);
    while (!no_mem && (len = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        size_t i = 0;
        while (i < (size_t)len && strchr(" \t\r\n", line[i])) i++;
        if (i == (size_t)len) continue; /* blank */
        kiln_status st = kiln_instances_parse_line(line, (size_t)len, &p->spec, x);
        if (!st) st = kiln_cli_predictor_run(p, x, 1, out, probs);
        if (st) {
            fprintf(stderr, "kiln predict: stdin:%lld: %s\n", (long long)lineno, kiln_last_error());
            failed = 1;
            if (p->cl && kiln_client_http_status(p->cl) == 0 && st != KILN_ERR_FORMAT)
                break; /* the server cannot be reached: the next lines would fail the same way */
            continue;
        }
        kiln_sbuf_clear(&b);
        kiln_cli_predict_json_one(&b, p, out, probs, NULL);
        kiln_sbuf_putc(&b, '\n');
        if (b.failed) {
            fputs("kiln predict: out of memory\n", stderr);
            failed = 1;
            break;
        }
        fwrite(b.data, 1, b.len, stdout);
        fflush(stdout);
    }
    kiln_sbuf_free(&b);
    free(line);
    free(x);
    free(out);
    free(probs);
    return failed || no_mem ? KILN_EXIT_FAIL : KILN_EXIT_OK;
}

/* A whole-number option value in [lo, hi], else -1. */
static long long number_arg(const char *s, long long lo, long long hi) {
    char *end;
    long long v = strtoll(s, &end, 10);
    return end == s || *end || v < lo || v > hi ? -1 : v;
}

int kiln_cmd_predict(int argc, char **argv) {
    static const struct option opts[] = {
        {"server", required_argument, 0, 's'},  {"model", required_argument, 0, 'm'},
        {"version", required_argument, 0, 'v'}, {"model_dir", required_argument, 0, 'd'},
        {"input", required_argument, 0, 'i'},   {"stream", no_argument, 0, 'S'},
        {"json", no_argument, 0, 'j'},          {"top", required_argument, 0, 'k'},
        {"batch", required_argument, 0, 'b'},   {"timeout", required_argument, 0, 't'},
        {"kafka-in", required_argument, 0, 'I'}, {"kafka-out", required_argument, 0, 'O'},
        {"brokers", required_argument, 0, 'B'}, {"format", required_argument, 0, 'F'},
        {"group", required_argument, 0, 'G'},   {"max", required_argument, 0, 'M'},
        {"idle", required_argument, 0, 'W'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    kiln_cli_kafka_opts ko = {0};
    const char *server = NULL, *model = NULL, *dir = NULL;
    int64_t version = 0;
    int stream = 0, json = 0, top_k = 3, batch = 64;
    double timeout = 60;
    const char **files = calloc((size_t)argc + 1, sizeof *files);
    int n_files = 0;
    if (!files) return fputs("kiln predict: out of memory\n", stderr), KILN_EXIT_FAIL;
    optind = 1;
    opterr = 0;
    int c, rc = -1;
    long long v;
    while (rc < 0 && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            server = optarg;
            break;
        case 'm':
            model = optarg;
            break;
        case 'd':
            dir = optarg;
            break;
        case 'i':
            files[n_files++] = optarg;
            break;
        case 'S':
            stream = 1;
            break;
        case 'j':
            json = 1;
            break;
        case 'v':
            if (!kiln_export_parse_version(optarg, &version))
                rc = kiln_cli_usage_error("predict", "--version %s: expected a positive integer",
                                          optarg);
            break;
        case 'k':
            if ((v = number_arg(optarg, 0, 1000000)) < 0)
                rc = kiln_cli_usage_error("predict", "--top %s: expected a whole number >= 0",
                                          optarg);
            top_k = (int)v;
            break;
        case 'b':
            if ((v = number_arg(optarg, 1, 65536)) < 0)
                rc = kiln_cli_usage_error("predict", "--batch %s: expected 1 to 65536", optarg);
            batch = (int)v;
            break;
        case 't': {
            char *end;
            timeout = strtod(optarg, &end);
            if (end == optarg || *end || !(timeout > 0 && timeout <= 86400))
                rc = kiln_cli_usage_error("predict", "--timeout %s: expected seconds in (0, 86400]",
                                          optarg);
            break;
        }
        case 'I': ko.in_topic = optarg; break;
        case 'O': ko.out_topic = optarg; break;
        case 'B': ko.brokers = optarg; break;
        case 'G': ko.group = optarg; break;
        case 'F':
            if (!kiln_kafka_format_parse(optarg, &ko.format))
                rc = kiln_cli_usage_error("predict", "--format %s: expected tf_example, npy, json "
                                          "or raw", optarg);
            break;
        case 'M':
            if ((v = number_arg(optarg, 1, (long long)1 << 62)) < 0)
                rc = kiln_cli_usage_error("predict", "--max %s: expected N >= 1", optarg);
            ko.max = v;
            break;
        case 'W': {
            char *end;
            ko.idle_s = strtod(optarg, &end);
            if (end == optarg || *end || !(ko.idle_s > 0))
                rc = kiln_cli_usage_error("predict", "--idle %s: expected seconds > 0", optarg);
            break;
        }
        case 'h':
            fputs(HELP, stdout);
            rc = KILN_EXIT_OK;
            break;
        default:
            rc = kiln_cli_usage_error("predict", "unknown or incomplete option '%s'",
                                      argv[optind - 1]);
        }
    }
    for (int i = optind; rc < 0 && i < argc; i++) files[n_files++] = argv[i];
    int stdin_uses = 0;
    for (int i = 0; i < n_files; i++) stdin_uses += !strcmp(files[i], "-");
    const char *bad = NULL;
    if (rc < 0) {
        if (!server == !dir)
            bad = server ? "give --server or --model_dir, not both"
                         : "give --server URL --model NAME, or --model_dir DIR";
        else if (server && !model)
            bad = "--server needs --model NAME";
        else if (dir && model)
            bad = "--model names a model on a server; with --model_dir the folder is the model";
        else if (dir && !*dir)
            bad = "--model_dir: empty folder name";
        else if (ko.in_topic && (!ko.out_topic || !ko.brokers))
            bad = "--kafka-in needs --kafka-out TOPIC and --brokers HOST:PORT";
        else if (!ko.in_topic && (ko.out_topic || ko.brokers))
            bad = "--kafka-out and --brokers go with --kafka-in TOPIC";
        else if (ko.in_topic && (stream || n_files))
            bad = "--kafka-in reads a topic; give no input files or --stream with it";
        else if (ko.in_topic)
            bad = NULL;
        else if (stream && n_files)
            bad = "--stream reads stdin; give no input files with it";
        else if (!stream && !n_files)
            bad = "no input: give FILE..., - for stdin, or --stream";
        else if (stdin_uses > 1)
            bad = "stdin (-) is given more than once";
    }
    if (bad) rc = kiln_cli_usage_error("predict", "%s", bad);
    if (rc >= 0) {
        free(files);
        return rc;
    }

    kiln_cli_predictor p;
    kiln_status st;
    int usage = 0;
    if (dir) {
        st = kiln_cli_predictor_open_dir(&p, dir, version, batch, &usage);
    } else {
        kiln_client_config cfg = {server, model, version, timeout};
        st = kiln_cli_predictor_open_server(&p, &cfg, batch);
        usage = st == KILN_ERR_INVALID && !kiln_client_http_status(p.cl); /* a bad --server */
    }
    if (st) {
        fprintf(stderr, "kiln predict: %s\n", kiln_last_error());
        rc = usage ? KILN_EXIT_USAGE : KILN_EXIT_FAIL;
    } else {
        rc = ko.in_topic ? kiln_cli_predict_kafka(&p, &ko)
             : stream    ? predict_stream(&p)
                         : predict_files(&p, files, n_files, json, top_k);
    }
    kiln_cli_predictor_close(&p);
    free(files);
    return rc;
}
