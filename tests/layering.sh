#!/usr/bin/env bash
# layering.sh — keeps kiln's folders in layers: a folder under src/ includes only itself and the
# folders below it, and the big engines (oneDNN, SQLite, libcurl, ...) only from the folder
# that owns them. docs/architecture.md explains the order; this file is its executable form.
#
#   bash tests/layering.sh [ROOT [OBJLIST]] check ROOT (default: the repository), exit 1 on a
#                                         violation; with OBJLIST (a file naming libkiln's object
#                                         files; the build writes build/kiln_objects.txt) check
#                                         the calls as well
#   bash tests/layering.sh --self-test     check that the checker catches what it must
#
# Includes show what a file may name; calls show what it really uses. A function declared in a
# low header but defined in a high folder would pass the first check, so with OBJLIST every symbol
# an object file of folder F uses must be defined by an object of F or of a folder below it.
#
# What it reads: every #include in src/**/*.[ch] and include/kiln/*.h.
#   "folder/file.h"    a private header: its layer is the folder's (src/<folder>/...)
#   "kiln/name.h"      a public header: its layer is the folder that implements it (PUBLIC below)
#   "x/y.pb-c.h"       protobuf-c's generated code: just above core (it needs only protobuf-c)
#   <lib.h>            a system or library header: free, unless ENGINE names an owner for it
# A file in folder F may include layer L only when L comes no later than F in LAYERS. Folders,
# public headers and quoted paths it does not know are errors too, so that a new folder or header
# has to be placed before it can be used. Each violation is printed as file:line: what and why.
set -uo pipefail

# The order, lowest first. Folders that later issues add are placed already.
LAYERS=(core proto tensor config io data graph backend nn optim model net run tboard registry
        explain train dist tune optimize serve board cli)

# Public headers -> the folder that implements them.
declare -A PUBLIC=(
  [status]=core [version]=core [cpu]=core [mem]=core [rng]=core [fileio]=core [crc32c]=core
  [tensor]=tensor [config]=config [safetensors]=io [tfrecord]=io [data]=data [image]=data [tfexample]=data
  [augment]=data [kafka]=data
  [graph]=graph [backend]=backend [nn]=nn [metrics]=nn [optim]=optim
  [model]=model [inputs]=model [export]=model [checkpoint]=model [onnx]=model
  [prune]=model
  [sbuf]=net [http]=net [client]=net [prom]=net [web]=net
  [run]=run [tboard]=tboard [registry]=registry [mlflow]=registry [trainer]=train [dist]=dist [fl]=dist
  [tune]=tune
  [optimize]=optimize [bench]=optimize
  [tensor_json]=serve [instances]=serve [serve]=serve [board]=board
  [explain]=explain
  [kiln]=cli # the umbrella header: for programs, never for the library itself
)

# Library headers that only their owner may include (a prefix of the path in <...>).
declare -A ENGINE=(
  [oneapi/dnnl/]=backend [cuda]=backend [cublas]=backend [cudnn]=backend [nccl]=backend
  [sys/epoll.h]=net [curl/]=net [sqlite3.h]=registry [libpq-fe.h]=registry
  [libfyaml.h]=config [mpi.h]=dist [getopt.h]=cli [turbojpeg.h]=data
  [microhttpd.h]=net [gnutls/]=net
  [librdkafka/]=data
)

declare -A RANK
for i in "${!LAYERS[@]}"; do RANK[${LAYERS[$i]}]=$i; done

