/* test_prom.c — Prometheus metrics: the exact text of a small registry (HELP/TYPE lines,
 * labels and their escaping, cumulative buckets, _sum and _count), refused names and bounds,
 * and exact totals after 8 threads update, create series and render at once. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kiln/prom.h"

static void test_render_exact(void) {
    kiln_prom *r = kiln_prom_new();
    const char *req_labels[] = {"model", "code"};
    kiln_prom_family *req =
        kiln_prom_counter(r, "kiln_requests_total", "Requests.\nBy code \\ model.", 2, req_labels);
    kiln_prom_family *up = kiln_prom_gauge(r, "kiln_up", "Whether the server is up.", 0, NULL);
    const char *ver_labels[] = {"model"};
    kiln_prom_family *loaded = kiln_prom_gauge(r, "kiln_loaded_version", NULL, 1, ver_labels);
    const double bounds[] = {0.001, 0.01, 0.1};
    const char *lat_labels[] = {"model"};
    kiln_prom_family *lat =
        kiln_prom_histogram(r, "kiln_latency_seconds", "Latency.", 1, lat_labels, bounds, 3);
    kiln_prom_family *empty =
        kiln_prom_counter(r, "kiln_unused_total", "Never used.", 1, ver_labels);
    CHECK(req && up && loaded && lat && empty);

    kiln_prom_add(kiln_prom_series_of(req, (const char *[]){"mnist", "200"}), 3);
    kiln_prom_add(kiln_prom_series_of(req, (const char *[]){"mnist", "400"}), 1);
    kiln_prom_add(kiln_prom_series_of(req, (const char *[]){"mnist", "200"}), 2);
    kiln_prom_add(kiln_prom_series_of(req, (const char *[]){"a\"b\\c\nd", "200"}), 0.5);
    kiln_prom_add(kiln_prom_series_of(req, (const char *[]){"mnist", "200"}), -7); /* ignored */
    kiln_prom_set(kiln_prom_series_of(up, NULL), 1);
    kiln_prom_series *v = kiln_prom_series_of(loaded, (const char *[]){"mnist"});
    kiln_prom_set(v, 3);
    kiln_prom_add(v, -1);
    kiln_prom_series *h = kiln_prom_series_of(lat, (const char *[]){"mnist"});
    const double obs[] = {0.0005, 0.001, 0.002, 0.05, 0.05, 7};
    for (int i = 0; i < 6; i++) kiln_prom_observe(h, obs[i]);
    CHECK(kiln_prom_value(h) == 6);
    CHECK(kiln_prom_value(kiln_prom_series_of(req, (const char *[]){"mnist", "200"})) == 5);

    kiln_sbuf b = KILN_SBUF_INIT;
    CHECK_OK(kiln_prom_render(r, &b));
    const char *want = "# HELP kiln_requests_total Requests.\\nBy code \\\\ model.\n"
                       "# TYPE kiln_requests_total counter\n"
                       "kiln_requests_total{model=\"mnist\",code=\"200\"} 5\n"
                       "kiln_requests_total{model=\"mnist\",code=\"400\"} 1\n"
                       "kiln_requests_total{model=\"a\\\"b\\\\c\\nd\",code=\"200\"} 0.5\n"
                       "# HELP kiln_up Whether the server is up.\n"
                       "# TYPE kiln_up gauge\n"
                       "kiln_up 1\n"
                       "# TYPE kiln_loaded_version gauge\n"
                       "kiln_loaded_version{model=\"mnist\"} 2\n"
                       "# HELP kiln_latency_seconds Latency.\n"
                       "# TYPE kiln_latency_seconds histogram\n"
                       "kiln_latency_seconds_bucket{model=\"mnist\",le=\"0.001\"} 2\n"
                       "kiln_latency_seconds_bucket{model=\"mnist\",le=\"0.01\"} 3\n"
                       "kiln_latency_seconds_bucket{model=\"mnist\",le=\"0.1\"} 5\n"
                       "kiln_latency_seconds_bucket{model=\"mnist\",le=\"+Inf\"} 6\n"
                       "kiln_latency_seconds_sum{model=\"mnist\"} 7.1035\n"
                       "kiln_latency_seconds_count{model=\"mnist\"} 6\n";
    CHECK_MSG(b.data && strcmp(b.data, want) == 0, "got:\n%s\nwant:\n%s", b.data, want);
    kiln_sbuf_free(&b);
    kiln_prom_free(r);
}

static void test_bucket_sets_and_unlabeled_histogram(void) {
    int n;
    const double *lb = kiln_prom_latency_buckets(&n);
    CHECK(n == 14 && lb[0] == 0.0005 && lb[n - 1] == 10);
    const double *bb = kiln_prom_batch_buckets(&n);
    CHECK(n == 10 && bb[0] == 1 && bb[n - 1] == 512);
    kiln_prom *r = kiln_prom_new();
    kiln_prom_family *f = kiln_prom_histogram(r, "batch_size", "Batch sizes.", 0, NULL, bb, n);
    kiln_prom_series *s = kiln_prom_series_of(f, NULL);
    kiln_prom_observe(s, 3);
    kiln_prom_observe(s, 512);
    kiln_prom_observe(s, 1000);
    kiln_sbuf b = KILN_SBUF_INIT;
    CHECK_OK(kiln_prom_render(r, &b));
    CHECK(strstr(b.data, "batch_size_bucket{le=\"2\"} 0\nbatch_size_bucket{le=\"4\"} 1\n"));
    CHECK(strstr(b.data, "batch_size_bucket{le=\"512\"} 2\nbatch_size_bucket{le=\"+Inf\"} 3\n"));
    CHECK(strstr(b.data, "batch_size_sum 1515\nbatch_size_count 3\n"));
    kiln_sbuf_free(&b);
    kiln_prom_free(r);
}

