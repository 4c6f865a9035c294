/* web_crypto.c — the one cryptographic primitive federated learning needs from GnuTLS (which
 * only src/net/ includes): a keyed pseudo-random stream, HMAC-SHA256 in counter mode
 * (kiln/web.h's kiln_web_prf_u64). Secure aggregation derives each pair of clients' mask from
 * it, keyed by a secret the clients share and the server does not know.
 */
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <string.h>

#include "kiln/web.h"

kiln_status kiln_web_prf_u64(const void *key, size_t key_len, const char *label, uint64_t *out,
                             size_t n) {
    size_t ll = strlen(label);
    if (ll > 4000) return kiln_error(KILN_ERR_INVALID, "prf: label too long");
    unsigned char msg[4096 + 8], dig[32];
    memcpy(msg, label, ll);
    for (size_t b = 0; b * 4 < n; b++) {
        for (int i = 0; i < 8; i++) msg[ll + i] = (unsigned char)((uint64_t)b >> (8 * i));
        if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, key, key_len, msg, ll + 8, dig) < 0)
            return kiln_error(KILN_ERR_INVALID, "prf: HMAC-SHA256 failed");
        for (int w = 0; w < 4 && b * 4 + (size_t)w < n; w++) {
            uint64_t v = 0;
            for (int i = 0; i < 8; i++) v |= (uint64_t)dig[8 * w + i] << (8 * i);
            out[b * 4 + (size_t)w] = v;
        }
    }
    return KILN_OK;
}
