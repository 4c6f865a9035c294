#!/usr/bin/env bash
# Every class of config and command-line error: a message naming file:line:column and the key
# path, and exit code 2. Garbage as a config or as data: an error, never a crash.
. "$(dirname "$0")/lib.sh"

base() { small_config base; }

t_unknown_key() {
    local c=$(base); sed -i 's/units: 64/unitz: 64/' "$c"
    k train "$c" --runs-dir "$TMP/runs"
    check "exit 2" [ $rc = 2 ]
    check "message" has "base.yaml:14:15: model.layers[1].dense: unknown key 'unitz' (did you mean 'units'?)"
}
t_wrong_type() {
    local c=$(base); sed -i 's/epochs: 2/epochs: two/' "$c"
    k train "$c" --runs-dir "$TMP/runs"
    check "exit 2" [ $rc = 2 ]
    check "message" has "base.yaml:21:3: train.epochs: expected an integer, got 'two'"
}
t_missing_config() {
    k train "$TMP/nope.yaml"
    check "exit 2" [ $rc = 2 ]
    check "message" has "nope.yaml: No such file or directory"
}
t_missing_data_file() {
    local c=$(base); sed -i 's|train-images-idx3-ubyte.gz|missing-images.gz|' "$c"
    k train "$c" --runs-dir "$TMP/runs"
    check "exit 2" [ $rc = 2 ]
    check "message" has "data.train"
    check "message names the file" has "missing-images.gz"
}
t_bad_shape_chain() {
    local c=$(base); sed -i 's/    - flatten/    - flatten\n    - dense: {units: 8}\n    - conv2d: {filters: 4, kernel: 3}/' "$c"
    k train "$c" --runs-dir "$TMP/runs"
    check "exit 2" [ $rc = 2 ]
    check "message" has "base.yaml:15:7: model.layers[2].conv2d: conv2d_1 (conv2d): input dense_1 has shape [1, 8]; need [batch, channels, height, width]"
}
t_unknown_from() {
    local c=$(base); sed -i 's/dense: {units: 10}/dense: {units: 10, from: [hiddn]}/' "$c"
    k train "$c" --runs-dir "$TMP/runs"
    check "exit 2" [ $rc = 2 ]
    check "message" has "model.layers[3].dense.from: unknown layer 'hiddn'"
}
t_cycle() {
    local c=$(base); sed -i 's/dense: {units: 64, activation: relu}/dense: {units: 64, activation: relu, from: [head]}/; s/dense: {units: 10}/dense: {units: 10, name: head}/' "$c"
    k train "$c" --runs-dir "$TMP/runs"
    check "exit 2" [ $rc = 2 ]
    check "message" has "'head' is defined later in the list; a layer may only take earlier layers (this would be a cycle)"
}
t_yaml_syntax() {
    local c=$(base); echo "bad: [1, 2" >>"$c"
    k train "$c" --runs-dir "$TMP/runs"
    check "exit 2" [ $rc = 2 ]
    check "message" has "base.yaml:"
}
t_set_override_errors() {
    local c=$(base)
    k train "$c" --set train.epochs=-3 --runs-dir "$TMP/runs"
    check "exit 2" [ $rc = 2 ]
    check "message" has "--set: train.epochs: -3 is out of range"
    k train "$c" --set nonsense --runs-dir "$TMP/runs"
    check "exit 2 for a malformed --set" [ $rc = 2 ]
}
t_usage() {
    k train; check "no config: exit 2" [ $rc = 2 ]
    k train a.yaml --resume latest; check "both: exit 2" [ $rc = 2 ]
    k train --threads zero x.yaml; check "bad --threads: exit 2" [ $rc = 2 ]
    k frobnicate; check "unknown command: exit 2" [ $rc = 2 ]
    k eval; check "eval without a run: exit 2" [ $rc = 2 ]
    k eval "$TMP/no-such-run"; check "eval of a missing run: exit 2" [ $rc = 2 ]
    k --help; check "--help: exit 0" [ $rc = 0 ]; check "help text" has "train CONFIG"
    k train --help; check "train --help: exit 0" [ $rc = 0 ]; check "train help" has "--resume"
    k eval --help; check "eval --help: exit 0" [ $rc = 0 ]
}
t_no_runs_left_behind_by_config_errors() {
    local c=$(base); sed -i 's/units: 64/unitz: 64/' "$c"
    k train "$c" --runs-dir "$TMP/runs-clean"
    check "no run folder for a bad config" [ ! -e "$TMP/runs-clean" ]
}
t_garbage_config() {
    head -c 3000 /dev/urandom >"$TMP/garbage.yaml"
    for i in 1 2 3 4 5; do
        head -c $((i * 700)) /dev/urandom >"$TMP/garbage.yaml"
        k train "$TMP/garbage.yaml" --runs-dir "$TMP/runs"
        check "garbage config #$i: exit 2, not a crash (rc $rc)" [ $rc = 2 ]
    done
    printf 'experiment: [\n{{{\n' >"$TMP/garbage.yaml"
    k train "$TMP/garbage.yaml"; check "broken flow: exit 2" [ $rc = 2 ]
}
t_garbage_data() {
    head -c 100000 /dev/urandom >"$TMP/images.gz"
    cp "$FMNIST/train-labels-idx1-ubyte.gz" "$TMP/labels.gz"
    local c=$(base); sed -i "s|$FMNIST/train-images-idx3-ubyte.gz|$TMP/images.gz|" "$c"
    k train "$c" --runs-dir "$TMP/runs"
    check "garbage IDX: exit 2, not a crash (rc $rc)" [ $rc = 2 ]
    check "names the file" has "images.gz"
    printf 'a,b,label\n1,2,x\n3,oops,y\n' >"$TMP/t.csv"
    cat >"$TMP/csv.yaml" <<YAML
data: {source: csv, label: label, train: {path: t.csv}}
model: {input: [2], layers: [{dense: {units: 2}}]}
loss: softmax_cross_entropy
YAML
    k train "$TMP/csv.yaml" --runs-dir "$TMP/runs"
    check "bad CSV: exit 2 (rc $rc)" [ $rc = 2 ]
    check "names line and column" has "t.csv:3"
}
t_ranges() { # values that would train nothing or divide by zero: rejected with the range
    local c=$(base)
    k train "$c" --set train.epochs=0 --runs-dir "$TMP/runs-range"
    check "epochs=0: exit 2 (rc $rc)" [ $rc = 2 ]
    check "epochs=0: message" has "--set: train.epochs: 0 is out of range (1 .. 1e+09)"
    sed -i 's/epochs: 2/epochs: 0/' "$c"
    k train "$c" --runs-dir "$TMP/runs-range"
    check "epochs: 0 in the file: file:line" has "base.yaml:21:3: train.epochs: 0 is out of range (1 .. 1e+09)"
    c=$(base)
    k train "$c" --set train.max_steps=-1 --runs-dir "$TMP/runs-range"
    check "max_steps=-1: exit 2 (rc $rc)" [ $rc = 2 ]
    check "max_steps=-1: message" has "--set: train.max_steps: -1 is out of range (0 .. 1e+15)"
    for o in adam adamw rmsprop; do
        c=$(base); sed -i "s/optimizer: .*/optimizer: {$o: {epsilon: 0}}/" "$c"
        k train "$c" --runs-dir "$TMP/runs-range"
        check "$o epsilon 0: exit 2 (rc $rc)" [ $rc = 2 ]
        check "$o epsilon 0: message" has "base.yaml:19:$((16 + ${#o})): optimizer.$o.epsilon: 0 is out of range (above 0, up to 1)"
    done
    k train "$(base)" --set optimizer.adam.epsilon=1e-9 --set train.max_steps=1 --runs-dir "$TMP/runs-range" --quiet
    check "a small epsilon is fine (rc $rc)" [ $rc = 0 ]
    check "no run folder for the rejected configs" [ "$(ls "$TMP/runs-range/small" | wc -l)" = 1 ]
}
t_class_names_count() { # checked before training, not at export
    c=$(base); sed -i 's/^  input: \[1, 28, 28\]/  input: [1, 28, 28]\n  class_names: [a, b, c]/' "$c"
    k train "$c" --runs-dir "$TMP/runs-names"
    check "exit 2 (rc $rc)" [ $rc = 2 ]
    check "message" has "base.yaml:12:3: model.class_names: 3 names for a model with 10 outputs (the last layer's units): give one name per class"
    check "no run folder" [ ! -e "$TMP/runs-names" ]
    c=$(base); sed -i 's/^  input: \[1, 28, 28\]/  input: [1, 28, 28]\n  class_names: [t-shirt, trouser, pullover, dress, coat, sandal, shirt, sneaker, bag, boot]/' "$c"
    k train "$c" --set train.max_steps=2 --runs-dir "$TMP/runs-names" --quiet
    check "ten names: exit 0 (rc $rc)" [ $rc = 0 ]
}
t_billion_laughs() { # 342 bytes naming 387 million scalars through nested aliases
    {
        echo 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'
        local prev=a l
        for l in b c d e f g h i; do
            echo "$l: &$l [*$prev,*$prev,*$prev,*$prev,*$prev,*$prev,*$prev,*$prev,*$prev]"
            prev=$l
        done
    } >"$TMP/laughs.yaml"
    # Memory stays bounded: under a 1 GiB address-space limit (not with AddressSanitizer, which
    # reserves terabytes of address space up front)
    if ldd "$KILN" 2>/dev/null | grep -q libasan; then
        k train "$TMP/laughs.yaml" --runs-dir "$TMP/runs"
    else
        (ulimit -v 1048576; "$KILN" train "$TMP/laughs.yaml" --runs-dir "$TMP/runs" >"$TMP/out" 2>&1)
        rc=$?
    fi
    check "exit 2 (rc $rc)" [ $rc = 2 ]
    check "message names the alias's place" has "laughs.yaml:6:"
    check "message says why" has "expanding the aliases would make the config larger than 16 MiB"
}

