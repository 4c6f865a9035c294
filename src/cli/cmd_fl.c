/* cmd_fl.c — kiln fl server | client | simulate (kiln/fl.h; docs/federated.md). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kiln/fl.h"
#include "kiln/kiln.h"

static const char *HELP =
    "usage: kiln fl server CONFIG --rounds R [options]\n"
    "       kiln fl client CONFIG --server URL [options]\n"
    "       kiln fl simulate CONFIG --clients N --rounds R [--partition P] [options]\n"
    "\n"
    "Federated learning (docs/federated.md): a server holds the global model and runs rounds;\n"
    "clients train it locally with the ordinary trainer on data that never leaves them.\n"
    "\n"
    "server and simulate:\n"
    "  --rounds R                 rounds to run (required)\n"
    "  --strategy S               fedavg (default) | fedprox | fedadam | fedyogi\n"
    "  --min-clients K            updates a round needs (default 2; simulate 1)\n"
    "  --fraction-fit F           share of the waiting clients sampled per round (default 1)\n"
    "  --local-epochs E           epochs each client trains per round (default 1)\n"
    "  --mu M                     FedProx's proximal weight (default 0.01)\n"
    "  --server-lr ETA --beta1 B1 --beta2 B2 --tau T   FedAdam/FedYogi (0.01 0.9 0.99 1e-3)\n"
    "  --max-update-norm X        refuse updates whose change has L2 norm over X\n"
    "  --clip-updates             scale such updates down to X instead of refusing them\n"
    "  --dp-noise SIGMA           differential privacy: clip each client's change to --dp-clip S\n"
    "                             (1), weigh clients equally, add Gaussian noise SIGMA*S/m to\n"
    "                             the mean; reports epsilon for --dp-delta (1e-5)\n"
    "  --export-every N           export the global model every N rounds (and at the end)\n"
    "  --eval-limit N             evaluate on the first N test rows (default all)\n"
    "  --runs-dir D --name N      where the run folder goes (default runs/)\n"
    "  --set k=v                  override a config key (repeatable)\n"
    "server only:\n"
    "  --host H --port P          listen address (default 127.0.0.1:8080; port 0: any)\n"
    "  --token T                  shared bearer token clients must send (else 401/403)\n"
    "  --tls-cert F --tls-key F   serve HTTPS with this certificate and key (PEM)\n"
    "  --client-ca F              require client certificates signed by this CA (PEM)\n"
    "  --min-available N          clients waiting before a round is sampled (default min-clients)\n"
    "  --round-timeout S          seconds a round waits for its clients (default 600)\n"
    "  --wait-timeout S           give up when too few clients come for S seconds (default never)\n"
    "  --max-retries N            retries of a round with too few updates (default 5)\n"
    "  --secure-agg               clients mask their updates pairwise (they share --secagg-key);\n"
    "                             the server sees only the sum\n"
    "  --resume RUN|latest        continue a server run after its newest checkpoint\n"
    "  --port-file F              write the bound port to F\n"
    "client only:\n"
    "  --server URL               the server (http://host:port or https://...)\n"
    "  --id NAME                  this client's name (default host-pid)\n"
    "  --token T --ca F --cert F --key F   credentials and the CA that signed the server\n"
    "  --data k=v                 override a key of the config's data: section (repeatable)\n"
    "  --limit N                  train on the first N training rows only\n"
    "  --shard I/N                train on part I (0-based) of N of the training rows\n"
    "  --work-dir D               keep local runs here (default: a temporary folder)\n"
    "  --threads N                compute threads\n"
    "  --secagg-key K             the secret clients share for the server's --secure-agg\n"
    "  --give-up S                exit when the server has not answered for S s (default 60)\n"
    "  --inject FAULT             tests: garbage|shape|nan|scale:K|drop|sleep:S\n"
    "simulate only:\n"
    "  --clients N                simulated clients (required)\n"
    "  --partition P              iid (default) | dirichlet:ALPHA | shards:K\n"
    "  --limit N                  use the first N training rows\n";

enum {
    O_ROUNDS = 256,
    O_STRATEGY,
    O_MIN,
    O_FRAC,
    O_EPOCHS,
    O_MU,
    O_SLR,
    O_B1,
    O_B2,
    O_TAU,
    O_NORM,
    O_CLIP,
    O_EXPORT,
    O_EVAL_LIMIT,
    O_RUNS,
    O_NAME,
    O_SET,
    O_HOST,
    O_PORT,
    O_TOKEN,
    O_CERT,
    O_KEY,
    O_CLIENT_CA,
    O_ROUND_TO,
    O_WAIT_TO,
    O_RETRIES,
    O_RESUME,
    O_PORT_FILE,
    O_SERVER,
    O_ID,
    O_CA,
    O_CCERT,
    O_CKEY,
    O_DATA,
    O_LIMIT,
    O_SHARD,
    O_WORK,
    O_THREADS,
    O_INJECT,
    O_CLIENTS,
    O_PART,
    O_AVAIL,
    O_GIVE_UP,
    O_DP_NOISE,
    O_DP_CLIP,
    O_DP_DELTA,
    O_SECAGG,
    O_SECAGG_KEY,
    O_HELP
};

static int num(const char *cmd, const char *flag, const char *v, double lo, double *out) {
    char *end = NULL;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= lo) || !isfinite(x)) {
        kiln_cli_usage_error(cmd, "%s '%s': expected a number >= %g", flag, v, lo);
        return 0;
    }
    *out = x;
    return 1;
}

int kiln_cmd_fl(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        fputs(HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? KILN_EXIT_USAGE : KILN_EXIT_OK;
    }
    const char *sub = argv[1];
    int server = !strcmp(sub, "server"), client = !strcmp(sub, "client"),
        sim = !strcmp(sub, "simulate");
    if (!server && !client && !sim)
        return kiln_cli_usage_error("fl", "unknown subcommand '%s' (server, client, simulate)",
                                    sub);
    static const struct option opts[] = {{"rounds", 1, 0, O_ROUNDS},
                                         {"strategy", 1, 0, O_STRATEGY},
                                         {"min-clients", 1, 0, O_MIN},
                                         {"fraction-fit", 1, 0, O_FRAC},
                                         {"local-epochs", 1, 0, O_EPOCHS},
                                         {"mu", 1, 0, O_MU},
                                         {"server-lr", 1, 0, O_SLR},
                                         {"beta1", 1, 0, O_B1},
                                         {"beta2", 1, 0, O_B2},
                                         {"tau", 1, 0, O_TAU},
                                         {"max-update-norm", 1, 0, O_NORM},
                                         {"clip-updates", 0, 0, O_CLIP},
                                         {"export-every", 1, 0, O_EXPORT},
                                         {"eval-limit", 1, 0, O_EVAL_LIMIT},
                                         {"runs-dir", 1, 0, O_RUNS},
                                         {"name", 1, 0, O_NAME},
                                         {"set", 1, 0, O_SET},
                                         {"host", 1, 0, O_HOST},
                                         {"port", 1, 0, O_PORT},
                                         {"token", 1, 0, O_TOKEN},
                                         {"tls-cert", 1, 0, O_CERT},
                                         {"tls-key", 1, 0, O_KEY},
                                         {"client-ca", 1, 0, O_CLIENT_CA},
                                         {"round-timeout", 1, 0, O_ROUND_TO},
                                         {"wait-timeout", 1, 0, O_WAIT_TO},
                                         {"max-retries", 1, 0, O_RETRIES},
                                         {"resume", 1, 0, O_RESUME},
                                         {"port-file", 1, 0, O_PORT_FILE},
                                         {"server", 1, 0, O_SERVER},
                                         {"id", 1, 0, O_ID},
                                         {"ca", 1, 0, O_CA},
                                         {"cert", 1, 0, O_CCERT},
                                         {"key", 1, 0, O_CKEY},
                                         {"data", 1, 0, O_DATA},
                                         {"limit", 1, 0, O_LIMIT},
                                         {"shard", 1, 0, O_SHARD},
                                         {"work-dir", 1, 0, O_WORK},
                                         {"threads", 1, 0, O_THREADS},
                                         {"inject", 1, 0, O_INJECT},
                                         {"clients", 1, 0, O_CLIENTS},
                                         {"partition", 1, 0, O_PART},
                                         {"help", 0, 0, O_HELP},
                                         {"min-available", 1, 0, O_AVAIL},
                                         {"give-up", 1, 0, O_GIVE_UP},
                                         {"dp-noise", 1, 0, O_DP_NOISE},
                                         {"dp-clip", 1, 0, O_DP_CLIP},
                                         {"dp-delta", 1, 0, O_DP_DELTA},
                                         {"secure-agg", 0, 0, O_SECAGG},
                                         {"secagg-key", 1, 0, O_SECAGG_KEY},
                                         {0, 0, 0, 0}};
    char cmd[32];
    snprintf(cmd, sizeof cmd, "fl %s", sub);
    kiln_fl_sim_opts so = {0};
    kiln_fl_server_opts *o = &so.s;
    kiln_fl_client_opts co = {0};
    const char *strategy = "fedavg";
    double dpn = 0, dpc = 1, dpd = 1e-5;
    double mu = -1, slr = -1, b1 = -1, b2 = -1, tau = -1, norm = 0, x;
    int clip = 0;
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    char **owned = calloc((size_t)argc + 1, sizeof *owned);
    int n_sets = 0, n_owned = 0, rc = KILN_EXIT_USAGE;
    if (!sets || !owned) {
        free(sets), free(owned);
        fprintf(stderr, "kiln fl: out of memory\n");
        return KILN_EXIT_FAIL;
    }
    o->min_clients = sim ? 1 : 2, o->fraction_fit = 1, o->local_epochs = 1;
    o->round_timeout = 600, o->max_retries = 5, o->port = 8080;
    optind = 2;
    opterr = 0;
    int c;
#define NUM(lo)                                                                                    \
    if (!num(cmd, argv[optind - 1], optarg, lo, &x)) goto out
#define ONLY(cond, what)                                                                           \
    if (!(cond)) {                                                                                 \
        kiln_cli_usage_error(cmd, "%s is for %s", argv[optind - 1], what);                         \
        goto out;                                                                                  \
    }
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_ROUNDS:
            ONLY(!client, "server and simulate");
            NUM(1);
            o->rounds = (int)x;
            break;
        case O_STRATEGY:
            ONLY(!client, "server and simulate");
            strategy = optarg;
            break;
        case O_MIN:
            ONLY(!client, "server and simulate");
            NUM(1);
            o->min_clients = (int)x;
            break;
        case O_FRAC:
            ONLY(!client, "server and simulate");
            NUM(0);
            o->fraction_fit = x;
            break;
        case O_EPOCHS:
            ONLY(!client, "server and simulate");
            NUM(1);
            o->local_epochs = (int)x;
            break;
        case O_MU:
            NUM(0);
            mu = x;
            break;
        case O_SLR:
            NUM(0);
            slr = x;
            break;
        case O_B1:
            NUM(0);
            b1 = x;
            break;
        case O_B2:
            NUM(0);
            b2 = x;
            break;
        case O_TAU:
            NUM(0);
            tau = x;
            break;
        case O_NORM:
            NUM(0);
            norm = x;
            break;
        case O_CLIP:
            clip = 1;
            break;
        case O_EXPORT:
            NUM(0);
            o->export_every = (int)x;
            break;
        case O_EVAL_LIMIT:
            NUM(0);
            o->eval_limit = (int)x;
            break;
        case O_RUNS:
            o->runs_dir = optarg;
            break;
        case O_NAME:
            o->name = optarg;
            break;
        case O_SET:
            sets[n_sets++] = optarg;
            break;
        case O_HOST:
            o->host = optarg;
            break;
        case O_PORT:
            NUM(0);
            o->port = (int)x;
            break;
        case O_TOKEN:
            o->token = co.token = optarg;
            break;
        case O_CERT:
            o->tls_cert = optarg;
            break;
        case O_KEY:
            o->tls_key = optarg;
            break;
        case O_CLIENT_CA:
            o->client_ca = optarg;
            break;
        case O_ROUND_TO:
            NUM(0.001);
            o->round_timeout = x;
            break;
        case O_WAIT_TO:
            NUM(0);
            o->wait_timeout = x;
            break;
        case O_RETRIES:
            NUM(0);
            o->max_retries = (int)x;
            break;
        case O_RESUME:
            o->resume = optarg;
            break;
        case O_PORT_FILE:
            o->port_file = optarg;
            break;
        case O_SERVER:
            co.server = optarg;
            break;
        case O_ID:
            co.id = optarg;
            break;
        case O_CA:
            co.ca_file = optarg;
            break;
        case O_CCERT:
            co.cert_file = optarg;
            break;
        case O_CKEY:
            co.key_file = optarg;
            break;
        case O_DATA: {
            char *s = malloc(strlen(optarg) + 8);
            if (!s) goto out;
            sprintf(s, "data.%s", optarg);
            owned[n_owned++] = s;
            sets[n_sets++] = s;
            break;
        }
        case O_LIMIT:
            NUM(1);
            co.limit = so.limit = (int64_t)x;
            break;
        case O_SHARD: {
            int i = -1, n = 0;
            if (sscanf(optarg, "%d/%d", &i, &n) != 2 || n < 1 || i < 0 || i >= n) {
                kiln_cli_usage_error(cmd, "--shard '%s': expected I/N with 0 <= I < N", optarg);
                goto out;
            }
            co.shard = i, co.shards = n;
            break;
        }
        case O_WORK:
            co.work_dir = optarg;
            break;
        case O_THREADS:
            NUM(1);
            co.threads = (int)x;
            break;
        case O_INJECT:
            co.inject = optarg;
            break;
        case O_CLIENTS:
            NUM(1);
            so.clients = (int)x;
            break;
        case O_PART:
            so.partition = optarg;
            break;
        case O_DP_NOISE:
            ONLY(!client, "server and simulate");
            NUM(0);
            dpn = x;
            break;
        case O_DP_CLIP:
            ONLY(!client, "server and simulate");
            NUM(1e-12);
            dpc = x;
            break;
        case O_DP_DELTA:
            ONLY(!client, "server and simulate");
            NUM(1e-300);
            dpd = x;
            break;
        case O_SECAGG:
            ONLY(server, "server");
            o->secure_agg = 1;
            break;
        case O_SECAGG_KEY:
            ONLY(client, "client");
            co.secagg_key = optarg;
            break;
        case O_AVAIL:
            ONLY(server, "server");
            NUM(1);
            o->min_available = (int)x;
            break;
        case O_GIVE_UP:
            ONLY(client, "client");
            NUM(0.001);
            co.give_up_seconds = x;
            break;
        case O_HELP:
            fputs(HELP, stdout);
            rc = KILN_EXIT_OK;
            goto out;
        default:
            kiln_cli_usage_error(cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
            goto out;
        }
    }
    const char *config = optind < argc ? argv[optind++] : NULL;
    if (optind < argc) {
        kiln_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
        goto out;
    }
    if (client) {
        co.config_path = config, co.sets = sets, co.n_sets = n_sets;
        if (!config) {
            kiln_cli_usage_error(cmd, "missing CONFIG");
            goto out;
        }
        if (!co.server) {
            kiln_cli_usage_error(cmd, "--server URL is required");
            goto out;
        }
        int usage = 0;
        kiln_status st = kiln_fl_client(&co, &usage);
        if (st) fprintf(stderr, "kiln fl client: %s\n", kiln_last_error());
        rc = st ? (usage ? KILN_EXIT_USAGE : KILN_EXIT_FAIL) : KILN_EXIT_OK;
        goto out;
    }
    int kind = kiln_fl_kind_parse(strategy);
    if (kind < 0) {
        kiln_cli_usage_error(cmd, "--strategy '%s': expected fedavg, fedprox, fedadam or fedyogi",
                             strategy);
        goto out;
    }
    o->strategy = kiln_fl_opts_default((kiln_fl_kind)kind);
    if (mu >= 0) o->strategy.mu = mu;
    if (slr >= 0) o->strategy.server_lr = slr;
    if (b1 >= 0) o->strategy.beta1 = b1;
    if (b2 >= 0) o->strategy.beta2 = b2;
    if (tau >= 0) o->strategy.tau = tau;
    o->strategy.max_norm = norm, o->strategy.clip = clip;
    o->strategy.dp_noise = dpn, o->strategy.dp_clip = dpc, o->strategy.dp_delta = dpd;
    if (dpd >= 1) {
        kiln_cli_usage_error(cmd, "--dp-delta must be below 1");
        goto out;
    }
    if (o->secure_agg && (dpn > 0 || norm > 0)) {
        kiln_cli_usage_error(cmd, "--secure-agg hides each update: it cannot be combined with "
                                  "--dp-noise or --max-update-norm, which need them");
        goto out;
    }
    o->config_path = config, o->sets = sets, o->n_sets = n_sets;
    o->argc = kiln_cli_argc(), o->argv = kiln_cli_argv();
    if (!config && !o->resume) {
        kiln_cli_usage_error(cmd, "missing CONFIG");
        goto out;
    }
    if (o->rounds < 1) {
        kiln_cli_usage_error(cmd, "--rounds R is required");
        goto out;
    }
    if (sim && so.clients < 1) {
        kiln_cli_usage_error(cmd, "--clients N is required");
        goto out;
    }
    if (sim && o->min_clients > so.clients) {
        kiln_cli_usage_error(cmd, "--min-clients %d is more than --clients %d", o->min_clients,
                             so.clients);
        goto out;
    }
    kiln_fl_result res;
    kiln_status st = sim ? kiln_fl_simulate(&so, &res) : kiln_fl_server(o, &res);
    if (st) fprintf(stderr, "kiln %s: %s\n", cmd, kiln_last_error());
    rc = st ? (res.usage_error ? KILN_EXIT_USAGE : KILN_EXIT_FAIL) : KILN_EXIT_OK;
out:
    for (int i = 0; i < n_owned; i++) free(owned[i]);
    free(owned);
    free(sets);
    return rc;
}
