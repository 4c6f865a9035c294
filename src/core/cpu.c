/* cpu.c — run-time detection of the instruction sets kiln's own loops may use (kiln/cpu.h).
 *
 * Detected once (pthread_once) through GCC's __builtin_cpu_supports, which reads CPUID and, for
 * AVX, whether the OS saves the wider registers (XGETBV). The cap (KILN_CPU or kiln_cpu_cap) is
 * an atomic applied on every read, so a test may lower it between calls.
 */
#include "kiln/cpu.h"

#include <pthread.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static kiln_cpu_level detected;
static atomic_int cap = KILN_CPU_AVX512;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void detect(void) {
    detected = KILN_CPU_BASELINE;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) detected = KILN_CPU_AVX2;
    if (detected == KILN_CPU_AVX2 && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl"))
        detected = KILN_CPU_AVX512;
#endif
    const char *env = getenv("KILN_CPU");
    if (env && !strcmp(env, "baseline")) atomic_store(&cap, KILN_CPU_BASELINE);
    if (env && !strcmp(env, "avx2")) atomic_store(&cap, KILN_CPU_AVX2);
}

kiln_cpu_level kiln_cpu_level_get(void) {
    pthread_once(&once, detect);
    int c = atomic_load_explicit(&cap, memory_order_relaxed);
    return (int)detected < c ? detected : (kiln_cpu_level)c;
}

void kiln_cpu_cap(kiln_cpu_level max) {
    pthread_once(&once, detect);
    atomic_store(&cap, (int)max);
}

const char *kiln_cpu_level_name(kiln_cpu_level l) {
    return l == KILN_CPU_AVX512 ? "avx512" : l == KILN_CPU_AVX2 ? "avx2" : "baseline";
}

/* ---- low-precision features (kiln/cpu.h) ----
 * CPUID leaf 7: ECX bit 11 AVX512-VNNI, EDX bits 22/24/25 AMX-BF16/TILE/INT8; leaf 7 subleaf 1:
 * EAX bit 4 AVX-VNNI, bit 5 AVX512-BF16. The AVX-512 ones count only when the OS saves the
 * opmask and upper ZMM state (XCR0 bits 5-7, with 1-2 for SSE/AVX), the AMX ones only when it
 * saves the tile state (XCR0 bits 17-18); AVX-VNNI needs the AVX state. KILN_CPU=baseline or
 * avx2 turns off what needs AVX-512 (and with baseline every one of them). */
static kiln_cpu_features feats;
static pthread_once_t feats_once = PTHREAD_ONCE_INIT;

static void detect_features(void) {
    memset(&feats, 0, sizeof feats);
#if defined(__x86_64__) && defined(__GNUC__)
    unsigned a, b, c, d, max = __get_cpuid_max(0, NULL);
    if (max < 7 || !__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return; /* OSXSAVE */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    unsigned long long xcr0 = ((unsigned long long)hi << 32) | lo;
    int avx_os = (xcr0 & 6) == 6, avx512_os = avx_os && (xcr0 & 0xe0) == 0xe0,
        amx_os = (xcr0 & 0x60000) == 0x60000;
    __cpuid_count(7, 0, a, b, c, d);
    feats.avx512_vnni = avx512_os && (c >> 11 & 1);
    feats.amx_bf16 = amx_os && (d >> 22 & 1);
    feats.amx_tile = amx_os && (d >> 24 & 1);
    feats.amx_int8 = amx_os && (d >> 25 & 1);
    unsigned sub = a;
    if (sub >= 1) {
        __cpuid_count(7, 1, a, b, c, d);
        feats.avx_vnni = avx_os && (a >> 4 & 1);
        feats.avx512_bf16 = avx512_os && (a >> 5 & 1);
    }
#endif
}

kiln_cpu_features kiln_cpu_features_get(void) {
    pthread_once(&feats_once, detect_features);
    kiln_cpu_features f = feats;
    kiln_cpu_level l = kiln_cpu_level_get();
    if (l < KILN_CPU_AVX512) f.avx512_vnni = f.avx512_bf16 = 0;
    if (l < KILN_CPU_AVX2) memset(&f, 0, sizeof f);
    return f;
}

int kiln_cpu_has_int8_dot(void) {
    kiln_cpu_features f = kiln_cpu_features_get();
    return f.avx512_vnni || f.avx_vnni || (f.amx_tile && f.amx_int8);
}

int kiln_cpu_has_bf16(void) {
    kiln_cpu_features f = kiln_cpu_features_get();
    return f.avx512_bf16 || (f.amx_tile && f.amx_bf16);
}
