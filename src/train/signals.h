/* signals.h — the trainer's stop signals, kept off the threads that run kernels.
 *
 * Why: a signal handler runs on the stack of whatever thread the signal lands on, and some of
 * oneDNN's JIT GEMM kernels (jit_avx_gemm_f32, jit_avx512_common_gemm_f32 in oneDNN < 3.11;
 * upstream issue #4845, fixed by PR #4855) point rsp into a heap workspace while they run: the
 * kernel's signal frame is then written into the heap. Debian 12 ships oneDNN 2.6, so a Ctrl-C,
 * Slurm's SIGTERM or kiln tune's SIGUSR1 arriving during a matmul corrupted the heap ("corrupted
 * size vs. prev_size", or a crash in the next primitive).
 *
 * How: kiln_train blocks SIGINT, SIGTERM and SIGUSR1 in its thread before it builds anything, so
 * every thread it starts (OpenMP's pool, the data loader's workers) inherits the block, and one
 * watcher thread takes the signals with sigtimedwait and hands them to the trainer's callback.
 * Until the trainer arms it (its handlers in place) and after it disarms it, the watcher gives a
 * signal the disposition it had before kiln_train (a Ctrl-C during setup ends the process; a
 * SIGUSR1 that kiln tune's trial starts out ignoring stays ignored). The
 * callback is also installed with sigaction for threads that existed before kiln_train and do not
 * block the signals (an MPI library's progress threads): they run no kernels.
 */
#ifndef KILN_TRAIN_SIGNALS_H
#define KILN_TRAIN_SIGNALS_H

#include <pthread.h>
#include <signal.h>

#define KILN_TRAIN_SIGNALS 3 /* SIGINT, SIGTERM, SIGUSR1 */

typedef struct {
    void (*on)(int sig);     /* the caller's callback: sets flags only */
    int sigs[KILN_TRAIN_SIGNALS], n_sigs;
    sigset_t set, old_mask;  /* sigs; the thread's mask before */
    struct sigaction old[KILN_TRAIN_SIGNALS]; /* the handlers before arming */
    pthread_t watcher;
    int started;
    volatile sig_atomic_t armed, quit;
} kiln_train_signals;

/* Blocks the signals in the calling thread and starts the watcher (unarmed). sigs: NULL for
 * the trainer's three, else n of them (kiln fl server: SIGINT and SIGTERM, whose server thread
 * evaluates the global model with the same kernels). */
void kiln_train_signals_begin(kiln_train_signals *s, void (*on)(int sig), const int *sigs, int n);
/* From here the signals go to `on` (and the sigaction fallback is installed). */
void kiln_train_signals_arm(kiln_train_signals *s);
/* Back to the default action and the old handlers; signals still go through the watcher. */
void kiln_train_signals_disarm(kiln_train_signals *s);
/* Stops the watcher and restores the thread's mask: a pending signal then acts as it would have. */
void kiln_train_signals_end(kiln_train_signals *s);

#endif
