/* kiln/safetensors.h — read and write .safetensors files, the format of Python's safetensors.
 *
 * Layout: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON (padded with spaces), then
 * the data section. The JSON object maps each tensor name to
 *   {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
 * (offsets in bytes from the start of the data section, C order, little-endian values), plus an
 * optional "__metadata__" object of string -> string.
 *
 * Writing matches Python's safetensors byte for byte: compact JSON with "__metadata__" first,
 * tensors ordered by dtype (I64, F32, I32, BF16, U8: widest first, so each tensor's data is
 * aligned to its element size) and then by name (bytewise), data packed in that order without
 * gaps, the header padded with spaces to a multiple of 8 bytes. Metadata keeps the caller's order.
 * The file is written atomically (kiln/fileio.h).
 *
 * Reading validates the whole header before handing out anything, as Python's reader does, and
 * rejects with KILN_ERR_FORMAT and a message naming the file and the tensor or field: a header
 * length beyond the file or over 100 MB, a header that is not UTF-8 or not one JSON object, an
 * unknown dtype, a shape that is not a list of non-negative integers or has more than
 * KILN_MAX_DIMS dims, data_offsets that are not [begin, end] with begin <= end, a byte size that
 * is not numel * element size, tensors that overlap, leave gaps or do not cover the data section
 * exactly, duplicate names or fields, and metadata values that are not strings. No byte sequence
 * makes it read out of bounds.
 *
 * "F16" tensors are accepted and converted to F32 on reading (exactly: every half is a float);
 * their entries say KILN_F32. Other dtypes of the format (F64, I8, BOOL, ...) are refused.
 */
#ifndef KILN_SAFETENSORS_H
#define KILN_SAFETENSORS_H

#include <stddef.h>

#include "kiln/status.h"
#include "kiln/tensor.h"

typedef struct {
    const char *name; /* UTF-8, unique, not "__metadata__" */
    kiln_dtype dtype;
    kiln_shape shape;
    const void *data; /* numel(shape) * kiln_dtype_size(dtype) bytes, C order, little-endian */
} kiln_st_entry;

/* Writes n entries (n >= 0) and n_meta metadata pairs meta_kv[2i] = key, meta_kv[2i + 1] = value
 * (meta_kv may be NULL when n_meta is 0) to path, atomically. data may be NULL only for a tensor
 * with no elements. Fails without touching path on a bad entry (unknown dtype, bad shape,
 * duplicate or non-UTF-8 name) or a bad metadata pair (NULL, duplicate key, not UTF-8). */
kiln_status kiln_safetensors_write(const char *path, const kiln_st_entry *entries, int n,
                                   const char *const *meta_kv, int n_meta);

typedef struct kiln_st_file kiln_st_file;

/* Reads and validates a whole file into memory; *out is NULL on failure. */
kiln_status kiln_safetensors_open(const char *path, kiln_st_file **out);
/* The same from bytes already in memory (copied; bytes may be freed afterwards). label names
 * the source in messages ("upload", a URL...). */
kiln_status kiln_safetensors_parse(const void *bytes, size_t len, const char *label,
                                   kiln_st_file **out);

/* Tensors, in the order of the file's header. Entries, names and data stay valid until
 * kiln_st_close. Every data pointer is non-NULL and aligned to at least its element size
 * (tensors that sit misaligned in the file are copied out). */
int kiln_st_count(const kiln_st_file *f);
const kiln_st_entry *kiln_st_get(const kiln_st_file *f, int i); /* NULL when i is out of range */
const kiln_st_entry *kiln_st_find(const kiln_st_file *f, const char *name); /* NULL if absent */
/* The value of a metadata key, or NULL. */
const char *kiln_st_meta(const kiln_st_file *f, const char *key);
/* Metadata pairs as kiln_safetensors_write takes them: kv[2i] = key, kv[2i + 1] = value. */
int kiln_st_meta_count(const kiln_st_file *f);
const char *const *kiln_st_meta_kv(const kiln_st_file *f);
/* NULL is a no-op. */
void kiln_st_close(kiln_st_file *f);

#endif
