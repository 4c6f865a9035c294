#!/usr/bin/env bash
# train.prune end to end on a small CNN over generated NPY data (docs/optimize.md "Pruning"):
# exactly round(0.8 n) zeros in every kernel at end_epoch (and after it), none before
# start_epoch, masks that only shrink, optimizer slots and EMA weights zero where the weights
# are; --resume from checkpoints inside the schedule and after kill -9 ending bit for bit where
# the uninterrupted run ends; a stage that turns pruning on; the export stores the pruned
# kernels compactly (documented bitmask format, read back here with numpy), is smaller than the
# same weights stored dense, predicts the same outputs and initializes a model (init_from);
# config errors with file:line.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3

run_dir() { ls -d "$1"/*/* | head -1; }

# The safetensors reader of these tests: st_load(path) -> {name: array}.
cat >"$TMP/st.py" <<'PYEOF'
import json, struct
import numpy as np
def st_load(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == '__metadata__':
            continue
        s, e = v['data_offsets']
        dt = {'F32': np.float32, 'U8': np.uint8}[v['dtype']]
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype=dt).reshape(v['shape'])
    return out
PYEOF

setup() {
    $PY -c "
import numpy as np
r = np.random.default_rng(0)
y = r.integers(0, 3, size=200).astype(np.int64)
x = r.normal(size=(200, 1, 8, 8)).astype(np.float32)
x[:, 0] += y[:, None, None] * 0.5
np.save('$TMP/x.npy', x); np.save('$TMP/y.npy', y)"
    cat >"$TMP/cnn.yaml" <<YAML
experiment: prune
seed: 3
data:
  source: npy
  train: {x: $TMP/x.npy, y: $TMP/y.npy}
  validation_split: 0.2
  batch_size: 32
model:
  input: [1, 8, 8]
  layers:
    - conv2d: {name: conv1, filters: 8, kernel: 3, padding: same, activation: relu}
    - conv2d: {name: conv2, filters: 8, kernel: 3, padding: same, activation: relu}
    - global_avgpool2d: {name: pool}
    - dense: {name: head, units: 3}
loss: softmax_cross_entropy
metrics: [accuracy]
optimizer: {adam: {learning_rate: 0.01}}
train:
  epochs: 4
  ema_decay: 0.9
  checkpoint: {every_steps: 1, keep: 1000}
  prune: {sparsity: 0.8, start_epoch: 1, end_epoch: 3, frequency: 2}
log: {tensorboard: false, every_steps: 2}
YAML
}

# zeros.py RUN STEP...: per step "step kernel zeros size" lines, and checks of the slots
zeros() {
    $PY - "$@" <<'PYEOF'
import sys
sys.path.insert(0, sys.argv[1])
from st import st_load
run = sys.argv[2]
for step in sys.argv[3:]:
    w = st_load(f'{run}/checkpoints/step-{step}/weights.safetensors')
    for k in sorted(w):
        if k.endswith('.kernel'):
            z = w[k] == 0
            same = all(((w[s] == 0) | ~z).all() for s in (k + '.ema', k + '.adam_m', k + '.adam_v'))
            print(step, k, int(z.sum()), w[k].size, 'slots-zero' if same else 'slots-NOT-zero')
        elif k.endswith('.bias'):
            print(step, k, int((w[k] == 0).sum()), w[k].size, '-')
PYEOF
}

t_sparsity() {
    k train "$TMP/cnn.yaml" --runs-dir "$TMP/ra" --quiet
    check "exit 0" [ $rc = 0 ]
    local d=$(run_dir "$TMP/ra")
    zeros "$TMP" "$d" 4 5 7 9 15 20 >"$TMP/z"
    # 5 batches an epoch: pruning from step 5 (start_epoch 1) to 15 (end_epoch 3)
    check "no zeros before start_epoch" [ "$(awk '$1 <= 5 && $2 ~ /kernel/ && $3 != 0' "$TMP/z" | wc -l)" = 0 ]
    check "pruning under way at step 7" [ "$(awk '$1 == 7 && $2 ~ /kernel/ && $3 > 0' "$TMP/z" | wc -l)" = 3 ]
    check "exactly round(0.8 n) zeros at end_epoch" grep -q '^15 conv1.kernel 58 72 slots-zero$' "$TMP/z"
    check "conv2 at end_epoch" grep -q '^15 conv2.kernel 461 576 slots-zero$' "$TMP/z"
    check "head at end_epoch" grep -q '^15 head.kernel 19 24 slots-zero$' "$TMP/z"
    check "held after end_epoch" grep -q '^20 conv2.kernel 461 576 slots-zero$' "$TMP/z"
    check "held: head" grep -q '^20 head.kernel 19 24 slots-zero$' "$TMP/z"
    check "biases are not pruned" [ "$(awk '$1 == 20 && $2 ~ /bias/ && $3 != 0' "$TMP/z" | wc -l)" = 0 ]
    check "slots and EMA zero where the weights are" [ "$(grep -c 'slots-NOT-zero' "$TMP/z")" = 0 ]
    $PY - "$TMP" "$d" >"$TMP/mono" <<'PYEOF'
import sys
sys.path.insert(0, sys.argv[1])
from st import st_load
run = sys.argv[2]
prev = None
ok = True
for step in range(5, 21):
    m = st_load(f'{run}/checkpoints/step-{step}/prune.safetensors')
    if prev:
        ok &= all((m[k] <= prev[k]).all() for k in m)  # kept only shrinks
    w = st_load(f'{run}/checkpoints/step-{step}/weights.safetensors')
    ok &= all(((w[k] == 0) == (m[k] == 0)).all() for k in m)
    prev = m
print('monotone' if ok else 'NOT monotone')
PYEOF
    check "masks only shrink and match the zeros" grep -q '^monotone$' "$TMP/mono"
    check "prune_sparsity logged" grep -q '"step":15,.*"name":"prune_sparsity","value":0.8}' "$d/metrics.jsonl"
    cp -r "$d" "$TMP/uninterrupted"
}

# Resumes a copy of the uninterrupted run as if it had been killed right after checkpoint $1.
resume_from() {
    local src=$TMP/uninterrupted dst=$TMP/cut-$1/prune/run
    mkdir -p "$TMP/cut-$1/prune" && cp -r "$src" "$dst"
    for s in $(ls "$dst/checkpoints" | sed -n 's/^step-//p'); do [ "$s" -gt "$1" ] && rm -rf "$dst/checkpoints/step-$s"; done
    printf 'step-%s' "$1" >"$dst/checkpoints/latest"
    "$KILN" train --resume "$dst" --quiet >"$TMP/out" 2>&1
    rc=$?
    check "resume from step $1: exit 0" [ $rc = 0 ]
    check "resume from step $1: final weights bitwise equal" cmp -s "$src/checkpoints/step-20/weights.safetensors" "$dst/checkpoints/step-20/weights.safetensors"
    check "resume from step $1: final masks equal" cmp -s "$src/checkpoints/step-20/prune.safetensors" "$dst/checkpoints/step-20/prune.safetensors"
}

t_resume_points() {
    resume_from 3   # before pruning starts
    resume_from 7   # right after a mask update
    resume_from 8   # between updates
    resume_from 15  # at end_epoch
}

t_kill9() {
    local long="train.epochs=60" more="train.prune.end_epoch=50" # steps 5 to 250 prune
    "$KILN" train "$TMP/cnn.yaml" --runs-dir "$TMP/rk" --quiet --set "$long" --set "$more" >/dev/null 2>&1 &
    local pid=$! i d
    for i in $(seq 1 3000); do
        d=$(ls -d "$TMP"/rk/*/* 2>/dev/null | head -1)
        [ -n "$d" ] && [ -f "$d/checkpoints/latest" ] && [ "$(sed -n 's/^step-//p' "$d/checkpoints/latest")" -ge 60 ] 2>/dev/null && break
        sleep 0.01
    done
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    d=$(run_dir "$TMP/rk")
    local at=$(sed -n 's/^step-//p' "$d/checkpoints/latest")
    check "killed while pruning (latest step $at)" [ "$at" -gt 5 -a "$at" -lt 250 ]
    "$KILN" train --resume "$d" --quiet >"$TMP/out" 2>&1
    check "resume after kill -9: exit 0" [ $? = 0 ]
    "$KILN" train "$TMP/cnn.yaml" --runs-dir "$TMP/rk2" --quiet --set "$long" --set "$more" >/dev/null 2>&1
    local d2=$(run_dir "$TMP/rk2")
    check "after kill -9: final weights bitwise equal" cmp -s "$d/checkpoints/step-300/weights.safetensors" "$d2/checkpoints/step-300/weights.safetensors"
}

