/* signals.c — see signals.h. The watcher polls sigtimedwait every 50 ms so that `end` can stop it
 * without sending it a signal of its own. */
#include "train/signals.h"

#include <string.h>
#include <time.h>

static const int stop_signals[KILN_TRAIN_SIGNALS] = {SIGINT, SIGTERM, SIGUSR1};

static void *watch(void *arg) {
    kiln_train_signals *s = arg;
    const struct timespec tick = {0, 50 * 1000 * 1000};
    while (!s->quit) {
        int sig = sigtimedwait(&s->set, NULL, &tick);
        if (sig < 0) continue; /* EAGAIN: the tick; EINTR */
        if (s->armed) {
            s->on(sig);
            continue;
        }
        /* Not training yet or any more: the disposition in place (what it was before
         * kiln_train: the default ends the process, SIG_IGN drops it, a caller's handler runs),
         * delivered properly: unblocked in this thread only, so the kernel hands it here. */
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        pthread_sigmask(SIG_UNBLOCK, &one, NULL);
        raise(sig);
        pthread_sigmask(SIG_BLOCK, &one, NULL);
    }
    return NULL;
}

void kiln_train_signals_begin(kiln_train_signals *s, void (*on)(int sig), const int *sigs, int n) {
    memset(s, 0, sizeof *s);
    s->on = on;
    if (!sigs || n < 1 || n > KILN_TRAIN_SIGNALS) sigs = stop_signals, n = KILN_TRAIN_SIGNALS;
    memcpy(s->sigs, sigs, (size_t)n * sizeof *sigs);
    s->n_sigs = n;
    sigemptyset(&s->set);
    for (int i = 0; i < n; i++) sigaddset(&s->set, s->sigs[i]);
    pthread_sigmask(SIG_BLOCK, &s->set, &s->old_mask);
    s->started = pthread_create(&s->watcher, NULL, watch, s) == 0;
    if (!s->started) pthread_sigmask(SIG_SETMASK, &s->old_mask, NULL); /* no watcher: handlers */
}

void kiln_train_signals_arm(kiln_train_signals *s) {
    struct sigaction sa = {.sa_handler = s->on};
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < s->n_sigs; i++) sigaction(s->sigs[i], &sa, &s->old[i]);
    s->armed = 1;
}

void kiln_train_signals_disarm(kiln_train_signals *s) {
    if (!s->armed) return;
    s->armed = 0;
    for (int i = 0; i < s->n_sigs; i++) sigaction(s->sigs[i], &s->old[i], NULL);
}

void kiln_train_signals_end(kiln_train_signals *s) {
    kiln_train_signals_disarm(s);
    s->quit = 1;
    if (s->started) pthread_join(s->watcher, NULL);
    pthread_sigmask(SIG_SETMASK, &s->old_mask, NULL);
}
