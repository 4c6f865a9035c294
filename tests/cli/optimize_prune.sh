#!/usr/bin/env bash
# kiln optimize --prune S (docs/optimize.md "One-shot pruning"): a trained MLP's export pruned
# one-shot to 80%: the new version is smaller on disk, model.json records the transformation,
# every kernel has exactly round(0.8 n) zeros (counted from the file's bitmasks by a reader
# independent of kiln), the version serves, and pruning combines with int8; bad sparsities are
# usage errors.
. "$(dirname "$0")/lib.sh"

setup() {
    local c=$(small_config opt "log: {tensorboard: false}")
    k train "$c" --set train.max_steps=40 --set train.epochs=1 --runs-dir "$TMP/runs" --quiet
    check "train: exit 0" [ $rc = 0 ]
    RUN=$(ls -d "$TMP"/runs/*/*)
    k export "$RUN" --to "$TMP/exp"
    check "export: exit 0" [ $rc = 0 ]
}

# Counts zeros per kernel from <W>.sparse_bitmask (one bit per value, least significant first).
count_zeros() { # version-folder sparsity
    /usr/bin/python3 - "$1" "$2" <<'PY'
import json, struct, sys
d, s = sys.argv[1], float(sys.argv[2])
blob = open(d + "/weights.safetensors", "rb").read()
n = struct.unpack("<Q", blob[:8])[0]
head = json.loads(blob[8:8 + n])
sparse = json.load(open(d + "/model.json"))["sparse"]["tensors"]
assert sparse, "no sparse tensors"
for t in sparse:
    size = 1
    for x in t["shape"]:
        size *= x
    e = head[t["name"] + ".sparse_bitmask"]
    bits = blob[8 + n + e["data_offsets"][0]: 8 + n + e["data_offsets"][1]]
    ones = sum(bin(b).count("1") for b in bits)
    want = size - int(round(s * size))
    assert ones == t["nonzeros"], (t["name"], ones, t["nonzeros"])
    assert ones <= want, (t["name"], "kept", ones, "of", size, "want at most", want)
    assert ones >= want - 2, (t["name"], "kept", ones, "want", want)  # kept values may be 0.0
    vals = head[t["name"] + ".sparse_values"]
    assert vals["shape"] == [ones], (t["name"], vals["shape"])
print("ok")
PY
}

t_prune_one_shot() {
    k optimize "$TMP/exp/1" --prune 0.8 --to "$TMP/pruned"
    check "exit 0" [ $rc = 0 ]
    check "says how many" grep -Eq "prune: [0-9]+ of [0-9]+ kernel values set to zero \(0\.8000\)" "$TMP/out"
    local v="$TMP/pruned/1"
    check "smaller on disk" [ "$(stat -c %s "$v/weights.safetensors")" -lt \
        "$(( $(stat -c %s "$TMP/exp/1/weights.safetensors") / 3 ))" ]
    check "model.json records it" grep -q '"prune"' "$v/model.json"
    check "round(0.8 n) zeros in every kernel" count_zeros "$v" 0.8
    /usr/bin/python3 -c 'import json; print(json.dumps({"instances": [[0.5] * 784]}))' >"$TMP/req.json"
    k predict --model_dir "$v" --input "$TMP/req.json"
    check "predict on the pruned version: exit 0" [ $rc = 0 ]
}

t_prune_then_int8() {
    k optimize "$TMP/exp/1" --prune 0.5 --quantize int8 --calibrate 2 --to "$TMP/both"
    check "exit 0" [ $rc = 0 ]
    check "pruned" grep -q '"prune"' "$TMP/both/1/model.json"
    check "quantized" grep -q '"quantization"' "$TMP/both/1/model.json"
    check "zeros" count_zeros "$TMP/both/1" 0.5
}

t_bad_sparsity() {
    for s in 1.5 -0.1 1 0 x; do
        k optimize "$TMP/exp/1" --prune "$s" --to "$TMP/bad"
        check "--prune $s: exit 2" [ $rc = 2 ]
        check "--prune $s: says why" has "--prune $s: expected a sparsity between 0 and 1"
    done
    check "no version written" [ ! -e "$TMP/bad/1" ]
}

setup
run_test t_prune_one_shot
run_test t_prune_then_int8
run_test t_bad_sparsity
finish
