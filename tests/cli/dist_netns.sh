#!/usr/bin/env bash
# Two "hosts": network namespaces kiln-a (10.77.0.1) and kiln-b (10.77.0.2) joined by a veth pair;
# Open MPI launches a rank into each (an rsh agent that runs `ip netns exec`, with its own UTS
# namespace so that the ranks see different host names) and talks TCP between them
# (--mca btl tcp,self): the multi-node path (hostfile, TCP transport, remote daemon). The run must
# equal a single process's, as on one host. Exit 77 (ctest: skipped) only where network
# namespaces cannot be made (no root, no `ip netns`), saying why.
. "$(dirname "$0")/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$SRC/tests/dist/asan_env.sh" # Open MPI's own leaks suppressed under make asan
if [ "$(id -u)" != 0 ]; then echo "SKIP: network namespaces need root"; exit 77; fi
A=kiln-a-$$ B=kiln-b-$$
cleanup() { ip netns del "$A" 2>/dev/null; ip netns del "$B" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
if ! ip netns add "$A" 2>"$TMP/netns.err" || ! ip netns add "$B" 2>>"$TMP/netns.err"; then
    echo "SKIP: cannot make network namespaces here: $(cat "$TMP/netns.err")"; exit 77
fi
ip link add va$$ type veth peer name vb$$ || { echo "veth pair failed" >&2; exit 1; }
ip link set va$$ netns "$A" && ip link set vb$$ netns "$B"
ip -n "$A" addr add 10.77.0.1/24 dev va$$ && ip -n "$B" addr add 10.77.0.2/24 dev vb$$
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
ip -n "$A" link set va$$ up && ip -n "$B" link set vb$$ up
# the rsh agent: "agent HOST command..." runs command in HOST's namespace, named after it
cat >"$TMP/agent" <<AGENT
#!/bin/bash
host=\$1; shift
while [ "\${1#-}" != "\$1" ]; do shift; done # ssh-style options, if any
case \$host in 10.77.0.1) ns=$A name=node-a ;; 10.77.0.2) ns=$B name=node-b ;; *) echo "agent: unknown host \$host" >&2; exit 1 ;; esac
exec ip netns exec \$ns unshare --uts bash -c "hostname \$name; \$*"
AGENT
chmod +x "$TMP/agent"
printf '10.77.0.1 slots=1\n10.77.0.2 slots=1\n' >"$TMP/hosts"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
run_dir() { ls -d "$1"/*/* | head -1; }
json() { grep -o "\"$2\":[[:space:]]*[^,}]*" "$1/run.json" | head -1 | sed 's/.*:[[:space:]]*//; s/"//g'; }

t_two_hosts_over_tcp() {
    local c=$(small_config nn "log: {tensorboard: false}")
    sed -i 's/activation: relu/activation: tanh/; /dropout/d; /ema_decay/d' "$c"
    local S=(--set train.max_steps=40 --set train.checkpoint.every_steps=40)
    # mpirun itself runs on "node a" (its namespace), rank 1 on node b through the agent
    timeout 180 ip netns exec "$A" unshare --uts bash -c "hostname node-a; exec mpirun -np 2 --hostfile '$TMP/hosts' \
        --mca plm_rsh_agent '$TMP/agent' --mca plm_rsh_no_tree_spawn 1 --mca btl tcp,self \
        --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 \
        -x OMP_NUM_THREADS -x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM \
        '$KILN' train '$c' ${S[*]} --runs-dir '$TMP/two'" >"$TMP/out" 2>&1
    rc=$?
    check "exit 0 ($rc)" [ $rc = 0 ]
    check "two hosts" has "world: 2 ranks on 2 hosts (launcher: mpirun)"
    check "rank 1 on node-b" grep -q "rank 1: host node-b" "$TMP/out"
    local d=$(run_dir "$TMP/two")
    check "finished" [ "$(json "$d" status)" = finished ]
    "$KILN" train "$c" "${S[@]}" --runs-dir "$TMP/one" --threads 1 --quiet
    check "the same weights as one process" /usr/bin/python3 "$SRC/tests/dist/compare_weights.py" \
        "$(run_dir "$TMP/one")/checkpoints/step-40/weights.safetensors" "$d/checkpoints/step-40/weights.safetensors" 1e-5
    [ $test_failed = 0 ] || sed 's/^/    | /' "$TMP/out" | tail -30 >&2
}

run_test t_two_hosts_over_tcp
finish