# check ROOT: prints violations, returns how many.
check() {
  local root=$1 bad=0 file where layer line text target tl owner prefix key
  while IFS= read -r file; do
    case $file in
      include/kiln/*) key=$(basename "$file" .h)
                      where=${PUBLIC[$key]:-}
                      if [[ -z $where ]]; then
                        echo "$file:1: public header kiln/$key.h has no layer: add it to PUBLIC in tests/layering.sh"
                        bad=$((bad + 1)); continue
                      fi ;;
      src/*) where=${file#src/}; where=${where%%/*}
             if [[ -z ${RANK[$where]:-} ]]; then
               echo "$file:1: folder src/$where/ has no layer: add it to LAYERS in tests/layering.sh (and docs/architecture.md)"
               bad=$((bad + 1)); continue
             fi ;;
    esac
    while IFS= read -r line; do
      text=${line#*:}; line=${line%%:*}
      if [[ $text =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\"([^\"]+)\" ]]; then
        target=${BASH_REMATCH[1]}
        case $target in
          kiln/*.h) key=${target#kiln/}; key=${key%.h}; tl=${PUBLIC[$key]:-}
                    if [[ -z $tl ]]; then
                      echo "$file:$line: includes \"$target\", a public header with no layer"
                      bad=$((bad + 1)); continue
                    fi ;;
          *.pb-c.h) tl=proto ;;
          */*) tl=${target%%/*}
               if [[ -z ${RANK[$tl]:-} || ! -d $root/src/$tl ]]; then
                 echo "$file:$line: includes \"$target\": no folder src/$tl/ in the layers"
                 bad=$((bad + 1)); continue
               fi ;;
          *) echo "$file:$line: includes \"$target\": name private headers by their folder (\"folder/$target\")"
             bad=$((bad + 1)); continue ;;
        esac
        if (( RANK[$tl] > RANK[$where] )); then
          echo "$file:$line: $where includes \"$target\" from $tl, a higher layer (order: ${LAYERS[*]})"
          bad=$((bad + 1))
        fi
      elif [[ $text =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\<([^\>]+)\> ]]; then
        target=${BASH_REMATCH[1]}
        for prefix in "${!ENGINE[@]}"; do
          owner=${ENGINE[$prefix]}
          if [[ $target == "$prefix"* && $where != "$owner" ]]; then
            echo "$file:$line: $where includes <$target>, which only src/$owner/ may use"
            bad=$((bad + 1))
          fi
        done
      fi
    done < <(grep -n '^[[:space:]]*#[[:space:]]*include' "$root/$file")
  done < <(cd "$root" && find src include/kiln -type f \( -name '*.c' -o -name '*.h' \) | sort)
  (( bad > 255 )) && bad=255
  return $bad
}

# check_calls OBJLIST: the same order over the link: what each object file uses (nm -u) against
# where it is defined. OBJLIST holds libkiln's object files, separated by ';' or newlines (CMake
# writes it from $<TARGET_OBJECTS:kiln>, so stale objects of moved files do not count).
check_calls() {
  tr ';' '\n' < "$1" | grep . | sort | while read -r o; do
    nm -g --defined-only "$o" | awk -v f="$o" 'NF == 3 { print "D", $3, f }'
    nm -u "$o" | awk -v f="$o" '{ print "U", $NF, f }'
  done | awk -v order="${LAYERS[*]}" '
    BEGIN { n = split(order, l, " "); for (i = 1; i <= n; i++) rank[l[i]] = i }
    # <build>/CMakeFiles/kiln.dir/src/<folder>/... -> folder; protoc-c output -> proto; the
    # embedded page -> board (paths are taken after the target folder, "<target>.dir/")
    function rel(f) { sub(/^.*\.dir\//, "", f); return f }
    function folder(f,   p) {
      f = rel(f)
      if (f ~ /^src\//) { split(f, p, "/"); return p[2] }
      if (f ~ /proto\//) return "proto"
      if (f ~ /board_assets/) return "board"
      return ""
    }
    function name(f) { f = rel(f); sub(/\.o$/, "", f); return f }
    $1 == "D" { def[$2] = $3; next }
    { use[++m] = $3 " " $2 }
    END {
      bad = 0
      for (i = 1; i <= m; i++) {
        split(use[i], u, " "); if (!(u[2] in def)) continue
        a = folder(u[1]); b = folder(def[u[2]])
        if (!(a in rank)) { print name(u[1]) ": object of unknown folder \"" a "\""; bad++; continue }
        if (!(b in rank)) { print name(def[u[2]]) ": object of unknown folder \"" b "\""; bad++; continue }
        if (rank[b] > rank[a]) {
          print name(u[1]) ": " a " calls " u[2] " of " name(def[u[2]]) ", a higher layer"; bad++
        }
      }
      exit bad > 255 ? 255 : bad
    }'
}

# The checker must fail on each kind of violation, with the offending file:line.
self_test() {
  local tmp pass=0 fail=0 out
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  mkdir -p "$tmp/src/core" "$tmp/src/graph" "$tmp/src/serve" "$tmp/src/net" "$tmp/include/kiln"
  printf '#include "kiln/status.h"\n' > "$tmp/include/kiln/graph.h"
  printf '#include "kiln/status.h"\n' > "$tmp/include/kiln/status.h"
  printf '#include <stdio.h>\n#include "kiln/graph.h"\n#include "core/x.h"\n' > "$tmp/src/graph/ok.c"
  expect() { # name, expected substring in the output ("" = clean)
    out=$(check "$tmp"); local rc=$?
    if [[ -z $2 && $rc == 0 ]] || [[ -n $2 && $rc != 0 && $out == *"$2"* ]]; then
      pass=$((pass + 1))
    else
      fail=$((fail + 1)); echo "FAIL self-test $1: rc=$rc, output: $out"
    fi
  }
  expect "clean tree" ""
  printf '#include <stdio.h>\n\n#include "serve/serve_internal.h"\n' > "$tmp/src/graph/up.c"
  expect "upward include" "src/graph/up.c:3: graph includes \"serve/serve_internal.h\" from serve"
  rm "$tmp/src/graph/up.c"
  printf '#include "kiln/registry.h"\n' > "$tmp/src/core/pub.c"
  expect "upward public header" "src/core/pub.c:1: core includes \"kiln/registry.h\" from registry"
  rm "$tmp/src/core/pub.c"
  printf '#include "kiln/serve.h"\n' > "$tmp/include/kiln/graph.h"
  expect "public header upward" "include/kiln/graph.h:1: graph includes \"kiln/serve.h\""
  printf '#include "kiln/status.h"\n' > "$tmp/include/kiln/graph.h"
  printf '  #  include <curl/curl.h>\n' > "$tmp/src/serve/mhd.c"
  expect "engine outside its owner" "src/serve/mhd.c:1: serve includes <curl/curl.h>, which only src/net/ may use"
  rm "$tmp/src/serve/mhd.c"
  mkdir -p "$tmp/src/newthing" && printf '\n' > "$tmp/src/newthing/a.c"
  expect "unplaced folder" "src/newthing/a.c:1: folder src/newthing/ has no layer"
  rm -r "$tmp/src/newthing"
  printf '\n' > "$tmp/include/kiln/mystery.h"
  expect "unplaced public header" "include/kiln/mystery.h:1: public header kiln/mystery.h has no layer"
  rm "$tmp/include/kiln/mystery.h"
  printf '#include "kiln/kiln.h"\n' > "$tmp/src/serve/all.c"
  expect "umbrella header in the library" "src/serve/all.c:1: serve includes \"kiln/kiln.h\" from cli"
  rm "$tmp/src/serve/all.c"
  printf '#include "local.h"\n' > "$tmp/src/net/l.c"
  expect "unqualified private header" "src/net/l.c:1: includes \"local.h\""
  rm "$tmp/src/net/l.c"
  expect "clean again" ""
  # calls: core/a.c uses a function that serve/b.c defines (objects as CMake lays them out)
  mkdir -p "$tmp/b/kiln.dir/src/core" "$tmp/b/kiln.dir/src/serve"
  printf 'int serve_up(void);\nint core_down(void) { return serve_up(); }\n' > "$tmp/a.c"
  printf 'int serve_up(void) { return 1; }\n' > "$tmp/b.c"
  cc -c "$tmp/a.c" -o "$tmp/b/kiln.dir/src/core/a.c.o" &&
    cc -c "$tmp/b.c" -o "$tmp/b/kiln.dir/src/serve/b.c.o" || echo "FAIL self-test: cc"
  printf '%s;%s' "$tmp/b/kiln.dir/src/serve/b.c.o" "$tmp/b/kiln.dir/src/core/a.c.o" > "$tmp/objs"
  out=$(check_calls "$tmp/objs"); rc=$?
  if [[ $rc != 0 && $out == *"src/core/a.c: core calls serve_up of src/serve/b.c, a higher layer"* ]]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1)); echo "FAIL self-test upward call: rc=$rc, output: $out"
  fi
  printf '%s' "$tmp/b/kiln.dir/src/serve/b.c.o" > "$tmp/objs" # the other way round is fine
  mv "$tmp/b/kiln.dir/src/core/a.c.o" "$tmp/b/kiln.dir/src/serve/a.c.o"
  printf ';%s' "$tmp/b/kiln.dir/src/serve/a.c.o" >> "$tmp/objs"
  if out=$(check_calls "$tmp/objs"); then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL self-test call in the same folder: $out"
  fi
  echo "layering self-test: $pass passed, $fail failed"
  return $((fail > 0))
}

if [[ ${1:-} == --self-test ]]; then
  self_test
  exit $?
fi
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
out=$(check "$root")
n=$?
if [[ -n ${2:-} ]]; then
  calls=$(check_calls "$2")
  m=$?
  [[ -n $calls ]] && out+=$'\n'$calls
  n=$((n + m))
fi
if (( n )); then
  printf '%s\n' "$out"
  echo "layering: $n violation(s); the order is ${LAYERS[*]} (docs/architecture.md)"
  echo "0 passed, 1 failed"
  exit 1
fi
echo "layering: $(cd "$root" && find src include/kiln -name '*.[ch]' | wc -l) files, every include${2:+ and every call} in its layer"
echo "1 passed, 0 failed"