# Feeds config $1 through the named pipe $2 to `kiln train $2 ARGS...` (exit code in $rc);
# with strace there, the trace of openat calls goes to $TMP/trace.
train_from_pipe() {
    local c=$1 fifo=$2
    shift 2
    rm -f "$fifo" && mkfifo "$fifo"
    cat "$c" >"$fifo" 2>/dev/null &
    local writer=$!
    if command -v strace >/dev/null; then
        # (LeakSanitizer cannot run under ptrace: leaks are checked by the run without strace)
        ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
            timeout 120 strace -f -qq -e trace=openat -o "$TMP/trace" "$KILN" train "$fifo" "$@" >"$TMP/out" 2>&1
    else
        timeout 120 "$KILN" train "$fifo" "$@" >"$TMP/out" 2>&1
    fi
    rc=$?
    kill $writer 2>/dev/null
    wait $writer 2>/dev/null
}
t_config_from_a_pipe() { # a named pipe or <(...) can be read once only
    local c=$(base)
    # Over 64 KiB (a pipe's buffer), so the writer is still writing when kiln first opens the
    # pipe: a reader that opened it twice would make the writer fail and then wait forever.
    awk 'BEGIN { for (i = 0; i < 2000; i++) printf "# comment line %d, long enough to fill a pipe buffer\n", i }' >>"$c"
    train_from_pipe "$c" "$TMP/cfg.fifo" --set train.max_steps=3 --runs-dir "$TMP/runs-fifo" --quiet
    check "config from a named pipe: exit 0, no hang (rc $rc)" [ $rc = 0 ]
    check "the run's config.yaml holds it" grep -q 'experiment: small' "$TMP"/runs-fifo/small/*/config.yaml
    if command -v strace >/dev/null; then # whether a writer is fast enough to lose is a race: count
        check "the pipe is opened once" [ "$(grep -c 'openat(.*cfg\.fifo' "$TMP/trace")" = 1 ]
    else
        echo "  (no strace here: the count of opens is not checked)"
    fi
    timeout 120 "$KILN" train <(cat "$c") --set train.max_steps=3 --runs-dir "$TMP/runs-fifo" --quiet >"$TMP/out" 2>&1
    rc=$?
    check "config from <(...): exit 0 (rc $rc)" [ $rc = 0 ]
    rm -f "$TMP/cfg.fifo" && mkfifo "$TMP/cfg.fifo"
    cat "$c" >"$TMP/cfg.fifo" 2>/dev/null &
    local writer=$!
    timeout 120 "$KILN" train "$TMP/cfg.fifo" --set train.max_steps=3 --runs-dir "$TMP/runs-fifo" --quiet >"$TMP/out" 2>&1
    rc=$?
    kill $writer 2>/dev/null
    wait $writer 2>/dev/null
    check "config from a named pipe, without strace: exit 0 (rc $rc)" [ $rc = 0 ]
}

for t in t_unknown_key t_wrong_type t_missing_config t_missing_data_file t_bad_shape_chain t_unknown_from t_cycle \
         t_yaml_syntax t_set_override_errors t_usage t_no_runs_left_behind_by_config_errors t_garbage_config t_garbage_data \
         t_config_from_a_pipe t_billion_laughs t_ranges t_class_names_count; do
    run_test $t
done
finish
