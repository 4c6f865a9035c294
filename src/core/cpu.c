/* cpu.c — run-time detection of the instruction sets kiln's own loops may use (kiln/cpu.h).
 *
 * Detected once (pthread_once) through GCC's __builtin_cpu_supports, which reads CPUID and, for
 * AVX, whether the OS saves the wider registers (XGETBV). The cap (KILN_CPU or kiln_cpu_cap) is
 * an atomic applied on every read, so a test may lower it between calls.
 */
#include "kiln/cpu.h"

#include <pthread.h>
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