t_stage_turns_pruning_on() {
    sed -e '/^  prune:/d' "$TMP/cnn.yaml" >"$TMP/staged.yaml"
    printf 'stages:\n  - {train: {epochs: 2}}\n  - train: {epochs: 2, prune: {sparsity: 0.5, start_epoch: 2, end_epoch: 3, frequency: 1}}\n' >>"$TMP/staged.yaml"
    k train "$TMP/staged.yaml" --runs-dir "$TMP/rs" --quiet
    check "exit 0" [ $rc = 0 ]
    local d=$(run_dir "$TMP/rs")
    zeros "$TMP" "$d" 10 15 20 >"$TMP/z"
    check "stage 1 does not prune" [ "$(awk '$1 == 10 && $2 ~ /kernel/ && $3 != 0' "$TMP/z" | wc -l)" = 0 ]
    check "stage 2 reaches 0.5 at its end_epoch" grep -q '^15 conv2.kernel 288 576 slots-zero$' "$TMP/z"
    check "and holds it" grep -q '^20 conv1.kernel 36 72 slots-zero$' "$TMP/z"
    check "no masks in stage 1's checkpoints" [ ! -f "$d/checkpoints/step-9/prune.safetensors" ]
    cp -r "$d" "$TMP/staged-run"
    local dst=$TMP/staged-cut/prune/run
    mkdir -p "$TMP/staged-cut/prune" && cp -r "$d" "$dst"
    for s in $(ls "$dst/checkpoints" | sed -n 's/^step-//p'); do [ "$s" -gt 12 ] && rm -rf "$dst/checkpoints/step-$s"; done
    printf 'step-12' >"$dst/checkpoints/latest"
    "$KILN" train --resume "$dst" --quiet >"$TMP/out" 2>&1
    check "resume inside the pruning stage: exit 0" [ $? = 0 ]
    check "bitwise equal" cmp -s "$d/checkpoints/step-20/weights.safetensors" "$dst/checkpoints/step-20/weights.safetensors"
}

