/* kiln/dist.h — data-parallel training on MPI, launched by mpirun or srun (docs/distributed.md).
 *
 * The world: kiln_dist_init finds out from the environment whether a launcher started this
 * process as one rank of several (Open MPI's mpirun: OMPI_COMM_WORLD_SIZE; PMIx, as srun
 * --mpi=pmix sets it: PMIX_RANK; MPICH-style PMI: PMI_RANK) and initializes MPI only then;
 * otherwise the process is an ordinary single one (rank 0 of 1) and MPI is never touched.
 * srun with several tasks but no PMIx is an error (the ranks could not find each other).
 *
 * Training: kiln_dist_hooks fills the trainer's hooks (kiln/trainer.h) so that every rank runs
 * the same steps on its part of each global batch: rank 0's initial (or restored) state is
 * broadcast and checked by checksum; the loaders deliver part r of every global batch of the
 * epoch's permutation; gradients are summed over the ranks with MPI_Iallreduce per bucket
 * while backward runs, weighted by each rank's rows; validation and test are sharded and their
 * metrics reduced; rank 0 alone writes the run folder, the other ranks log.rank-K.txt.
 *
 * Only src/dist/ includes <mpi.h>.
 */
#ifndef KILN_DIST_H
#define KILN_DIST_H

#include <stdio.h>

#include "kiln/status.h"
#include "kiln/trainer.h"

typedef struct {
    int mpi;                 /* 1: MPI initialized (launched as one rank of a job) */
    int rank, size;          /* 0 and 1 for a single process */
    int local_rank, local_size; /* among the ranks on this host */
    int threads;             /* compute threads of this rank: cores / local ranks (at least 1),
                                no more than the cores this rank may run on */
    int hosts;               /* distinct hosts */
    char launcher[16];       /* "mpirun", "srun", "pmi", "none" */
    char host[256];
    long pid;
} kiln_dist_world;

/* Detects the launcher and initializes MPI when there is one. Errors: srun without PMIx, MPI
 * that does not start. Call once, before any thread is started. */
kiln_status kiln_dist_init(kiln_dist_world *w);
/* Ends MPI (when initialized). failed != 0 with several ranks: MPI_Abort, so that no rank is left
 * waiting for this one. */
void kiln_dist_finalize(const kiln_dist_world *w, int failed);
/* Writes (on rank 0, to f unless NULL; a collective) one line for the world and one per rank:
 * rank, host, pid, threads. */
kiln_status kiln_dist_describe(const kiln_dist_world *w, FILE *f);
/* The host and pid of rank r ("?" and 0 out of range, or before kiln_dist_init). */
const char *kiln_dist_host_of(int r);
long kiln_dist_pid_of(int r);

/* Hooks for kiln_train over the world (o->hooks = kiln_dist_hooks(...)). quiet: whether the
 * trainer prints (ranks other than 0 never do). Freed by kiln_dist_hooks_free after training;
 * the hooks' counters (kiln_dist_stats) stay readable until then. */
kiln_train_hooks *kiln_dist_hooks(const kiln_dist_world *w);
void kiln_dist_hooks_free(kiln_train_hooks *h);

typedef struct {
    long long steps;
    double wait_s;     /* time spent waiting for gradient reductions to finish */
    double step_s;     /* from the first step_begin to the last step_end */
    long long buckets; /* reductions started */
} kiln_dist_stats;
kiln_dist_stats kiln_dist_get_stats(const kiln_train_hooks *h);
/* 1 when training failed on every rank together (a setup error all ranks saw): the job can end
 * normally; 0 when a failure may have been this rank's alone (then kiln_dist_finalize aborts). */
int kiln_dist_failed_together(const kiln_train_hooks *h);

#endif
