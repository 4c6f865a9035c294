/* fl_secagg.c — secure aggregation by pairwise masks (kiln/fl.h; Bonawitz et al. 2017's
 * masking, without its dropout recovery).
 *
 * Every client of a round's cohort turns samples * weights into fixed point (2^-16 units,
 * int64, so sums wrap exactly modulo 2^64) and adds, for every other member j, a mask
 * PRF(key, round.attempt | min(i, j) | max(i, j)) when its id is the smaller and subtracts it
 * otherwise. The server adds the masked vectors modulo 2^64: every pairwise mask appears once
 * with each sign, so the sum is exactly the sum of the fixed-point vectors, while a single
 * masked vector is indistinguishable from random to anyone without the key. The key is a
 * secret the clients share and the server does not know (--secagg-key); the PRF is
 * HMAC-SHA256 in counter mode (kiln_web_prf_u64). Limits: a member that does not answer leaves
 * its masks in the sum, so the round cannot be unmasked and is retried; the server cannot
 * check one client's values (NaN, norm), only the aggregate.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/fl.h"
#include "kiln/web.h"

#define FRAC 65536.0 /* 2^16 */

kiln_status kiln_fl_secagg_mask(const char *key, const char *cohort, const char *me,
                                const char *tag, const float *w, size_t n, double samples,
                                uint64_t *out) {
    if (!key || !*key) return kiln_error(KILN_ERR_INVALID, "secure aggregation needs --secagg-key");
    int in = 0;
    for (size_t i = 0; i < n; i++) {
        double y = samples * (double)w[i] * FRAC;
        if (!(fabs(y) < 4.6e18)) /* 2^62: room for sums of many clients */
            return kiln_error(KILN_ERR_INVALID,
                              "secure aggregation: value %g x %g samples is out "
                              "of the fixed-point range",
                              (double)w[i], samples);
        out[i] = (uint64_t)(int64_t)llround(y);
    }
    uint64_t *m = malloc((n ? n : 1) * sizeof *m);
    if (!m) return kiln_error(KILN_ERR_NOMEM, "secure aggregation: out of memory");
    kiln_status st = KILN_OK;
    const char *p = cohort;
    while (!st && p && *p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char other[160];
        snprintf(other, sizeof other, "%.*s", (int)(len < 159 ? len : 159), p);
        p = e ? e + 1 : NULL;
        int c = strcmp(me, other);
        if (c == 0) {
            in = 1;
            continue;
        }
        char label[512];
        snprintf(label, sizeof label, "kiln-fl-secagg|%s|%s|%s", tag, c < 0 ? me : other,
                 c < 0 ? other : me);
        if ((st = kiln_web_prf_u64(key, strlen(key), label, m, n))) break;
        for (size_t i = 0; i < n; i++) out[i] = c < 0 ? out[i] + m[i] : out[i] - m[i];
    }
    free(m);
    if (!st && !in)
        st = kiln_error(KILN_ERR_INVALID, "secure aggregation: '%s' is not in the cohort", me);
    return st;
}

void kiln_fl_secagg_add(uint64_t *sum, const uint64_t *masked, size_t n) {
    for (size_t i = 0; i < n; i++) sum[i] += masked[i]; /* modulo 2^64 */
}

void kiln_fl_secagg_unmask(const uint64_t *sum, size_t n, double *out) {
    for (size_t i = 0; i < n; i++) out[i] = (double)(int64_t)sum[i] / FRAC;
}
