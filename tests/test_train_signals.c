/* test_train_signals.c — the trainer's stop signals never run on a thread that runs kernels
 * (src/train/signals.h): oneDNN < 3.11's JIT GEMM points rsp into the heap while it runs, so a
 * signal frame written there corrupts the heap.
 *
 * The main thread runs deterministic matmuls (single-threaded oneDNN GEMM chunks, the kernels
 * that move rsp) forward and backward for about a second while a sender thread signals the
 * process (SIGUSR1) every 20 us. Under kiln_train_signals every signal reaches the callback on
 * the watcher thread and none the main thread; the outputs stay bit-identical to the first pass
 * and the heap intact. `test_train_signals --unprotected` runs the same with a plain sigaction
 * handler (the trainer before the fix): it crashes, or aborts in malloc, on this machine within
 * a few runs, which is why the test exists. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "kiln/kiln.h"
#include "train/signals.h"

static volatile sig_atomic_t handled, on_main;
static pthread_t main_thread;
static volatile int sending;

static void on_signal(int sig) {
    (void)sig;
    handled++;
    if (pthread_equal(pthread_self(), main_thread)) on_main++;
}

static void *sender(void *arg) {
    (void)arg;
    const struct timespec gap = {0, 20 * 1000};
    while (sending) {
        kill(getpid(), SIGUSR1);
        nanosleep(&gap, NULL);
    }
    return NULL;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void run(int protect) {
    kiln_train_signals s;
    struct sigaction plain = {.sa_handler = on_signal}, old;
    main_thread = pthread_self();
    if (protect) { /* ignored before, as in kiln tune's trials: a late one does nothing after */
        signal(SIGUSR1, SIG_IGN);
        kiln_train_signals_begin(&s, on_signal, NULL, 0);
        kiln_train_signals_arm(&s);
    } else {
        sigemptyset(&plain.sa_mask);
        sigaction(SIGUSR1, &plain, &old);
    }
    /* x [74, 784] -> dense 64 (relu) -> dense 10: the MLP of the crash reports */
    kiln_graph *g = kiln_graph_new(3);
    kiln_node *x = kiln_param(g, "x", 2, (int64_t[]){74, 784}, (kiln_init){KILN_INIT_GLOROT_UNIFORM}, 1, 1, 1);
    kiln_node *h = kiln_dense_ex(g, x, &(kiln_dense_opts){.units = 64, .act = KILN_ACT_RELU});
    kiln_node *y = kiln_dense_ex(g, h, &(kiln_dense_opts){.units = 10});
    kiln_plan *p = kiln_plan_new(g, &(kiln_plan_opts){.outputs = &y, .n_outputs = 1, .loss = y, .batch = 1,
                                                      .deterministic = 1});
    CHECK_MSG(p != NULL, "%s", kiln_last_error());
    if (!p) return;
    CHECK_OK(kiln_plan_forward(p));
    float first[740];
    memcpy(first, kiln_plan_data(p, y), sizeof first);
    sending = 1;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, sender, NULL) == 0);
    int passes = 0, same = 1;
    for (double t0 = now_s(); now_s() - t0 < 1.0; passes++) {
        CHECK_OK(kiln_plan_forward(p));
        CHECK_OK(kiln_plan_backward(p));
        same &= memcmp(first, kiln_plan_data(p, y), sizeof first) == 0;
        free(malloc(4096 + (size_t)passes % 4096)); /* the heap, used as the trainer uses it */
    }
    sending = 0;
    pthread_join(t, NULL);
    if (protect) {
        struct timespec settle = {0, 100 * 1000 * 1000}; /* the watcher takes the last ones */
        nanosleep(&settle, NULL);
        kiln_train_signals_end(&s);
    } else {
        sigaction(SIGUSR1, &old, NULL);
    }
    CHECK_MSG(same, "the outputs changed under signals (%d passes)", passes);
    CHECK_MSG(handled > 0, "no signal reached the callback (%d passes)", passes);
    if (protect) CHECK_MSG(on_main == 0, "%d of %d signals ran on the kernels' thread", (int)on_main, (int)handled);
    kiln_plan_free(p);
    kiln_graph_free(g);
}

static void test_signals_off_the_kernels_thread(void) { run(1); }
static void test_signals_on_the_kernels_thread(void) { run(0); }

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--unprotected")) {
        RUN(test_signals_on_the_kernels_thread);
        return kiln_test_summary();
    }
    RUN(test_signals_off_the_kernels_thread);
    return kiln_test_summary();
}