static void test_refusals(void) {
    kiln_prom *r = kiln_prom_new();
    CHECK(kiln_prom_counter(r, "ok_total", "", 0, NULL));
    CHECK(!kiln_prom_counter(r, "ok_total", "", 0, NULL));
    CHECK_ERR_HAS("metric 'ok_total' already exists");
    CHECK(!kiln_prom_counter(r, "9bad", "", 0, NULL));
    CHECK_ERR_HAS("bad metric name '9bad'");
    CHECK(!kiln_prom_counter(r, "bad-name", "", 0, NULL));
    CHECK(!kiln_prom_gauge(r, "g", "", 1, (const char *[]){"__reserved"}));
    CHECK_ERR_HAS("bad label name '__reserved'");
    CHECK(!kiln_prom_gauge(r, "g", "", 2, (const char *[]){"a", "a"}));
    CHECK_ERR_HAS("label 'a' given twice");
    CHECK(!kiln_prom_histogram(r, "h", "", 1, (const char *[]){"le"}, (double[]){1}, 1));
    CHECK(!kiln_prom_histogram(r, "h", "", 0, NULL, (double[]){1, 1}, 2));
    CHECK_ERR_HAS("bucket bounds must be finite and increasing");
    CHECK(!kiln_prom_histogram(r, "h", "", 0, NULL, NULL, 0));
    CHECK(kiln_prom_gauge(r, "g:sub_ok", "", 1, (const char *[]){"l1"}));
    kiln_prom_free(r);
}

enum { THREADS = 8, ITERS = 20000 };
static kiln_prom *g_reg;
static kiln_prom_family *g_cnt, *g_hist;

static void *hammer(void *arg) {
    int t = (int)(intptr_t)arg;
    char mine[16];
    snprintf(mine, sizeof mine, "t%d", t);
    for (int i = 0; i < ITERS; i++) {
        kiln_prom_add(kiln_prom_series_of(g_cnt, (const char *[]){"shared"}), 1);
        kiln_prom_add(kiln_prom_series_of(g_cnt, (const char *[]){mine}), 0.5);
        char fresh[32]; /* new series appear while others read the list */
        snprintf(fresh, sizeof fresh, "s%d", i % 64);
        kiln_prom_add(kiln_prom_series_of(g_cnt, (const char *[]){fresh}), 1);
        kiln_prom_observe(kiln_prom_series_of(g_hist, NULL), (double)(i % 10) * 0.001);
        if (i % 2000 == 0) {
            kiln_sbuf b = KILN_SBUF_INIT;
            kiln_prom_render(g_reg, &b);
            kiln_sbuf_free(&b);
        }
    }
    return NULL;
}

static void test_threads(void) {
    g_reg = kiln_prom_new();
    g_cnt = kiln_prom_counter(g_reg, "hits_total", "Hits.", 1, (const char *[]){"who"});
    int n;
    const double *lb = kiln_prom_latency_buckets(&n);
    g_hist = kiln_prom_histogram(g_reg, "lat_seconds", "Latency.", 0, NULL, lb, n);
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) pthread_create(&th[t], NULL, hammer, (void *)(intptr_t)t);
    for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
    CHECK(kiln_prom_value(kiln_prom_series_of(g_cnt, (const char *[]){"shared"})) ==
          THREADS * ITERS);
    CHECK(kiln_prom_value(kiln_prom_series_of(g_cnt, (const char *[]){"t3"})) == ITERS * 0.5);
    double fresh = 0;
    for (int i = 0; i < 64; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%d", i);
        fresh += kiln_prom_value(kiln_prom_series_of(g_cnt, (const char *[]){name}));
    }
    CHECK(fresh == THREADS * ITERS);
    CHECK(kiln_prom_value(kiln_prom_series_of(g_hist, NULL)) == THREADS * ITERS);
    kiln_sbuf b = KILN_SBUF_INIT;
    CHECK_OK(kiln_prom_render(g_reg, &b));
    CHECK(strstr(b.data, "hits_total{who=\"shared\"} 160000\n"));
    CHECK(strstr(b.data, "lat_seconds_bucket{le=\"0.001\"} 32000\n")); /* 0 and 0.001 */
    CHECK(strstr(b.data, "lat_seconds_count 160000\n"));
    /* every series exactly once: 1 shared + 8 per-thread + 64 fresh */
    int lines = 0;
    for (const char *p = b.data; (p = strstr(p, "\nhits_total{")); p++) lines++;
    CHECK(lines == 1 + THREADS + 64);
    kiln_sbuf_free(&b);
    kiln_prom_free(g_reg);
}

int main(void) {
    RUN(test_render_exact);
    RUN(test_bucket_sets_and_unlabeled_histogram);
    RUN(test_refusals);
    RUN(test_threads);
    return kiln_test_summary();
}
