#!/usr/bin/env bash
# examples/transfer end to end on real data (label long): Fashion-MNIST classes 0-4 as a JPEG
# folder pretrain the example's resnet18 (pretrain.yaml), whose run finetune.yaml loads through
# model.init_from for classes 5-9 and trains in two stages. Checked with an independent
# safetensors reader (python, bytes compared, no kiln code):
# - init_from reports every backbone parameter loaded and the new head left initialised;
# - stage 1 changes only the head: at the stage switch every backbone tensor (batch-norm moving
#   statistics included) is byte for byte the pretraining run's, and the head has moved;
# - stage 2 changes the backbone (kernels and moving statistics) and ends with a higher
#   validation accuracy than stage 1 ended with (metrics.jsonl).
# Sizes (kept small for 2 cores): --limit 1200 IDX rows a split (~600 images of 5 classes),
# images resized to 32x32 instead of the example's 64x64, 2 epochs a phase. Training is
# deterministic (same seed, same numbers), so the accuracy comparison is not a matter of luck.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
EXAMPLE=$(cd "$(dirname "$0")/../../examples/transfer" && pwd)
DATA_TOOL=$(dirname "$KILN")/kiln_example_data
SMALL=(--set "model.input=[3, 32, 32]" --set "data.image.resize=[32, 32]"
       --set data.validation_split=0.2 --set log.tensorboard=false --set log.every_steps=5
       --set train.checkpoint.keep=100)

run_dir() { ls -d "$1"/*/* | head -1; }

# compare A B PREFIX: for every tensor of A whose name starts with PREFIX and that has no '.adam'
# (optimizer slot) suffix, prints "<same> <differ> <missing in B>" counts.
compare() {
    $PY - "$1" "$2" "$3" <<'PYEOF'
import json, struct, sys
def load(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop('__metadata__', None)
    return {k: (v['dtype'], v['shape'], b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]])
            for k, v in h.items()}
a, b = load(sys.argv[1]), load(sys.argv[2])
names = [k for k in a if k.startswith(sys.argv[3]) and '.adam' not in k]
same = sum(1 for k in names if k in b and a[k] == b[k])
missing = sum(1 for k in names if k not in b)
print(same, len(names) - same - missing, missing)
PYEOF
}

# last_val RUN STAGE: the last validation accuracy of that stage in metrics.jsonl
last_val() {
    $PY - "$1/metrics.jsonl" "$2" <<'PYEOF'
import json, sys
pts = [json.loads(l) for l in open(sys.argv[1])]
v = [p['value'] for p in pts if p['split'] == 'validation' and p['name'] == 'accuracy'
     and p.get('stage') == int(sys.argv[2])]
print(v[-1] if v else 'none')
PYEOF
}

setup() {
    mkdir -p "$TMP/data"
    "$DATA_TOOL" --fashion-jpeg "$TMP/data/pre" --classes 0,1,2,3,4 --limit 1200 >/dev/null &&
        "$DATA_TOOL" --fashion-jpeg "$TMP/data/fine" --classes 5,6,7,8,9 --limit 1200 >/dev/null
}

t_pretrain_then_finetune() {
    k train "$EXAMPLE/pretrain.yaml" "${SMALL[@]}" --set train.epochs=2 \
        --set data.train.path="$TMP/data/pre/train" --set data.test=null --runs-dir "$TMP/pre" --quiet
    check "pretraining: exit 0" [ $rc = 0 ]
    local pre=$(run_dir "$TMP/pre")
    local init=$pre/checkpoints/$(cat "$pre/checkpoints/latest")/weights.safetensors
    check "pretraining checkpoint" [ -f "$init" ]

    k train "$EXAMPLE/finetune.yaml" "${SMALL[@]}" --set model.init_from="$pre" \
        --set train.epochs=2 --set "stages[1].train.epochs=2" \
        --set data.train.path="$TMP/data/fine/train" --set data.test=null --runs-dir "$TMP/fine" --quiet
    check "fine-tuning: exit 0" [ $rc = 0 ]
    # init_from: all 100 backbone parameters loaded (resnet18 without its fc), the new head not
    check "backbone loaded" has "loaded 100 of 102 parameters"
    check "new head left initialised" has "missing in the file (2, left as initialized): new_head.kernel, new_head.bias"
    check "old head not used" has "unexpected in the file (2, not used): head.bias, head.kernel"
    check "no shape mismatch" bash -c "! grep -q 'shape mismatch' '$TMP/out'"
    local d=$(run_dir "$TMP/fine") c
    c=$d/checkpoints
    local sw=$(sed -n 's/^stage 2\/2 from epoch [0-9]*, step \([0-9]*\)$/\1/p' "$d/log.txt" | head -1)
    check "stage switch in log.txt (step '$sw')" [ -n "$sw" ]
    local first=$(ls "$c" | sed -n 's/^step-//p' | sort -n | head -1)
    local last=$(sed -n 's/^step-//p' "$c/latest")
    check "a checkpoint inside stage 1 (step $first < $sw)" [ "$first" -lt "$sw" ]
    check "the stage-switch checkpoint" [ -f "$c/step-$sw/weights.safetensors" ]
    check "stage 2 went on (step $last)" [ "$last" -gt "$sw" ]

    local r
    r=$(compare "$init" "$c/step-$sw/weights.safetensors" backbone/)
    check "stage 1: all 100 backbone tensors byte for byte as loaded (same differ missing: $r)" [ "$r" = "100 0 0" ]
    r=$(compare "$init" "$c/step-$first/weights.safetensors" backbone/)
    check "inside stage 1 too ($r)" [ "$r" = "100 0 0" ]
    r=$(compare "$init" "$c/step-$sw/weights.safetensors" backbone/layer4/1/bn2.moving_)
    check "incl. batch-norm moving statistics ($r)" [ "$r" = "2 0 0" ]
    r=$(compare "$c/step-$first/weights.safetensors" "$c/step-$sw/weights.safetensors" new_head)
    check "stage 1 trained the head ($r)" [ "$r" = "0 2 0" ]

    r=$(compare "$init" "$c/step-$last/weights.safetensors" backbone/)
    check "stage 2 changed every backbone tensor ($r)" [ "$r" = "0 100 0" ]

    local v1=$(last_val "$d" 1) v2=$(last_val "$d" 2)
    check "validation accuracy at the end of stage 1 ($v1) and stage 2 ($v2)" [ "$v1" != none -a "$v2" != none ]
    check "stage 2 improves validation accuracy: $v1 -> $v2" $PY -c "import sys; sys.exit(not $v2 > $v1)"
    echo "  validation accuracy: end of stage 1 $v1, end of stage 2 $v2"
}

setup || { echo "kiln_example_data failed"; exit 1; }
run_test t_pretrain_then_finetune
finish
