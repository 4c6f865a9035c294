/* crc32c.c — CRC-32C, see kiln/crc32c.h.
 *
 * Table version: slicing-by-8 (Intel's), eight 256-entry tables where table[k][b] is the CRC of
 * byte b followed by k zero bytes, so eight input bytes fold into the state with eight lookups.
 * The tables are built by pthread_once on first use. Hardware version: _mm_crc32_u64 over 8-byte
 * words (read with memcpy: any alignment), then single bytes. Both work on the inverted state
 * (~crc) and invert again at the end, which is what makes extend() compose.
 *
 * Dispatch: kiln is built for the x86-64 baseline, which lacks the crc32 instruction (SSE4.2).
 * The hardware version is compiled for SSE4.2 alone (a target attribute; the suffix _sse42 marks
 * it for tests/isa_baseline.sh) and chosen at run time when the CPU has it, once: the choice is a
 * function pointer set under pthread_once. Elsewhere (other CPUs, other compilers) the tables.
 */
#include "kiln/crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <nmmintrin.h>
#define KILN_CRC32C_HW 1
#endif

#define POLY 0x82F63B78u /* 0x1EDC6F41 bit-reversed */

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_tables(void) {
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (POLY & (0u - (c & 1)));
        table[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; b++)
        for (int k = 1; k < 8; k++)
            table[k][b] = (table[k - 1][b] >> 8) ^ table[0][table[k - 1][b] & 0xFF];
}

uint32_t kiln_crc32c_portable(uint32_t crc, const void *data, size_t n) {
    pthread_once(&table_once, build_tables);
    const unsigned char *p = data;
    uint32_t c = ~crc;
    while (n >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
        lo ^= c; /* little-endian: the first byte is the low byte */
        c = table[7][lo & 0xFF] ^ table[6][(lo >> 8) & 0xFF] ^ table[5][(lo >> 16) & 0xFF] ^
            table[4][lo >> 24] ^ table[3][hi & 0xFF] ^ table[2][(hi >> 8) & 0xFF] ^
            table[1][(hi >> 16) & 0xFF] ^ table[0][hi >> 24];
        p += 8, n -= 8;
    }
    while (n--) c = (c >> 8) ^ table[0][(c ^ *p++) & 0xFF];
    return ~c;
}

#ifdef KILN_CRC32C_HW
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const void *data,
                                                              size_t n) {
    const unsigned char *p = data;
    uint64_t c = ~crc;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8, n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}
#endif

static uint32_t (*crc32c_impl)(uint32_t, const void *, size_t) = kiln_crc32c_portable;
static pthread_once_t impl_once = PTHREAD_ONCE_INIT;

static void choose_impl(void) {
#ifdef KILN_CRC32C_HW
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) crc32c_impl = crc32c_sse42;
#endif
}

int kiln_crc32c_hardware(void) {
    pthread_once(&impl_once, choose_impl);
    return crc32c_impl != kiln_crc32c_portable;
}

uint32_t kiln_crc32c_extend(uint32_t crc, const void *data, size_t n) {
    pthread_once(&impl_once, choose_impl);
    return crc32c_impl(crc, data, n);
}

uint32_t kiln_crc32c(const void *data, size_t n) {
    return kiln_crc32c_extend(0, data, n);
}
