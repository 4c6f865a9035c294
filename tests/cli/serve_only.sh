#!/usr/bin/env bash
# serve_only.sh — the kiln-serve program (src/cli/serve_only/main.c; the kiln-serve container
# image's server): `kiln-serve ARGS` is `kiln serve ARGS`, and linked with --as-needed from the
# static libkiln.a it loads none of the training-only libraries (Open MPI, libcurl), nor the
# optional backends only the kiln command installs (Kafka sources: librdkafka; PostgreSQL
# registries: libpq with Kerberos, LDAP and SASL), and says so when asked for one.
#   bash tests/cli/serve_only.sh build/kiln build/kiln-serve build/kiln_example_data
. "$(dirname "$0")/lib.sh"
SERVE=${2:?usage: serve_only.sh KILN KILN_SERVE KILN_EXAMPLE_DATA}
DATA=${3:?usage: serve_only.sh KILN KILN_SERVE KILN_EXAMPLE_DATA}
SERVE=$(cd "$(dirname "$SERVE")" && pwd)/$(basename "$SERVE")
DATA=$(cd "$(dirname "$DATA")" && pwd)/$(basename "$DATA")
SERVER_PID=""
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$TMP"' EXIT

t_libraries() {
    local libs; libs=$(ldd "$SERVE")
    check "kiln-serve's libraries resolve" bash -c '! grep -q "not found" <<<"$1"' _ "$libs"
    check "kiln-serve loads no Open MPI" bash -c '! grep -q libmpi <<<"$1"' _ "$libs"
    check "kiln-serve loads no libcurl" bash -c '! grep -q libcurl <<<"$1"' _ "$libs"
    check "kiln-serve loads no librdkafka" bash -c '! grep -q librdkafka <<<"$1"' _ "$libs"
    check "kiln-serve loads no libpq" bash -c '! grep -q libpq <<<"$1"' _ "$libs"
    local kl; kl=$(ldd "$KILN")
    check "kiln loads them (the split is real)" bash -c 'grep -q libmpi <<<"$1" &&
        grep -q librdkafka <<<"$1" && grep -q libpq <<<"$1"' _ "$kl"
}

# A PostgreSQL registry: kiln-serve says it has no such backend (and, as with a registry that is
# down, keeps serving what it has: here nothing); kiln tries to connect.
t_no_postgres_backend() {
    KILN_REGISTRY=postgresql://127.0.0.1:1/none "$SERVE" --model_base_path models:/m@prod \
        --model_name m --host 127.0.0.1 --rest_api_port 0 --runs-dir "$TMP" >"$TMP/pg.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do grep -q "serving" "$TMP/pg.log" && break; sleep 0.1; done
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID"
    SERVER_PID=""
    cp "$TMP/pg.log" "$TMP/out"
    check "kiln-serve: a postgresql:// registry says there is no PostgreSQL backend" \
        has "this program has no PostgreSQL backend"
    KILN_REGISTRY=postgresql://127.0.0.1:1/none "$KILN" models list --runs-dir "$TMP" \
        >"$TMP/out" 2>&1
    check "kiln: the same URI is tried (cannot connect)" has "cannot connect"
}

t_version_and_usage() {
    "$SERVE" --version >"$TMP/out" 2>&1
    check "--version exits 0" test $? = 0
    check "--version names kiln-serve" has "kiln-serve "
    "$SERVE" --model_name x --bogus >"$TMP/out" 2>&1
    check "an unknown flag exits 2" test $? = 2
    check "the error names the flag" has "--bogus"
    check "the error points to kiln-serve --help" has "kiln-serve --help"
    "$SERVE" --help >"$TMP/out" 2>&1
    check "--help is kiln serve's" has "--model_base_path"
}

t_serves_and_stops() {
    mkdir -p "$TMP/tabular" && (cd "$TMP" && "$DATA" tabular >/dev/null) &&
        cp "$(dirname "$0")/../../examples/tabular/wine.yaml" "$TMP/tabular/"
    k train "$TMP/tabular/wine.yaml" --runs-dir "$TMP/runs" --name so --set train.epochs=1 \
        --set 'train.export={every_epochs: 1}'
    check "the export for it trains" test "$rc" = 0
    local exp; exp=$(ls -d "$TMP"/runs/wine-quality/so-*/export)
    "$SERVE" --model_base_path "$exp" --model_name wine --host 127.0.0.1 --rest_api_port 0 \
        --rest_api_num_threads 2 >"$TMP/serve.log" 2>&1 &
    SERVER_PID=$!
    local port=""
    for _ in $(seq 100); do
        port=$(sed -n 's/.*serving .* on http:\/\/[0-9.]*:\([0-9]*\) .*/\1/p' "$TMP/serve.log")
        [ -n "$port" ] && break
        sleep 0.1
    done
    check "kiln-serve starts" test -n "$port"
    local row; row=$(sed -n 2p "$TMP/tabular/wine_test.csv" | cut -d, -f1-11)
    curl -s -d "{\"instances\": [[$row]]}" "http://127.0.0.1:$port/v1/models/wine:predict" \
        >"$TMP/out"
    check "v1 predict answers with a class" has '"classes":"high"'
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID"
    check "SIGTERM: exit 0" test $? = 0
    SERVER_PID=""
    check "SIGTERM: stopped gracefully" grep -q 'SIGTERM: finishing requests' "$TMP/serve.log"
}

run_test t_libraries
run_test t_version_and_usage
run_test t_no_postgres_backend
run_test t_serves_and_stops
finish
