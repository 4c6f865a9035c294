/* fl_client.c — `kiln fl client`: a federated client (kiln/fl.h; protocol in fl_server.c and
 * docs/federated.md).
 *
 * Loop: poll GET /fl/v1/task; when sampled, write the global weights to the work folder, train
 * locally with the ordinary trainer from them (fl_local.c: the task's epochs, FedProx's mu,
 * the round's shuffle offset), and POST the trained weights with the number of training rows.
 * 204 means "nothing now" (poll again), 410 "over" (exit 0), 401/403 "refused" (exit 1). A
 * server that cannot be reached is retried for give_up_seconds. The client builds its own copy
 * of the model from the config only to lay out the bodies: its shapes must be the server's,
 * which the server checks.
 *
 * --inject (tests only) makes the client misbehave on purpose: garbage (a body that is not
 * safetensors), shape (a tensor of the wrong shape), nan, scale:K (the change multiplied by
 * K), drop (exit right after taking a task, as a crash would), sleep:S (answer S seconds late).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dist/fl_internal.h"
#include "kiln/fileio.h"
#include "kiln/web.h"

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char *err_text(const char *body) {
    return body && *body ? body : "(no body)";
}

static kiln_status train_and_send(const kiln_fl_client_opts *o, kiln_graph *g,
                                  const kiln_fetch_opts *fo, const char *id, const char *dir,
                                  const char *task, size_t task_len, int *refused) {
    char round[32] = "", epochs[32] = "1", mu[64] = "0", so[32] = "0";
    kiln_status st = kiln_fl_meta(task, task_len, "round", round, sizeof round);
    if (st) return kiln_error(KILN_ERR_FORMAT, "the task has no round: %s", kiln_last_error());
    kiln_fl_meta(task, task_len, "epochs", epochs, sizeof epochs);
    kiln_fl_meta(task, task_len, "mu", mu, sizeof mu);
    kiln_fl_meta(task, task_len, "seed_offset", so, sizeof so);
    size_t n = kiln_graph_params_size(g);
    /* calloc: the gaps between parameters of the flat layout stay 0 */
    float *global = calloc(n, sizeof *global), *out = calloc(n, sizeof *out);
    if (!global || !out) {
        free(global), free(out);
        return kiln_error(KILN_ERR_NOMEM, "out of memory");
    }
    if ((st = kiln_fl_decode(g, task, task_len, "task", global))) goto done;
    if (o->inject && !strcmp(o->inject, "drop")) {
        printf("fl client %s: round %s: dropping out (--inject drop)\n", id, round);
        fflush(stdout);
        _exit(3);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/global.safetensors", dir);
    if ((st = kiln_file_write_atomic(path, task, task_len))) goto done;
    fl_local_opts lo = {.config_path = o->config_path,
                        .sets = o->sets,
                        .n_sets = o->n_sets,
                        .init_path = path,
                        .epochs = atoi(epochs),
                        .mu = strtod(mu, NULL),
                        .seed_offset = strtoull(so, NULL, 10),
                        .limit = o->limit,
                        .shard = o->shard,
                        .shards = o->shards,
                        .runs_dir = dir,
                        .threads = o->threads};
    int64_t samples = 0;
    int usage = 0;
    double t0 = now_s();
    char metrics[1024] = "";
    lo.metrics = metrics, lo.metrics_cap = sizeof metrics;
    if ((st = kiln_fl_local_train(&lo, g, out, &samples, &usage, o->work_dir != NULL))) goto done;
    double ss = 0;
    for (size_t i = 0; i < n; i++)
        ss += ((double)out[i] - global[i]) * ((double)out[i] - global[i]);
    printf("fl client %s: round %s: trained %s epoch%s on %lld rows in %.1f s (change norm %.4g)\n",
           id, round, epochs, atoi(epochs) == 1 ? "" : "s", (long long)samples, now_s() - t0,
           sqrt(ss));
    fflush(stdout);
    const char *inj = o->inject ? o->inject : "";
    if (!strcmp(inj, "nan")) out[0] = NAN;
    if (!strncmp(inj, "scale:", 6)) {
        double k = strtod(inj + 6, NULL);
        for (size_t i = 0; i < n; i++)
            out[i] = (float)(global[i] + k * ((double)out[i] - global[i]));
    }
    if (!strncmp(inj, "sleep:", 6)) sleep_s(strtod(inj + 6, NULL));
    char sm[32];
    snprintf(sm, sizeof sm, "%lld", (long long)samples);
    const char *meta[] = {"round", round, "samples", sm, "client", id, "metrics", metrics};
    char *body = NULL, sa[8] = "";
    size_t len = 0;
    if (!kiln_fl_meta(task, task_len, "secagg", sa, sizeof sa) && !strcmp(sa, "1")) {
        /* secure aggregation: samples * weights, masked pairwise with the rest of the cohort */
        char at[32] = "", tag[80];
        char *cohort = malloc(task_len + 1);
        uint64_t *mk = calloc(n, sizeof *mk);
        if (!cohort || !mk) st = kiln_error(KILN_ERR_NOMEM, "out of memory");
        if (!st) st = kiln_fl_meta(task, task_len, "cohort", cohort, task_len + 1);
        kiln_fl_meta(task, task_len, "attempt", at, sizeof at);
        snprintf(tag, sizeof tag, "%s.%s", round, at);
        if (!st)
            st = kiln_fl_secagg_mask(o->secagg_key, cohort, id, tag, out, n, (double)samples, mk);
        if (!st) st = kiln_fl_encode_masked(g, mk, meta, 4, &body, &len);
        free(cohort), free(mk);
        if (st) goto done;
    } else if ((st = kiln_fl_encode(g, out, meta, 4, &body, &len))) {
        goto done;
    }
    if (!strcmp(inj, "garbage")) {
        free(body);
        body = strdup("this is not a safetensors file");
        len = body ? strlen(body) : 0;
    } else if (!strcmp(inj, "shape")) { /* the first 2-D tensor's dims swapped: [a,b] -> [b,a] */
        uint64_t hl = 0;
        for (int i = 0; i < 8; i++) hl |= (uint64_t)(unsigned char)body[i] << (8 * i);
        char *h = body + 8, *sh = h;
        while ((sh = strstr(sh, "\"shape\":[")) && (size_t)(sh - h) < hl) {
            long a = 0, b = 0;
            int used = 0;
            sh += 9;
            if (sscanf(sh, "%ld,%ld]%n", &a, &b, &used) == 2 && used > 0 && a != b) {
                char sw[64];
                int k = snprintf(sw, sizeof sw, "%ld,%ld]", b, a);
                if (k == used) memcpy(sh, sw, (size_t)k); /* same length: the framing holds */
                break;
            }
        }
    }
    char url[2048];
    snprintf(url, sizeof url, "%s/fl/v1/update?client=%s&round=%s", o->server, id, round);
    int status = 0;
    char *resp = NULL;
    size_t rl = 0;
    st = kiln_web_fetch(fo, "POST", url, body, len, &status, &resp, &rl);
    free(body);
    if (st) { /* the server went away mid-round: keep polling (it may come back resumed) */
        printf("fl client %s: round %s: the update could not be sent: %s\n", id, round,
               kiln_last_error());
        st = KILN_OK;
    } else {
        if (status == 200)
            printf("fl client %s: round %s: update accepted\n", id, round);
        else if (status == 401 || status == 403)
            *refused = status, st = kiln_error(KILN_ERR_INVALID,
                                               "the server refused this client "
                                               "(HTTP %d): %s",
                                               status, err_text(resp));
        else
            printf("fl client %s: round %s: update not taken (HTTP %d): %s\n", id, round, status,
                   err_text(resp));
        fflush(stdout);
    }
    free(resp);
done:
    free(global), free(out);
    return st;
}

