/* test_crc32c.c — CRC-32C: the standard test vectors (the "123456789" check value and the
 * iSCSI vectors of RFC 3720 B.4), the hardware and table versions against each other and
 * against a bit-by-bit reference at every length and alignment, extend() composing, and the
 * TFRecord mask (round trip, and rotate-and-add by hand), and the run-time choice of the
 * hardware version exactly when the CPU has SSE4.2 (kiln is built for the x86-64 baseline). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kiln/crc32c.h"
#include "tb_events.h" /* tb_crc32c_bitwise: the reference */

static void test_vectors(void) {
    CHECK(kiln_crc32c("123456789", 9) == 0xE3069283u);
    CHECK(kiln_crc32c_portable(0, "123456789", 9) == 0xE3069283u);
    CHECK(kiln_crc32c("", 0) == 0);
    unsigned char b[32];
    memset(b, 0, sizeof b); /* RFC 3720 B.4: 32 bytes of zeros */
    CHECK(kiln_crc32c(b, 32) == 0x8A9136AAu);
    CHECK(kiln_crc32c_portable(0, b, 32) == 0x8A9136AAu);
    memset(b, 0xFF, sizeof b); /* 32 bytes of 0xFF */
    CHECK(kiln_crc32c(b, 32) == 0x62A8AB43u);
    for (int i = 0; i < 32; i++) b[i] = (unsigned char)i; /* incrementing */
    CHECK(kiln_crc32c(b, 32) == 0x46DD794Eu);
    for (int i = 0; i < 32; i++) b[i] = (unsigned char)(31 - i); /* decrementing */
    CHECK(kiln_crc32c(b, 32) == 0x113FDB5Cu);
    CHECK(kiln_crc32c_portable(0, b, 32) == 0x113FDB5Cu);
    /* RFC 3720 B.4: an iSCSI SCSI Read (10) command PDU */
    static const unsigned char pdu[48] = {0x01, 0xc0, 0, 0,    0,    0, 0, 0,    0,    0, 0,    0,
                                          0,    0,    0, 0,    0x14, 0, 0, 0,    0,    0, 0x04, 0,
                                          0,    0,    0, 0x14, 0,    0, 0, 0x18, 0x28, 0, 0,    0,
                                          0,    0,    0, 0,    0x02, 0, 0, 0,    0,    0, 0,    0};
    CHECK(kiln_crc32c(pdu, sizeof pdu) == 0xD9963A56u);
}

static void test_every_length_and_alignment(void) {
    enum { N = 300 };
    unsigned char *buf = malloc(N + 16);
    for (int i = 0; i < N + 16; i++) buf[i] = (unsigned char)(i * 131 + 7);
    int bad = 0;
    for (int align = 0; align < 8; align++)
        for (int n = 0; n <= N; n++) {
            uint32_t ref = tb_crc32c_bitwise(buf + align, (size_t)n);
            bad += kiln_crc32c(buf + align, (size_t)n) != ref;
            bad += kiln_crc32c_portable(0, buf + align, (size_t)n) != ref;
        }
    CHECK_MSG(bad == 0, "%d mismatches", bad);
    free(buf);
}

static void test_extend_composes(void) {
    const char *s = "The quick brown fox jumps over the lazy dog, twice over for good measure.";
    size_t n = strlen(s);
    uint32_t whole = kiln_crc32c(s, n);
    for (size_t cut = 0; cut <= n; cut++) {
        CHECK(kiln_crc32c_extend(kiln_crc32c(s, cut), s + cut, n - cut) == whole);
        CHECK(kiln_crc32c_portable(kiln_crc32c_portable(0, s, cut), s + cut, n - cut) == whole);
    }
}

static void test_mask(void) {
    uint32_t c = kiln_crc32c("foo", 3);
    uint32_t by_hand = ((c >> 15) | (c << 17)) + 0xA282EAD8u;
    CHECK(kiln_crc32c_mask(c) == by_hand);
    CHECK(kiln_crc32c_mask(c) != c);
    CHECK(kiln_crc32c_unmask(kiln_crc32c_mask(c)) == c);
    CHECK(kiln_crc32c_unmask(kiln_crc32c_mask(kiln_crc32c_mask(c))) == kiln_crc32c_mask(c));
    for (uint32_t x = 0; x < 100000; x += 7)
        CHECK(kiln_crc32c_unmask(kiln_crc32c_mask(x * 2654435761u)) == x * 2654435761u);
}

static void test_dispatch(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    int has = __builtin_cpu_supports("sse4.2") != 0;
    CHECK_MSG(kiln_crc32c_hardware() == has, "hardware %d, CPU has SSE4.2: %d",
              kiln_crc32c_hardware(), has);
#else
    CHECK(kiln_crc32c_hardware() == 0);
#endif
}

int main(void) {
    RUN(test_dispatch);
    RUN(test_vectors);
    RUN(test_every_length_and_alignment);
    RUN(test_extend_composes);
    RUN(test_mask);
    return kiln_test_summary();
}
