/* fmt_f32.c — the shortest decimal that reads back as the same float32 (kiln_f32_shortest).
 *
 * A finite v = m·2^e (integer m < 2^24, e in [-149, 104]) is what strtof returns for every
 * decimal inside its rounding interval. With the quarter-ulp u = 2^(e-2) that interval is
 * [X_lo·u, X_hi·u] where X_hi = 4m+2 and X_lo = 4m-2, or 4m-1 when m = 2^23 starts a binade (the
 * gap below is then half as wide); its ends belong to it when m is even (ties go to even).
 *
 * The shortest decimal in the interval is the one with the most trailing zeros:
 *   1. take a unit 10^j with at least one multiple inside: j = floor(log10(u)) will do, since the
 *      interval is at least 3u wide;
 *   2. N_lo..N_hi are the multiples of 10^j inside (the ends divided by 10^j, rounded inwards);
 *   3. while a multiple of 10 lies in N_lo..N_hi, divide both by 10 (ceil, floor) and bump j; the
 *      last non-empty range holds the candidates, all with the same, smallest digit count;
 *   4. the answer is the candidate nearest v (ties to even): round(v / 10^j), clamped to it.
 * Steps 2 and 4 divide X·u by 10^j exactly, in integers: scaled() returns floor(2·X·u/10^j)
 * and whether that division left no remainder, which tells integers, halves and everything in
 * between apart. The products fit 128 bits except X·5^k for k > 27 (|v| below about 1e-19),
 * which takes 192. Steps 3 and 4 work on values below 2^31 in 64-bit integers.
 *
 * Ranges that keep it exact (e2 = e-2 in [-151, 102]): j starts at floor(e2·log10 2) in
 * [-46, 30] and ends at most at 38; every scaled value satisfies 2·X·u/10^j < 20·X < 2^31,
 * since 10^j_start > 2^e2/10. tests/test_tensor_json.c checks sampled floats against an
 * independent strtof-based search; an exhaustive run over all 2^32 bit patterns is reported
 * there too.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kiln/sbuf.h"

typedef unsigned __int128 u128;

static const uint64_t POW5[28] = {
    1ull,
    5ull,
    25ull,
    125ull,
    625ull,
    3125ull,
    15625ull,
    78125ull,
    390625ull,
    1953125ull,
    9765625ull,
    48828125ull,
    244140625ull,
    1220703125ull,
    6103515625ull,
    30517578125ull,
    152587890625ull,
    762939453125ull,
    3814697265625ull,
    19073486328125ull,
    95367431640625ull,
    476837158203125ull,
    2384185791015625ull,
    11920928955078125ull,
    59604644775390625ull,
    298023223876953125ull,
    1490116119384765625ull,
    7450580596923828125ull,
};

/* 5^k for k in [0, 54]. */
static inline u128 pow5(int k) {
    return k <= 27 ? POW5[k] : (u128)POW5[27] * POW5[k - 27];
}

typedef struct {
    uint64_t q2; /* floor(2 · X · 2^e2 / 10^j) */
    int exact;   /* the division had no remainder */
} scaled_t;

/* X · 2^e2 / 10^j in halves, X < 2^26 (ranges in the comment at the top). */
static scaled_t scaled(uint64_t X, int e2, int j) {
    scaled_t r;
    int E = e2 + 1; /* the factor 2 of q2 */
    if (j >= 0) {   /* X · 2^(E-j) / 5^j */
        int s = E - j;
        if (s >= 0) {
            u128 num = (u128)X << s, den = pow5(j);
            r.q2 = (uint64_t)(num / den);
            r.exact = num % den == 0;
        } else { /* den = 10^j / 2^E < X: the value is at least 1/2 */
            uint64_t den = (uint64_t)pow5(j) << -s;
            r.q2 = X / den;
            r.exact = X % den == 0;
        }
        return r;
    }
    int k = -j, s = E + k; /* X · 5^k · 2^s */
    u128 p5 = pow5(k);
    if (s >= 0) { /* only for v in [2^23, 2^25), at k = 1: small products */
        u128 p = (u128)X * p5 << s;
        r.q2 = (uint64_t)p;
        r.exact = 1;
        return r;
    }
    int sh = -s;   /* in [1, 150] */
    if (k <= 27) { /* P = X · 5^k < 2^89, and then sh < 128 (k >= 0.3 sh for such v) */
        u128 P = (u128)X * POW5[k];
        r.q2 = (uint64_t)(P >> sh);
        r.exact = (P & (((u128)1 << sh) - 1)) == 0;
        return r;
    }
    /* P = X · 5^k as three 64-bit limbs, then P >> sh */
    u128 a = (u128)X * (uint64_t)p5, b = (u128)X * (uint64_t)(p5 >> 64);
    uint64_t P[3];
    P[0] = (uint64_t)a;
    u128 mid = (a >> 64) + (uint64_t)b;
    P[1] = (uint64_t)mid;
    P[2] = (uint64_t)(b >> 64) + (uint64_t)(mid >> 64);
    int limb = sh / 64, bit = sh % 64;
    uint64_t q = P[limb] >> bit;
    if (bit && limb < 2) q |= P[limb + 1] << (64 - bit);
    uint64_t low = P[limb] & ((bit ? (1ull << bit) : 1ull) - 1); /* bits below the shift */
    for (int i = 0; i < limb; i++) low |= P[i];
    r.q2 = q;
    r.exact = low == 0;
    return r;
}

