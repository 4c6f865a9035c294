/* kiln/cpu.h — the instruction sets kiln's own loops may use on this CPU, found at run time.
 *
 * kiln is built for the x86-64 baseline (SSE2) so that one binary runs everywhere; the few own
 * loops where wider vectors pay (measured: bench/portable_vs_native.sh) have variants compiled
 * for newer instruction sets, chosen per call by kiln_cpu_level(). The variants compute the same
 * IEEE operations in the same order (no FMA contraction in ISO C mode), so results are
 * bit-identical whichever runs. oneDNN makes the same choice for its own kernels.
 *
 * KILN_CPU=baseline (or avx2) in the environment caps the level, as kiln_cpu_cap does: to
 * measure what a variant gains, or to test that variants agree.
 */
#ifndef KILN_CPU_H
#define KILN_CPU_H

typedef enum {
    KILN_CPU_BASELINE = 0, /* x86-64: SSE2 (and every non-x86 CPU) */
    KILN_CPU_AVX2,         /* AVX2 and FMA (Haswell, Zen and later) */
    KILN_CPU_AVX512,       /* AVX-512 F, BW, DQ, VL (Skylake-SP, Zen 4 and later) */
} kiln_cpu_level;

/* The highest level this CPU supports, capped by KILN_CPU and kiln_cpu_cap. Cheap after the
 * first call (a cached value), thread-safe. */
kiln_cpu_level kiln_cpu_level_get(void);
/* Never use more than max from now on (never raises the level above what the CPU has). */
void kiln_cpu_cap(kiln_cpu_level max);
/* "baseline", "avx2", "avx512". */
const char *kiln_cpu_level_name(kiln_cpu_level l);

/* ---- low-precision inference features (kiln optimize), found at run time from CPUID and the
 * register state the OS saves (XGETBV); never from how kiln was built. ---- */
typedef struct {
    int avx512_vnni, avx_vnni;  /* int8 dot products without the 16-bit intermediate */
    int avx512_bf16;            /* bf16 dot products (Cooper Lake, Zen 4) */
    int amx_tile, amx_int8, amx_bf16; /* Sapphire Rapids and later */
} kiln_cpu_features;
kiln_cpu_features kiln_cpu_features_get(void);
/* 1 when int8 dot products run without saturating 16-bit sums (VNNI or AMX int8). */
int kiln_cpu_has_int8_dot(void);
/* 1 when bf16 matmuls have hardware support (AVX512-BF16 or AMX-BF16). */
int kiln_cpu_has_bf16(void);

#endif