t_export_sparse() {
    local d=$TMP/uninterrupted
    k export "$d" --to "$TMP/exp"
    check "export: exit 0" [ $rc = 0 ]
    check "model.json lists the sparse tensors" grep -q '"format": "bitmask"' "$TMP/exp/1/model.json"
    # The same weights dense, made from the documented format with numpy: version 2.
    $PY - "$TMP" "$TMP/exp" <<'PYEOF'
import json, os, shutil, struct, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from st import st_load
base = sys.argv[2]
src, dst = f'{base}/1', f'{base}/2'
os.makedirs(dst)
m = json.load(open(f'{src}/model.json'))
w = st_load(f'{src}/weights.safetensors')
dense = {k: v for k, v in w.items() if not k.endswith(('.sparse_bitmask', '.sparse_values'))}
for t in m['sparse']['tensors']:
    n = int(np.prod(t['shape']))
    mask = np.unpackbits(w[t['name'] + '.sparse_bitmask'], bitorder='little')[:n].astype(bool)
    v = np.zeros(n, np.float32)
    v[mask] = w[t['name'] + '.sparse_values']
    assert mask.sum() == t['nonzeros']
    dense[t['name']] = v.reshape(t['shape'])
del m['sparse']
m['version'] = 2
json.dump(m, open(f'{dst}/model.json', 'w'))
hdr, off, blobs = {'__metadata__': {'kiln.format': '1'}}, 0, []
for k in sorted(dense):
    b = dense[k].astype('<f4').tobytes()
    hdr[k] = {'dtype': 'F32', 'shape': list(dense[k].shape), 'data_offsets': [off, off + len(b)]}
    off += len(b)
    blobs.append(b)
h = json.dumps(hdr).encode()
h += b' ' * ((8 - len(h) % 8) % 8)
open(f'{dst}/weights.safetensors', 'wb').write(struct.pack('<Q', len(h)) + h + b''.join(blobs))
x = np.random.default_rng(1).normal(size=(4, 1, 8, 8)).astype(np.float32)
json.dump({'instances': x.tolist()}, open(f'{sys.argv[1]}/req.json', 'w'))
PYEOF
    local s1=$(stat -c %s "$TMP/exp/1/weights.safetensors") s2=$(stat -c %s "$TMP/exp/2/weights.safetensors")
    check "sparse weights smaller ($s1 < $s2 bytes)" [ "$s1" -lt "$s2" ]
    "$KILN" predict --model_dir "$TMP/exp/1" --input "$TMP/req.json" >"$TMP/p1" 2>&1
    check "the sparse version predicts" [ $? = 0 ]
    "$KILN" predict --model_dir "$TMP/exp/2" --input "$TMP/req.json" >"$TMP/p2" 2>&1
    check "the dense version predicts" [ $? = 0 ]
    check "same outputs" cmp -s "$TMP/p1" "$TMP/p2"
    check "outputs are there" [ -s "$TMP/p1" ]
    k train "$TMP/cnn.yaml" --runs-dir "$TMP/rif" --quiet --set train.prune=null \
        --set train.max_steps=1 --set "model.init_from={path: $TMP/exp/1, strict: true}"
    check "init_from a sparse export: exit 0" [ $rc = 0 ]
    check "every parameter loaded" has "loaded 6 of 6 parameters"
}

