/* web_fetch.c — one HTTP(S) request over libcurl (kiln/web.h's kiln_web_fetch).
 *
 * A fresh easy handle per call: the federated client makes a request every second or so at
 * most, so connection reuse is not worth the state. Bodies are binary (safetensors); the answer
 * is collected whole into a kiln_sbuf.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/sbuf.h"
#include "kiln/web.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void init_curl(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t on_data(char *p, size_t size, size_t n, void *ctx) {
    kiln_sbuf *b = ctx;
    kiln_sbuf_put(b, p, size * n);
    return b->failed ? 0 : size * n;
}

kiln_status kiln_web_fetch(const kiln_fetch_opts *o, const char *method, const char *url,
                           const void *body, size_t len, int *status, char **resp,
                           size_t *resp_len) {
    pthread_once(&once, init_curl);
    *status = 0, *resp = NULL, *resp_len = 0;
    CURL *h = curl_easy_init();
    if (!h) return kiln_error(KILN_ERR_NOMEM, "curl: cannot make a handle");
    char err[CURL_ERROR_SIZE] = "", auth[1100];
    struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/octet-stream");
    hd = curl_slist_append(hd, "Expect:");
    if (o && o->token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->token);
        hd = curl_slist_append(hd, auth);
    }
    kiln_sbuf b = KILN_SBUF_INIT;
    long ms = (long)((o && o->timeout_seconds > 0 ? o->timeout_seconds : 600) * 1000);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, err);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, ms < 10000 ? ms : 10000L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "kiln-fl");
    if (o && o->ca_file) curl_easy_setopt(h, CURLOPT_CAINFO, o->ca_file);
    if (o && o->cert_file) curl_easy_setopt(h, CURLOPT_SSLCERT, o->cert_file);
    if (o && o->key_file) curl_easy_setopt(h, CURLOPT_SSLKEY, o->key_file);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    if (strcmp(method, body ? "POST" : "GET")) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    CURLcode rc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(hd);
    curl_easy_cleanup(h);
    if (rc != CURLE_OK) {
        kiln_sbuf_free(&b);
        return kiln_error(KILN_ERR_IO, "%s %s: %s", method, url,
                          err[0] ? err : curl_easy_strerror(rc));
    }
    if (b.failed) {
        kiln_sbuf_free(&b);
        return kiln_error(KILN_ERR_NOMEM, "%s %s: out of memory for the answer", method, url);
    }
    *status = (int)code;
    if (!(*resp = kiln_sbuf_take(&b, resp_len))) return kiln_error(KILN_ERR_NOMEM, "out of memory");
    return KILN_OK;
}