kiln_status kiln_fl_client(const kiln_fl_client_opts *o, int *usage_error) {
    *usage_error = 1;
    if (!o->server) return kiln_error(KILN_ERR_INVALID, "--server URL is required");
    if (!o->config_path) return kiln_error(KILN_ERR_INVALID, "a CONFIG is required");
    if (o->shards > 1 && (o->shard < 0 || o->shard >= o->shards))
        return kiln_error(KILN_ERR_INVALID, "--shard %d/%d: expected 0 <= I < N", o->shard,
                          o->shards);
    char id[128];
    if (o->id)
        snprintf(id, sizeof id, "%s", o->id);
    else {
        char host[64] = "host";
        gethostname(host, sizeof host - 1);
        snprintf(id, sizeof id, "%s-%ld", host, (long)getpid());
    }
    /* the model, for the layout of the bodies */
    kiln_cfg *cfg = NULL;
    kiln_model m = {0};
    int has_model = 0;
    kiln_status st = kiln_config_load(o->config_path, &cfg);
    for (int i = 0; !st && i < o->n_sets; i++) st = kiln_config_set(cfg, o->sets[i]);
    if (!st) st = kiln_config_resolve(cfg);
    if (!st && !(st = kiln_model_build(cfg, &m))) has_model = 1;
    if (!st && !(st = kiln_graph_init_params(m.graph))) kiln_fl_zero_gaps(m.graph);
    char dir[4096];
    int made = 0;
    if (!st) {
        *usage_error = 0;
        if (o->work_dir) {
            snprintf(dir, sizeof dir, "%s", o->work_dir);
            st = kiln_mkdirs(dir);
        } else {
            snprintf(dir, sizeof dir, "/tmp/kiln-fl-client-XXXXXX");
            if (!mkdtemp(dir))
                st = kiln_error(KILN_ERR_IO, "cannot make a work folder in /tmp");
            else
                made = 1;
        }
    }
    kiln_fetch_opts fo = {.token = o->token,
                          .ca_file = o->ca_file,
                          .cert_file = o->cert_file,
                          .key_file = o->key_file,
                          .timeout_seconds = 600};
    char url[2048];
    snprintf(url, sizeof url, "%s/fl/v1/task?client=%s", o->server, id);
    if (!st) printf("fl client %s: polling %s\n", id, o->server);
    fflush(stdout);
    double last_ok = now_s(), poll = o->poll_seconds > 0 ? o->poll_seconds : 0.5;
    double give_up = o->give_up_seconds > 0 ? o->give_up_seconds : 60;
    while (!st) {
        int status = 0, refused = 0;
        char *body = NULL;
        size_t len = 0;
        kiln_status fs = kiln_web_fetch(&fo, "GET", url, NULL, 0, &status, &body, &len);
        if (fs) {
            if (now_s() - last_ok > give_up) {
                st = kiln_error(KILN_ERR_IO, "the server has not answered for %.0f s: %s", give_up,
                                kiln_last_error());
                break;
            }
            sleep_s(poll);
            continue;
        }
        last_ok = now_s();
        if (status == 200) {
            st = train_and_send(o, m.graph, &fo, id, dir, body, len, &refused);
            last_ok = now_s();
        } else if (status == 410) {
            printf("fl client %s: the federation is over\n", id);
            free(body);
            break;
        } else if (status == 401 || status == 403) {
            st = kiln_error(KILN_ERR_INVALID, "the server refused this client (HTTP %d): %s",
                            status, err_text(body));
        } else if (status == 204) {
            sleep_s(poll);
        } else {
            fprintf(stderr, "fl client %s: HTTP %d from the server: %s\n", id, status,
                    err_text(body));
            sleep_s(poll);
        }
        free(body);
    }
    fflush(stdout);
    if (made) kiln_fl_remove_tree(dir);
    if (has_model) kiln_model_free(&m);
    kiln_cfg_free(cfg);
    return st;
}
