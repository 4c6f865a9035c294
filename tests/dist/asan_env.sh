# asan_env.sh — sourced by tests/cli/dist*.sh (needs $SRC, the source root). Under the ASan
# build (make asan) LeakSanitizer would report Open MPI's, PMIx's, hwloc's and libevent's own
# allocations at exit; tests/dist/lsan.supp suppresses leaks with a frame in those libraries,
# which needs whole allocation stacks (fast_unwind_on_malloc=0: Debian's libraries have no frame
# pointers). kiln's own leaks are still reported. No effect on a build without sanitizers.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
export LSAN_OPTIONS="suppressions=$SRC/tests/dist/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
