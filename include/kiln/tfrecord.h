/* kiln/tfrecord.h — TFRecord framing: the record format of TensorFlow's .tfrecord data files and
 * of TensorBoard's events.out.tfevents.* files.
 *
 * A file is a sequence of records, each
 *
 *   uint64  length                       little-endian
 *   uint32  masked_crc32c(length)        the 8 length bytes (kiln/crc32c.h for the mask)
 *   byte    data[length]
 *   uint32  masked_crc32c(data)
 *
 * with nothing before, between or after them. The length has its own checksum so that a reader
 * never trusts a damaged length to allocate or skip.
 *
 * Writing: kiln_tfrecord_write frames one record and hands it to the kernel in one writev(), so
 * on a file opened with O_APPEND concurrent readers see whole records, plus at most a partial
 * last one that is still being written; a record written before a crash of the process survives.
 * kiln_tfrecord_frame gives the 12-byte header and 4-byte footer for callers that write
 * elsewhere (memory, a compressed stream).
 *
 * Reading: a reader walks a file (or a memory buffer) record by record and checks both
 * checksums. Nothing it is given can make it crash or read out of bounds: a damaged record is
 * reported with the file name, the byte offset where the record starts and what was wrong, and
 * the reader stops there (every later call returns the same error). A file that simply ends
 * inside a record is "truncated" (kiln_tfrecord_truncated): a writer may still be appending, so
 * a reader that follows a live file can retry from kiln_tfrecord_offset later. A record longer
 * than max_record bytes (1 GiB when 0 is given) is refused without allocating it.
 */
#ifndef KILN_TFRECORD_H
#define KILN_TFRECORD_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

#define KILN_TFRECORD_HEADER 12
#define KILN_TFRECORD_FOOTER 4

/* The framing of len bytes of data: header (length, masked CRC of the length) and footer
 * (masked CRC of the data). */
void kiln_tfrecord_frame(const void *data, size_t len, unsigned char header[KILN_TFRECORD_HEADER],
                         unsigned char footer[KILN_TFRECORD_FOOTER]);

/* Appends one record to fd with a single writev (a short write is retried for the rest).
 * what names the file in messages. */
kiln_status kiln_tfrecord_write(int fd, const void *data, size_t len, const char *what);

typedef struct kiln_tfrecord_reader kiln_tfrecord_reader;

/* A reader of the file at path, from its start. */
kiln_status kiln_tfrecord_open(const char *path, size_t max_record, kiln_tfrecord_reader **out);
/* A reader of len bytes at data (not copied: keep them alive); name is used in messages. */
kiln_status kiln_tfrecord_open_mem(const void *data, size_t len, const char *name,
                                   size_t max_record, kiln_tfrecord_reader **out);
/* The next record: KILN_OK with *data / *len set (valid until the next call or close);
 * KILN_ERR_NOTFOUND at the end (the previous record ended exactly at the end of the input);
 * KILN_ERR_FORMAT for a damaged or truncated record ("<name>: offset <n>: ..."); KILN_ERR_IO
 * when the file cannot be read. */
kiln_status kiln_tfrecord_next(kiln_tfrecord_reader *r, const void **data, size_t *len);
/* Byte offset of the next record to read (after an error: of the record that failed). */
int64_t kiln_tfrecord_offset(const kiln_tfrecord_reader *r);
/* 1 when the last error was the input ending inside a record (every byte present was valid). */
int kiln_tfrecord_truncated(const kiln_tfrecord_reader *r);
void kiln_tfrecord_close(kiln_tfrecord_reader *r); /* NULL is a no-op */

#endif
