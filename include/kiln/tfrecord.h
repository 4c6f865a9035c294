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
 *
 * Compression: TensorFlow's TFRecordOptions compress the whole file, not each record: "GZIP" is
 * one gzip stream (RFC 1952; zlib's windowBits 15 + 16) and "ZLIB" one zlib stream (RFC 1950,
 * windowBits 15) around the plain framing above. Readers inflate as they go (offsets in
 * messages are then offsets in the decompressed stream, and say so), check the stream's own
 * checksum at its end (a stream that stops early is "truncated"), and accept concatenated gzip
 * members (what `cat a.gz b.gz` makes). KILN_TFRECORD_AUTO tells the three apart from the first
 * bytes (kiln_tfrecord_detect). Writers (kiln_tfrecord_writer) write a whole file atomically:
 * into a temporary file next to the target, renamed over it only by the commit.
 *
 * Random access: records of a plain file can be read back one at a time by offset
 * (kiln_tfrecord_read_at), which is how a data set indexes shards once and then reads rows in
 * any order. A compressed file has no random access: it must be read from its start.
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

/* ---- compression ---- */

typedef enum {
    KILN_TFRECORD_NONE = 0, /* plain framing */
    KILN_TFRECORD_GZIP,     /* TF's "GZIP": one gzip stream (or concatenated members) */
    KILN_TFRECORD_ZLIB,     /* TF's "ZLIB": one zlib stream */
    KILN_TFRECORD_AUTO,     /* reading only: told from the first bytes */
} kiln_tfrecord_compression;

/* "none", "gzip", "zlib", "auto". */
const char *kiln_tfrecord_compression_name(kiln_tfrecord_compression c);
/* The inverse of kiln_tfrecord_compression_name (also "" for none: TF's spelling); 0 when s is
 * one of them, else -1. */
int kiln_tfrecord_compression_parse(const char *s, kiln_tfrecord_compression *c);
/* What a file's first n bytes show: NONE when they are empty or start with a valid record
 * header (12 bytes whose length checksum matches: a compressed file passes that check with a
 * chance of 2^-32), else GZIP for the gzip magic 1f 8b 08, else ZLIB for a valid zlib header
 * (deflate, a 32 KiB window or less, (CMF * 256 + FLG) % 31 == 0), else NONE (the reader then
 * reports the damaged first record). */
kiln_tfrecord_compression kiln_tfrecord_detect(const void *head, size_t n);

/* Readers of compressed (or plain) files; AUTO reads the first bytes to decide. An empty file
 * (0 bytes) has no records whatever the compression. kiln_tfrecord_open is
 * kiln_tfrecord_open_compressed(path, KILN_TFRECORD_NONE, ...). */
kiln_status kiln_tfrecord_open_compressed(const char *path, kiln_tfrecord_compression c,
                                          size_t max_record, kiln_tfrecord_reader **out);
kiln_status kiln_tfrecord_open_mem_compressed(const void *data, size_t len, const char *name,
                                              kiln_tfrecord_compression c, size_t max_record,
                                              kiln_tfrecord_reader **out);
/* The compression the reader uses (AUTO resolved). */
kiln_tfrecord_compression kiln_tfrecord_reader_compression(const kiln_tfrecord_reader *r);
/* After kiln_tfrecord_next reported a record whose data checksum does not match (its length's
 * checksum did, so the next record's offset is known): clears the error and moves past that
 * record, so that reading goes on; returns 1. Returns 0 (the error stays) for every other error:
 * a damaged length, a truncated file, a corrupt compressed stream, a read error. */
int kiln_tfrecord_skip_damaged(kiln_tfrecord_reader *r);

/* Writes a whole TFRecord file, plain or compressed, atomically: records go to a temporary
 * file in the target's folder (kiln/fileio.h), which the commit renames over path; an abort (or
 * any failure) removes it, so path never holds half a file. GZIP and ZLIB are what
 * TensorFlow writes (deflate at zlib's default level). One thread at a time. */
typedef struct kiln_tfrecord_writer kiln_tfrecord_writer;
kiln_status kiln_tfrecord_writer_open(const char *path, kiln_tfrecord_compression c,
                                      kiln_tfrecord_writer **out);
kiln_status kiln_tfrecord_writer_add(kiln_tfrecord_writer *w, const void *data, size_t len);
/* Bytes given to the file so far (compressed), for progress. */
int64_t kiln_tfrecord_writer_bytes(const kiln_tfrecord_writer *w);
/* Finishes the stream, fsyncs and renames; frees w whatever happens. */
kiln_status kiln_tfrecord_writer_commit(kiln_tfrecord_writer *w);
void kiln_tfrecord_writer_abort(kiln_tfrecord_writer *w); /* NULL is a no-op */

/* ---- random access ---- */

/* Reads the record of len data bytes that starts at byte offset of the plain file open as fd
 * (pread: any number of threads may share fd) into buf [len + KILN_TFRECORD_HEADER +
 * KILN_TFRECORD_FOOTER], checks that its header says len and both checksums, and points *data
 * at its bytes (inside buf). Errors name `name` and the offset: KILN_ERR_FORMAT for a damaged
 * or short record, KILN_ERR_IO for a read error. */
kiln_status kiln_tfrecord_read_at(int fd, int64_t offset, size_t len, void *buf, const char *name,
                                  const void **data);

#endif
