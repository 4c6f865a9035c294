#!/usr/bin/env bash
# train.distill end to end on small CNNs over generated NPY data (docs/optimize.md
# "Distillation"): a teacher from a run folder and from an export version, the student's weights
# differ from plain training, --resume ends bit for bit where the uninterrupted run ends, and
# bad teachers (other number of classes, other input shape, other preprocessing, not a run or
# export) and bad values give clear errors with file:line and exit 2. The accuracy comparison
# on Fashion-MNIST is tests/cli/distill_accuracy.sh (long).
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3

run_dir() { ls -d "$1"/*/* | head -1; }
differ() { ! cmp -s "$1" "$2"; }
# The tensors of two safetensors files are the same (the metadata, with the config hash, aside).
same_tensors() {
    $PY - "$1" "$2" <<'PYEOF'
import json, struct, sys
def data(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop('__metadata__', None)
    return h, b[8 + n:]
sys.exit(0 if data(sys.argv[1]) == data(sys.argv[2]) else 1)
PYEOF
}

setup() {
    $PY -c "
import numpy as np
r = np.random.default_rng(0)
y = r.integers(0, 3, size=200).astype(np.int64)
x = r.normal(size=(200, 1, 8, 8)).astype(np.float32)
x[:, 0] += y[:, None, None] * 0.5
np.save('$TMP/x.npy', x); np.save('$TMP/y.npy', y)
np.save('$TMP/y5.npy', (y + np.arange(200)) % 5)
np.save('$TMP/x6.npy', x[:, :, :6, :6].copy())"
    cat >"$TMP/teacher.yaml" <<YAML
experiment: teacher
seed: 5
data:
  source: npy
  train: {x: $TMP/x.npy, y: $TMP/y.npy}
  batch_size: 32
model:
  input: [1, 8, 8]
  layers:
    - conv2d: {filters: 8, kernel: 3, padding: same, activation: relu}
    - conv2d: {filters: 8, kernel: 3, padding: same, activation: relu}
    - global_avgpool2d
    - dense: {units: 3}
loss: softmax_cross_entropy
optimizer: {adam: {learning_rate: 0.01}}
train: {epochs: 3}
log: {tensorboard: false}
YAML
    cat >"$TMP/student.yaml" <<YAML
experiment: student
seed: 3
data:
  source: npy
  train: {x: $TMP/x.npy, y: $TMP/y.npy}
  validation_split: 0.2
  batch_size: 32
model:
  input: [1, 8, 8]
  layers:
    - conv2d: {filters: 2, kernel: 3, padding: same, activation: relu}
    - global_avgpool2d
    - dropout: {rate: 0.2}
    - dense: {units: 3}
loss: softmax_cross_entropy
metrics: [accuracy]
optimizer: {adam: {learning_rate: 0.01}}
train:
  epochs: 3
  checkpoint: {every_steps: 1, keep: 1000}
  distill: {teacher: TEACHER, temperature: 3, alpha: 0.7}
log: {tensorboard: false}
YAML
}

t_teachers() {
    k train "$TMP/teacher.yaml" --runs-dir "$TMP/rt" --quiet
    check "teacher: exit 0" [ $rc = 0 ]
    TEACHER=$(run_dir "$TMP/rt")
    k export "$TEACHER" --to "$TMP/texp"
    check "teacher export: exit 0" [ $rc = 0 ]
    sed "s#TEACHER#$TEACHER#" "$TMP/student.yaml" >"$TMP/s_run.yaml"
    sed "s#TEACHER#$TMP/texp/1#" "$TMP/student.yaml" >"$TMP/s_exp.yaml"
    sed '/distill:/d' "$TMP/student.yaml" >"$TMP/s_plain.yaml"
    k train "$TMP/s_run.yaml" --runs-dir "$TMP/r1" --quiet
    check "student of a run: exit 0" [ $rc = 0 ]
    k train "$TMP/s_exp.yaml" --runs-dir "$TMP/r2" --quiet
    check "student of an export: exit 0" [ $rc = 0 ]
    k train "$TMP/s_plain.yaml" --runs-dir "$TMP/r3" --quiet
    check "plain student: exit 0" [ $rc = 0 ]
    local a=$(run_dir "$TMP/r1")/checkpoints/step-15/weights.safetensors
    local b=$(run_dir "$TMP/r2")/checkpoints/step-15/weights.safetensors
    local c=$(run_dir "$TMP/r3")/checkpoints/step-15/weights.safetensors
    check "the same teacher from its run or its export: the same student" same_tensors "$a" "$b"
    check "the teacher changes training" differ "$a" "$c"
    check "the resolved config keeps the teacher's absolute path" grep -q "teacher: $TEACHER" "$(run_dir "$TMP/r1")/config.yaml"
    cp -r "$(run_dir "$TMP/r1")" "$TMP/uninterrupted"
}

t_resume() {
    local src=$TMP/uninterrupted dst=$TMP/cut/student/run
    mkdir -p "$TMP/cut/student" && cp -r "$src" "$dst"
    for s in $(ls "$dst/checkpoints" | sed -n 's/^step-//p'); do [ "$s" -gt 7 ] && rm -rf "$dst/checkpoints/step-$s"; done
    printf 'step-7' >"$dst/checkpoints/latest"
    "$KILN" train --resume "$dst" --quiet >"$TMP/out" 2>&1
    check "resume: exit 0" [ $? = 0 ]
    check "resume: final weights bitwise equal" cmp -s "$src/checkpoints/step-15/weights.safetensors" "$dst/checkpoints/step-15/weights.safetensors"
}

t_errors() {
    # a teacher with 5 classes, one with 6x6 inputs, one with another normalization
    sed -e "s#y.npy#y5.npy#" -e 's/units: 3/units: 5/' -e 's/epochs: 3/epochs: 1/' "$TMP/teacher.yaml" >"$TMP/t5.yaml"
    k train "$TMP/t5.yaml" --runs-dir "$TMP/rt5" --quiet
    sed -e "s#x.npy#x6.npy#" -e 's/input: \[1, 8, 8\]/input: [1, 6, 6]/' -e 's/epochs: 3/epochs: 1/' "$TMP/teacher.yaml" >"$TMP/t6.yaml"
    k train "$TMP/t6.yaml" --runs-dir "$TMP/rt6" --quiet
    sed -e 's/batch_size: 32/batch_size: 32\n  normalize: {scale: 0.5}/' -e 's/epochs: 3/epochs: 1/' "$TMP/teacher.yaml" >"$TMP/tn.yaml"
    k train "$TMP/tn.yaml" --runs-dir "$TMP/rtn" --quiet
    local i=0 teacher want
    while IFS='|' read -r teacher want; do
        i=$((i + 1))
        sed "s#TEACHER#$teacher#" "$TMP/student.yaml" >"$TMP/bad$i.yaml"
        k train "$TMP/bad$i.yaml" --runs-dir "$TMP/rb$i" --quiet
        check "$want: exit 2" [ $rc = 2 ]
        check "$want: with file:line" grep -Eq "bad$i.yaml:[0-9]+:[0-9]+: train.distill.teacher: .*$want" "$TMP/out"
    done <<LIST
$(run_dir "$TMP/rt5")|it has 5 classes, the student 3
$(run_dir "$TMP/rt6")|it takes inputs \[1, 1, 6, 6\], the student \[1, 1, 8, 8\]
$(run_dir "$TMP/rtn")|its data.normalize differs from the student's
$TMP|is neither a run folder \(config.yaml\) nor an export version \(model.json\)
LIST
    sed -e "s#TEACHER#$TMP/texp/1#" -e 's/temperature: 3/temperature: 0/' "$TMP/student.yaml" >"$TMP/bad_t.yaml"
    k train "$TMP/bad_t.yaml" --runs-dir "$TMP/rbt" --quiet
    check "temperature 0: exit 2" [ $rc = 2 ]
    check "temperature 0: file:line" grep -Eq 'bad_t.yaml:[0-9]+:[0-9]+: train.distill.temperature: 0 is out of range' "$TMP/out"
    sed -e "s#TEACHER#$TMP/texp/1#" -e 's/alpha: 0.7/alpha: 1.5/' "$TMP/student.yaml" >"$TMP/bad_a.yaml"
    k train "$TMP/bad_a.yaml" --runs-dir "$TMP/rba" --quiet
    check "alpha 1.5: exit 2" [ $rc = 2 ]
    check "alpha 1.5: file:line" grep -Eq 'bad_a.yaml:[0-9]+:[0-9]+: train.distill.alpha: 1.5 is out of range' "$TMP/out"
}

setup
cd "$TMP"
run_test t_teachers
run_test t_resume
run_test t_errors
finish
