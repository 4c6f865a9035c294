#!/usr/bin/python3
"""tfrecord_ref.py -- an independent TFRecord / tf.train.Example reader and writer for the tests.

Nothing here comes from kiln: the framing (little-endian length, masked CRC-32C of the length and
of the data), the CRC-32C itself (bitwise, Castagnoli polynomial 0x82F63B78 reflected), the
protobuf wire format of tensorflow.Example (tensorflow/core/example/{example,feature}.proto:
Example.features = 1; Features.feature = 1, a map<string, Feature> whose entries are key = 1,
value = 2; Feature oneof bytes_list = 1, float_list = 2, int64_list = 3; each list's value = 1,
floats and ints packed or not), GZIP / ZLIB files, PNG (8-bit grayscale, all five filters) and
IDX are written from their specifications with the Python standard library only.

Usage: tfrecord_ref.py COMMAND ARGS... (see the functions named cmd_*); prints "ok ..." and
exits 0 when a check holds, prints what differs and exits 1 when it does not.
"""
import csv
import glob
import gzip
import os
import struct
import sys
import zlib

# ---- CRC-32C and framing ----

_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(data):
    head = struct.pack("<Q", len(data))
    return head + struct.pack("<I", masked(head)) + data + struct.pack("<I", masked(data))


def open_raw(path):
    raw = open(path, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        return gzip.decompress(raw), "gzip"
    if len(raw) >= 12 and struct.unpack("<I", raw[8:12])[0] == masked(raw[:8]):
        return raw, "none"
    if raw and (raw[0] & 0x0F) == 8 and ((raw[0] << 8) | raw[1]) % 31 == 0:
        return zlib.decompress(raw), "zlib"
    return raw, "none"


def records(path):
    """(offset, data) of every record; raises ValueError at a damaged one."""
    data, _ = open_raw(path)
    pos = 0
    while pos < len(data):
        if pos + 12 > len(data):
            raise ValueError("%s: truncated header at %d" % (path, pos))
        (n,) = struct.unpack("<Q", data[pos:pos + 8])
        if struct.unpack("<I", data[pos + 8:pos + 12])[0] != masked(data[pos:pos + 8]):
            raise ValueError("%s: bad length checksum at %d" % (path, pos))
        body = data[pos + 12:pos + 12 + n]
        foot = data[pos + 12 + n:pos + 16 + n]
        if len(foot) != 4 or struct.unpack("<I", foot)[0] != masked(body):
            raise ValueError("%s: bad data checksum at %d" % (path, pos))
        yield pos, body
        pos += 16 + n


def write_file(path, blobs, compression):
    out = b"".join(frame(b) for b in blobs)
    if compression == "gzip":
        out = gzip.compress(out)
    elif compression == "zlib":
        out = zlib.compress(out)
    with open(path, "wb") as f:
        f.write(out)


# ---- protobuf wire format ----

def varint(buf, pos):
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def fields(buf):
    """(field number, wire type, value) of a message: ints for varints, bytes otherwise."""
    pos = 0
    while pos < len(buf):
        key, pos = varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, pos = varint(buf, pos)
        elif wt == 1:
            v, pos = buf[pos:pos + 8], pos + 8
        elif wt == 2:
            n, pos = varint(buf, pos)
            v, pos = buf[pos:pos + n], pos + n
        elif wt == 5:
            v, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError("wire type %d" % wt)
        yield num, wt, v


def signed64(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def parse_example(buf):
    """{key: (kind, [values])} with kind 'bytes', 'float' or 'int64'."""
    out = {}
    for num, _, feats in fields(buf):
        if num != 1:
            continue
        for fnum, _, entry in fields(feats):
            if fnum != 1:
                continue
            key, value = "", b""
            for enum, _, v in fields(entry):
                if enum == 1:
                    key = v.decode()
                elif enum == 2:
                    value = v
            kind, vals = None, []
            for knum, _, lst in fields(value):
                kind = {1: "bytes", 2: "float", 3: "int64"}.get(knum)
                vals = []
                for vnum, wt, v in fields(lst):
                    if vnum != 1:
                        continue
                    if kind == "bytes":
                        vals.append(bytes(v))
                    elif kind == "float":
                        if wt == 2:
                            vals += list(struct.unpack("<%df" % (len(v) // 4), v))
                        else:
                            vals.append(struct.unpack("<f", v)[0])
                    else:
                        if wt == 2:
                            p = 0
                            while p < len(v):
                                x, p = varint(v, p)
                                vals.append(signed64(x))
                        else:
                            vals.append(signed64(v))
            out[key] = (kind, vals)
    return out


def enc_varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def enc_field(num, wt, payload):
    if wt == 2:
        return enc_varint(num << 3 | 2) + enc_varint(len(payload)) + payload
    return enc_varint(num << 3 | wt) + payload


def enc_example(feats, unpacked=False):
    """feats: [(key, kind, values)] in the order to write them (not sorted: kiln must not care)."""
    entries = b""
    for key, kind, vals in feats:
        if kind == "bytes":
            lst = b"".join(enc_field(1, 2, v) for v in vals)
            feat = enc_field(1, 2, lst)
        elif kind == "float":
            if unpacked:
                lst = b"".join(enc_field(1, 5, struct.pack("<f", v)) for v in vals)
            else:
                lst = enc_field(1, 2, struct.pack("<%df" % len(vals), *vals))
            feat = enc_field(2, 2, lst)
        else:
            if unpacked:
                lst = b"".join(enc_field(1, 0, enc_varint(v)) for v in vals)
            else:
                lst = enc_field(1, 2, b"".join(enc_varint(v) for v in vals))
            feat = enc_field(3, 2, lst)
        entry = enc_field(1, 2, key.encode()) + enc_field(2, 2, feat)
        entries += enc_field(1, 2, entry)
    return enc_field(1, 2, entries)


# ---- PNG (8-bit grayscale) and IDX ----

def png_decode(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if zlib.crc32(kind + body) != struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]:
            raise ValueError("PNG chunk CRC")
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype == 0, "only 8-bit grayscale"
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    rows, prev, p = [], bytearray(w), 0
    for _ in range(h):
        ft, line = raw[p], bytearray(raw[p + 1:p + 1 + w])
        p += 1 + w
        for i in range(w):
            a = line[i - 1] if i else 0
            b, c = prev[i], prev[i - 1] if i else 0
            if ft == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ft == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ft == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ft == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                pr = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pr) & 0xFF
        rows.append(bytes(line))
        prev = line
    return w, h, b"".join(rows)


def png_encode(w, h, pixels):
    raw = b"".join(b"\x00" + pixels[y * w:(y + 1) * w] for y in range(h))

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body +
                struct.pack(">I", zlib.crc32(kind + body)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def read_idx(path):
    data = gzip.open(path).read() if open(path, "rb").read(2) == b"\x1f\x8b" else open(path, "rb").read()
    magic = struct.unpack(">I", data[:4])[0]
    nd = magic & 0xFF
    dims = struct.unpack(">%dI" % nd, data[4:4 + 4 * nd])
    return dims, data[4 + 4 * nd:]


def shards(pattern):
    files = sorted(glob.glob(pattern))
    if not files:
        raise SystemExit("no files match " + pattern)
    return files


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


# ---- commands ----

def cmd_idx_subset(images, labels, n, out_images, out_labels):
    """Writes the first n images and labels as gzip IDX files."""
    n = int(n)
    (_, r, c), px = read_idx(images)
    _, lb = read_idx(labels)
    with gzip.open(out_images, "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, r, c) + px[:n * r * c])
    with gzip.open(out_labels, "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + lb[:n])
    print("ok %d" % n)


def cmd_check_idx(pattern, images, labels, names=""):
    """Shards made by kiln data convert --no-shuffle of IDX files: record i is row i."""
    (n, r, c), px = read_idx(images)
    _, lb = read_idx(labels)
    names = names.split(",") if names else []
    i = 0
    for path in shards(pattern):
        for _, rec in records(path):
            ex = parse_example(rec)
            keys = {"image/encoded", "image/format", "image/height", "image/width",
                    "image/class/label"} | ({"image/class/text"} if names else set())
            if set(ex) != keys:
                fail("record %d: keys %s" % (i, sorted(ex)))
            w, h, pix = png_decode(ex["image/encoded"][1][0])
            if (w, h) != (c, r) or pix != px[i * r * c:(i + 1) * r * c]:
                fail("record %d: the PNG is not IDX image %d" % (i, i))
            if ex["image/format"] != ("bytes", [b"png"]):
                fail("record %d: format %s" % (i, ex["image/format"]))
            if ex["image/height"] != ("int64", [r]) or ex["image/width"] != ("int64", [c]):
                fail("record %d: height/width" % i)
            if ex["image/class/label"] != ("int64", [lb[i]]):
                fail("record %d: label %s, IDX %d" % (i, ex["image/class/label"], lb[i]))
            if names and ex["image/class/text"] != ("bytes", [names[lb[i]].encode()]):
                fail("record %d: text %s" % (i, ex["image/class/text"]))
            i += 1
    if i != n:
        fail("%d records, IDX has %d" % (i, n))
    print("ok %d records" % i)


def cmd_check_folder(pattern, root):
    """Shards of an image folder (any order): every file once, its bytes, label and name."""
    classes = sorted(d for d in os.listdir(root)
                     if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    files = {}
    for k, cls in enumerate(classes):
        for dp, _, fs in os.walk(os.path.join(root, cls)):
            for f in fs:
                if f.lower().endswith((".jpg", ".jpeg", ".png", ".bmp", ".gif")):
                    p = os.path.join(dp, f)
                    files[os.path.relpath(p, root)] = (open(p, "rb").read(), k, cls)
    seen = set()
    for path in shards(pattern):
        for off, rec in records(path):
            ex = parse_example(rec)
            name = ex["image/filename"][1][0].decode()
            if name not in files or name in seen:
                fail("%s: unexpected or repeated %s" % (path, name))
            seen.add(name)
            data, k, cls = files[name]
            if ex["image/encoded"][1][0] != data:
                fail("%s: bytes differ" % name)
            if ex["image/class/label"] != ("int64", [k]):
                fail("%s: label %s, want %d" % (name, ex["image/class/label"], k))
            if ex["image/class/text"] != ("bytes", [cls.encode()]):
                fail("%s: text %s" % (name, ex["image/class/text"]))
            fmt = ex["image/format"][1][0]
            if fmt != (b"jpeg" if data[:2] == b"\xff\xd8" else b"png"):
                fail("%s: format %s" % (name, fmt))
            if ex["image/height"][0] != "int64" or ex["image/width"][1][0] <= 0:
                fail("%s: height/width" % name)
    if seen != set(files):
        fail("%d of %d files in the shards" % (len(seen), len(files)))
    print("ok %d images" % len(seen))


def cmd_check_csv(pattern, path, label_col):
    """Shards of a CSV table (--no-shuffle): x = the other columns, label = sorted names."""
    rows = list(csv.DictReader(open(path)))
    names = sorted({r[label_col] for r in rows})
    cols = [c for c in rows[0] if c != label_col]
    i = 0
    for p in shards(pattern):
        for _, rec in records(p):
            ex = parse_example(rec)
            want = [struct.unpack("<f", struct.pack("<f", float(rows[i][c])))[0] for c in cols]
            if ex["x"] != ("float", want):
                fail("row %d: x %s, want %s" % (i, ex["x"], want))
            k = names.index(rows[i][label_col])
            if ex["label"] != ("int64", [k]):
                fail("row %d: label %s want %d" % (i, ex["label"], k))
            if ex["label/text"] != ("bytes", [rows[i][label_col].encode()]):
                fail("row %d: label/text %s" % (i, ex["label/text"]))
            i += 1
    if i != len(rows):
        fail("%d records for %d rows" % (i, len(rows)))
    print("ok %d rows" % i)


def cmd_write_images(images, labels, out_prefix, nshards, compression, names=""):
    """IDX images as PNG tf.Example shards OUT_PREFIX-0000k (keys in reverse order; every other
    shard's numbers unpacked)."""
    (n, r, c), px = read_idx(images)
    _, lb = read_idx(labels)
    names = names.split(",") if names else []
    nshards = int(nshards)
    for s in range(nshards):
        blobs = []
        for i in range(n * s // nshards, n * (s + 1) // nshards):
            feats = [("image/class/label", "int64", [lb[i]]),
                     ("image/encoded", "bytes", [png_encode(c, r, px[i * r * c:(i + 1) * r * c])]),
                     ("image/format", "bytes", [b"png"])]
            if names:
                feats.append(("image/class/text", "bytes", [names[lb[i]].encode()]))
            blobs.append(enc_example(list(reversed(feats)), unpacked=s % 2 == 1))
        comp = compression if compression != "mixed" else ["none", "gzip", "zlib"][s % 3]
        write_file("%s-%05d" % (out_prefix, s), blobs, comp)
    print("ok %d records" % n)


def cmd_write_table(path, label_col, out, compression="none"):
    """A CSV table as records: x (float list) and label (int64, sorted names), label/text."""
    rows = list(csv.DictReader(open(path)))
    names = sorted({r[label_col] for r in rows})
    cols = [c for c in rows[0] if c != label_col]
    blobs = [enc_example([("x", "float", [float(r[c]) for c in cols]),
                          ("label", "int64", [names.index(r[label_col])]),
                          ("label/text", "bytes", [r[label_col].encode()])]) for r in rows]
    write_file(out, blobs, compression)
    print("ok %d rows" % len(rows))


def cmd_record_offset(path, k):
    """The byte offset of record k of a plain file."""
    for i, (off, _) in enumerate(records(path)):
        if i == int(k):
            print(off)
            return
    fail("no record %s" % k)


def cmd_damage(path, k):
    """Flips a bit in the data of record k of a plain file; prints the record's offset."""
    data = bytearray(open(path, "rb").read())
    for i, (off, rec) in enumerate(records(path)):
        if i == int(k):
            data[off + 12 + len(rec) // 2] ^= 0x10
            open(path, "wb").write(bytes(data))
            print(off)
            return
    fail("no record %s" % k)


def cmd_rewrite(path, k, action, key=""):
    """Rewrites record k of a plain file: drop KEY, or make KEY's list another kind."""
    blobs = [rec for _, rec in records(path)]
    ex = parse_example(blobs[int(k)])
    if action == "drop":
        del ex[key]
    elif action == "retype":
        kind, vals = ex[key]
        ex[key] = ("float", [float(v) for v in vals]) if kind == "int64" else \
                  ("int64", [int(v) for v in vals])
    blobs[int(k)] = enc_example([(kk, kind, v) for kk, (kind, v) in ex.items()])
    write_file(path, blobs, "none")
    print("ok")


def cmd_count(pattern):
    n = sum(1 for p in shards(pattern) for _ in records(p))
    print(n)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    globals()["cmd_" + sys.argv[1].replace("-", "_")](*sys.argv[2:])