t_errors() {
    # --set values have no file position: put the bad ones in the file itself
    sed 's/start_epoch: 1, end_epoch: 3/start_epoch: 3, end_epoch: 2/' "$TMP/cnn.yaml" >"$TMP/bad1.yaml"
    k train "$TMP/bad1.yaml" --runs-dir "$TMP/rb1" --quiet
    check "end before start: exit 2" [ $rc = 2 ]
    check "end before start: file:line" grep -Eq 'bad1.yaml:[0-9]+:[0-9]+: train.prune.end_epoch: 2 is before start_epoch 3' "$TMP/out"
    sed 's/sparsity: 0.8/sparsity: 1.5/' "$TMP/cnn.yaml" >"$TMP/bad2.yaml"
    k train "$TMP/bad2.yaml" --runs-dir "$TMP/rb2" --quiet
    check "sparsity 1.5: exit 2" [ $rc = 2 ]
    check "sparsity 1.5: file:line" grep -Eq 'bad2.yaml:[0-9]+:[0-9]+: train.prune.sparsity: 1.5 is out of range' "$TMP/out"
    sed 's/sparsity: 0.8/sparsity: -0.2/' "$TMP/cnn.yaml" >"$TMP/bad5.yaml"
    k train "$TMP/bad5.yaml" --runs-dir "$TMP/rb5" --quiet
    check "negative sparsity: exit 2" [ $rc = 2 ]
    check "negative sparsity: file:line" grep -Eq 'bad5.yaml:[0-9]+:[0-9]+: train.prune.sparsity: -0.2 is out of range' "$TMP/out"
    sed 's/frequency: 2}/frequency: 2, params: [conv1, heda]}/' "$TMP/cnn.yaml" >"$TMP/bad3.yaml"
    k train "$TMP/bad3.yaml" --runs-dir "$TMP/rb3" --quiet
    check "glob matching nothing: exit 2" [ $rc = 2 ]
    check "names the glob" grep -Eq "bad3.yaml:[0-9]+:[0-9]+: train.prune.params\[1\]: 'heda' matches no kernel" "$TMP/out"
    sed 's/end_epoch: 3/end_epoch: 9/' "$TMP/cnn.yaml" >"$TMP/bad4.yaml"
    k train "$TMP/bad4.yaml" --runs-dir "$TMP/rb4" --quiet
    check "end_epoch past the run: exit 2" [ $rc = 2 ]
    check "says so" grep -Eq "bad4.yaml:[0-9]+:[0-9]+: train.prune.end_epoch: 9 is after the run's last epoch" "$TMP/out"
}

setup
cd "$TMP"
run_test t_sparsity
run_test t_resume_points
run_test t_kill9
run_test t_stage_turns_pruning_on
run_test t_export_sparse
run_test t_errors
finish
