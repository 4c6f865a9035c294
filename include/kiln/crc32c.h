/* kiln/crc32c.h — CRC-32C (Castagnoli), the checksum of TFRecord files, iSCSI, ext4 and LevelDB.
 *
 * Polynomial 0x1EDC6F41 (reflected 0x82F63B78), initial value and final xor 0xFFFFFFFF, so
 * kiln_crc32c("123456789", 9) == 0xE3069283. kiln_crc32c_extend continues a checksum:
 * extend(crc32c(a), b) == crc32c(a || b), which lets a writer checksum a message in pieces.
 *
 * Two implementations give identical results: the SSE4.2 crc32 instruction (8 bytes per
 * instruction) when the CPU has it (checked at run time, once: any x86-64 since 2008), otherwise
 * slicing-by-8 over tables built once on first use (thread-safe). kiln_crc32c_portable is always
 * the table version, so tests can compare the two.
 *
 * TFRecord stores masked checksums, so that a CRC computed over data that itself holds CRCs
 * stays well distributed: mask(c) = rotate_right(c, 15) + 0xA282EAD8 (mod 2^32).
 */
#ifndef KILN_CRC32C_H
#define KILN_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t kiln_crc32c(const void *data, size_t n);
uint32_t kiln_crc32c_extend(uint32_t crc, const void *data, size_t n);
/* The table implementation (what kiln_crc32c_extend uses without SSE4.2). */
uint32_t kiln_crc32c_portable(uint32_t crc, const void *data, size_t n);
/* 1 when kiln_crc32c_extend runs on the crc32 instruction (this CPU has SSE4.2), else 0. */
int kiln_crc32c_hardware(void);

static inline uint32_t kiln_crc32c_mask(uint32_t crc) {
    return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}
static inline uint32_t kiln_crc32c_unmask(uint32_t masked) {
    uint32_t r = masked - 0xA282EAD8u;
    return (r >> 17) | (r << 15);
}

#endif
