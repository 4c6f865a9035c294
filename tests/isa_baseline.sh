#!/usr/bin/env bash
# isa_baseline.sh — kiln's own machine code stays within the x86-64 baseline (SSE2), so a kiln
# built on one machine runs on any x86-64 machine. oneDNN is not checked: it is a Debian library
# that picks its kernels at run time.
#
#   bash tests/isa_baseline.sh OBJLIST...   disassemble the objects listed (';' or newline
#                                           separated: build/kiln_objects.txt and the CLI's)
#   bash tests/isa_baseline.sh --self-test  the checker finds AVX2, SSE4.2 and BMI code, and
#                                           allows it in a dispatched function
#
# Beyond the baseline means: a VEX/EVEX encoding (AT&T mnemonics starting with 'v', any %ymm,
# %zmm or mask register), or an instruction of SSE3, SSSE3, SSE4.1/4.2, POPCNT, LZCNT, BMI1/2,
# MOVBE, ADX, F16C or FMA by name. A function built for a newer CPU on purpose, and chosen at run
# time only where that CPU is present, is allowed when its name says so: a suffix _sse42, _avx2,
# _avx512 (kiln's convention) or GCC's target_clones names (.avx2.N, .arch_*.N), with whatever
# GCC appends to the parts it outlines (OpenMP bodies: name._omp_fn.N).
set -uo pipefail

BEYOND='^(v[a-z0-9]+|crc32[bwlq]?|popcnt[wlq]?|lzcnt[wlq]?|tzcnt[wlq]?|andn[lq]?|bextr[lq]?|blsi[lq]?|blsmsk[lq]?|blsr[lq]?|bzhi[lq]?|pdep[lq]?|pext[lq]?|rorx[lq]?|sarx[lq]?|shlx[lq]?|shrx[lq]?|mulx[lq]?|movbe[wlq]?|adcx[lq]?|adox[lq]?|lddqu|movddup|movshdup|movsldup|addsubp[sd]|hadd[sp][sd]|hsub[sp][sd]|fisttp[slq]?|pshufb|palignr|phadd[wd]|phaddsw|phsub[wd]|phsubsw|pmaddubsw|pmulhrsw|psign[bwd]|pabs[bwd]|blendv?p[sd]|pblendvb|pblendw|dpp[sd]|extractps|insertps|mpsadbw|packusdw|pcmpeqq|pcmpgtq|pcmp[ei]str[im]|pextr[bdq]|pinsr[bdq]|phminposuw|pmaxs[bd]|pmaxu[wd]|pmins[bd]|pminu[wd]|pmov[sz]x[bwd][wdq]|pmuldq|pmulld|ptest|round[sp][sd]|movntdqa)$'
ALLOWED='(_sse42|_avx2|_avx512[a-z0-9_]*|\.avx[0-9a-z_]*\.[0-9]+|\.arch_[a-z0-9_]+\.[0-9]+|\.sse4[._0-9a-z]*\.[0-9]+)$'

# check OBJECT...: prints "object: function: instruction" for each offence; returns 1 if any.
check() {
  local bad=0 out
  for o in "$@"; do
    out=$(objdump -d --no-show-raw-insn "$o" | awk -v obj="$o" -v beyond="$BEYOND" -v allowed="$ALLOWED" '
      /^[0-9a-f]+ <.*>:$/ { fn = $2; gsub(/[<>:]/, "", fn); next }
      /^ +[0-9a-f]+:\t/ {
        split($0, part, "\t"); insn = part[2]; mn = insn; sub(/[ \t].*$/, "", mn)
        if (mn ~ /^(rep|repz|repnz|lock|data16|notrack|bnd)$/) { rest = insn; sub(/^[a-z0-9]+ +/, "", rest); mn = rest; sub(/[ \t].*$/, "", mn) }
        hit = (mn ~ beyond) || insn ~ /%[yz]mm[0-9]|%k[0-7]/
        base = fn # what GCC appends to a function it splits or outlines (OpenMP bodies) is not its name
        while (sub(/\.(_omp_fn|part|constprop|isra|cold|lto_priv)(\.[0-9]+)?$/, "", base)) {}
        if (hit && base !~ allowed) { print obj ": " fn ": " insn; n++ }
      }
      END { exit n > 0 }')
    if [[ $? != 0 ]]; then bad=1; printf '%s\n' "$out" | head -20; fi
  done
  return $bad
}

self_test() {
  local tmp pass=0 fail=0
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  cat > "$tmp/t.c" <<'EOF'
#include <stdint.h>
#include <string.h>
__attribute__((target("avx2"))) void add_avx2_loop(float *a, const float *b, int n) {
    for (int i = 0; i < n; i++) a[i] += b[i] * 3.0f;
}
__attribute__((target("sse4.2"))) uint32_t crc_bad(uint32_t c, uint64_t w) {
    return (uint32_t)__builtin_ia32_crc32di(c, w);
}
__attribute__((target("bmi2"))) uint64_t shift_bad(uint64_t a, uint64_t b) { return a << (b & 63); }
__attribute__((target("sse4.2"))) uint32_t crc_sse42(uint32_t c, uint64_t w) {
    return (uint32_t)__builtin_ia32_crc32di(c, w);
}
void plain(float *a, const float *b, int n) { for (int i = 0; i < n; i++) a[i] += b[i]; }
__attribute__((target("avx2"))) void scale_avx2(float *a, int n) {
#pragma omp parallel for simd
    for (int i = 0; i < n; i++) a[i] *= 3.0f;
}
EOF
  if ! cc -O2 -fopenmp -c "$tmp/t.c" -o "$tmp/t.o"; then echo "FAIL self-test: cc"; return 1; fi
  local out
  out=$(check "$tmp/t.o")
  for want in "add_avx2_loop: v" "crc_bad: crc32" "shift_bad: shlx"; do
    if [[ $out == *"$want"* ]]; then pass=$((pass + 1)); else
      fail=$((fail + 1)); echo "FAIL self-test: no '$want' in: $out"; fi
  done
  if [[ $out != *"crc_sse42"* && $out != *"plain"* && $out != *"scale_avx2"* ]]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL self-test: an allowed or plain function was flagged: $out"; fi
  cc -O2 -c -x c - -o "$tmp/ok.o" <<< 'void plain(float *a, int n) { for (int i = 0; i < n; i++) a[i] *= 2; }'
  if check "$tmp/ok.o" > /dev/null; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL self-test: baseline code was flagged"; fi
  echo "isa_baseline self-test: $pass passed, $fail failed"
  return $((fail > 0))
}

if [[ ${1:-} == --self-test ]]; then
  self_test
  exit $?
fi
objs=()
for list in "$@"; do
  while IFS= read -r o; do [[ -n $o ]] && objs+=("$o"); done < <(tr ';' '\n' < "$list")
done
if (( ${#objs[@]} == 0 )); then echo "isa_baseline: no object files listed"; echo "0 passed, 1 failed"; exit 1; fi
if check "${objs[@]}"; then
  echo "isa_baseline: ${#objs[@]} objects, no instruction beyond x86-64 outside dispatched functions"
  echo "1 passed, 0 failed"
else
  echo "isa_baseline: instructions beyond the x86-64 baseline (above); build without -march, or"
  echo "put them in a function chosen at run time and named for it (see the top of this file)"
  echo "0 passed, 1 failed"
  exit 1
fi