/* Writes the positive finite v (as m, e) as digits n·10^J, returns n and sets *J. */
static uint64_t shortest(uint32_t m, int e, int boundary, int *J) {
    int e2 = e - 2, incl = (m & 1) == 0;
    uint64_t X = 4ull * m, X_lo = boundary ? X - 1 : X - 2, X_hi = X + 2;
    /* floor(log10 u): e2·log10 2 is 0 or at least 1e-3 away from an integer for e2 in range */
    int j = (int)floor(e2 * 0.30102999566398119521);

    scaled_t lo = scaled(X_lo, e2, j), hi = scaled(X_hi, e2, j);
    uint64_t lo_fl = lo.q2 >> 1, hi_fl = hi.q2 >> 1;
    int lo_int = !(lo.q2 & 1) && lo.exact, hi_int = !(hi.q2 & 1) && hi.exact;
    uint64_t n_lo = lo_int && incl ? lo_fl : lo_fl + 1;
    uint64_t n_hi = hi_int && !incl ? hi_fl - 1 : hi_fl;

    for (;;) {
        uint64_t a = (n_lo + 9) / 10, b = n_hi / 10;
        if (a > b) break;
        n_lo = a, n_hi = b, j++;
    }
    scaled_t d = scaled(X, e2, j);
    uint64_t fl = d.q2 >> 1, n;
    if (!(d.q2 & 1))
        n = fl;
    else if (!d.exact)
        n = fl + 1;
    else
        n = fl + (fl & 1);
    if (n < n_lo) n = n_lo;
    if (n > n_hi) n = n_hi;
    *J = j;
    return n;
}

int kiln_f32_shortest(float v, char out[KILN_F32_CHARS]) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    int neg = bits >> 31, ex = (bits >> 23) & 0xff;
    uint32_t frac = bits & 0x7fffff;
    char *p = out;
    if (ex == 0xff) {
        const char *s = frac ? "NaN" : neg ? "-Infinity" : "Infinity";
        size_t n = strlen(s);
        memcpy(out, s, n + 1);
        return (int)n;
    }
    if (neg) *p++ = '-';
    if (ex == 0 && frac == 0) {
        memcpy(p, "0.0", 4);
        return (int)(p - out) + 3;
    }
    uint32_t m = ex ? frac | 0x800000u : frac;
    int e = ex ? ex - 150 : -149, J;
    uint64_t n = shortest(m, e, ex > 1 && frac == 0, &J);

    char dig[24];
    int nd = 0;
    do dig[nd++] = (char)('0' + n % 10), n /= 10; /* n >= 1: the interval lies above 0 */
    while (n);
    for (int i = 0; i < nd / 2; i++) {
        char c = dig[i];
        dig[i] = dig[nd - 1 - i], dig[nd - 1 - i] = c;
    }
    int E10 = J + nd - 1; /* exponent of the leading digit */
    if (E10 >= 16 || E10 < -4) {
        *p++ = dig[0];
        if (nd > 1) {
            *p++ = '.';
            memcpy(p, dig + 1, (size_t)nd - 1);
            p += nd - 1;
        }
        *p++ = 'e';
        *p++ = E10 < 0 ? '-' : '+';
        int a = E10 < 0 ? -E10 : E10;
        if (a >= 10)
            *p++ = (char)('0' + a / 10);
        else
            *p++ = '0';
        *p++ = (char)('0' + a % 10);
    } else if (E10 >= 0) {
        if (nd <= E10 + 1) { /* an integer: digits, zeros, ".0" */
            memcpy(p, dig, (size_t)nd);
            p += nd;
            for (int i = nd; i <= E10; i++) *p++ = '0';
            *p++ = '.', *p++ = '0';
        } else {
            memcpy(p, dig, (size_t)E10 + 1);
            p += E10 + 1;
            *p++ = '.';
            memcpy(p, dig + E10 + 1, (size_t)(nd - E10 - 1));
            p += nd - E10 - 1;
        }
    } else {
        *p++ = '0', *p++ = '.';
        for (int i = -1; i > E10; i--) *p++ = '0';
        memcpy(p, dig, (size_t)nd);
        p += nd;
    }
    *p = 0;
    return (int)(p - out);
}
