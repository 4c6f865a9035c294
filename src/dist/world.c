/* world.c — who this process is in a job: launcher detection, MPI start and end (kiln/dist.h).
 *
 * MPI is initialized only when a launcher's variables say this process is one rank of a job;
 * a plain `kiln train` never loads a transport. Errors on MPI_COMM_WORLD return (no MPI error
 * ends the process behind kiln's back); the wait loops in dp.c turn them into messages that
 * name the rank and host. Every rank's host and pid are gathered at start for those messages.
 */
#include <mpi.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln/dist.h"

#define HOST_MAX 256

static char *hosts;  /* [size][HOST_MAX] */
static long *pids;   /* [size] */
static int n_world;

static int env_int(const char *name, int dflt) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

static int cpus_allowed(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static void single(kiln_dist_world *w) {
    w->mpi = 0, w->rank = 0, w->size = 1, w->local_rank = 0, w->local_size = 1, w->hosts = 1;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    w->threads = n > 0 ? (int)n : 1;
    int allowed = cpus_allowed();
    if (allowed < w->threads) w->threads = allowed;
}

kiln_status kiln_dist_init(kiln_dist_world *w) {
    memset(w, 0, sizeof *w);
    gethostname(w->host, sizeof w->host - 1);
    w->pid = (long)getpid();
    single(w);
    const char *launcher = NULL;
    if (getenv("OMPI_COMM_WORLD_SIZE")) launcher = "mpirun";
    else if (getenv("PMIX_RANK")) launcher = getenv("SLURM_STEP_ID") ? "srun" : "pmix";
    else if (getenv("PMI_RANK")) launcher = "pmi";
    if (!launcher) {
        snprintf(w->launcher, sizeof w->launcher, "none");
        if (getenv("SLURM_STEP_ID") && env_int("SLURM_NTASKS", 1) > 1)
            return kiln_error(KILN_ERR_INVALID,
                              "started by srun as task %d of %d without PMIx, so the tasks cannot "
                              "find each other: run `srun --mpi=pmix kiln train ...` (or set "
                              "MpiDefault=pmix in slurm.conf)",
                              env_int("SLURM_PROCID", 0), env_int("SLURM_NTASKS", 1));
        return KILN_OK;
    }
    snprintf(w->launcher, sizeof w->launcher, "%s", launcher);
    int provided = 0, ok = 0;
    MPI_Initialized(&ok);
    if (!ok && MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return kiln_error(KILN_ERR_BACKEND, "MPI_Init failed (launched by %s)", launcher);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    w->mpi = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &w->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &w->size);
    MPI_Comm local;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w->rank, MPI_INFO_NULL, &local) ==
        MPI_SUCCESS) {
        MPI_Comm_rank(local, &w->local_rank);
        MPI_Comm_size(local, &w->local_size);
        MPI_Comm_free(&local);
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int per = (int)((cores > 0 ? cores : 1) / (w->local_size > 0 ? w->local_size : 1));
    int allowed = cpus_allowed();
    w->threads = per < 1 ? 1 : per;
    if (allowed < w->threads) w->threads = allowed; /* a rank bound to fewer cores */
    /* everyone's host and pid, for messages that name a rank */
    free(hosts), free(pids);
    hosts = calloc((size_t)w->size, HOST_MAX);
    pids = calloc((size_t)w->size, sizeof *pids);
    if (!hosts || !pids) return kiln_error(KILN_ERR_NOMEM, "dist: out of memory");
    n_world = w->size;
    char me[HOST_MAX] = {0};
    snprintf(me, sizeof me, "%s", w->host);
    if (MPI_Allgather(me, HOST_MAX, MPI_CHAR, hosts, HOST_MAX, MPI_CHAR, MPI_COMM_WORLD) ||
        MPI_Allgather(&w->pid, 1, MPI_LONG, pids, 1, MPI_LONG, MPI_COMM_WORLD))
        return kiln_error(KILN_ERR_BACKEND, "dist: the ranks could not exchange their hosts");
    w->hosts = 0;
    for (int r = 0; r < w->size; r++) {
        int seen = 0;
        for (int q = 0; q < r && !seen; q++) seen = !strcmp(hosts + r * HOST_MAX, hosts + q * HOST_MAX);
        w->hosts += !seen;
    }
    return KILN_OK;
}

const char *kiln_dist_host_of(int r) {
    return hosts && r >= 0 && r < n_world ? hosts + (size_t)r * HOST_MAX : "?";
}

long kiln_dist_pid_of(int r) {
    return pids && r >= 0 && r < n_world ? pids[r] : 0;
}

void kiln_dist_finalize(const kiln_dist_world *w, int failed) {
    if (!w->mpi) return;
    if (failed && w->size > 1) {
        fflush(stdout), fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, failed);
    }
    MPI_Finalize();
    free(hosts), free(pids);
    hosts = NULL, pids = NULL, n_world = 0;
}

kiln_status kiln_dist_describe(const kiln_dist_world *w, FILE *f) {
    int threads[1] = {w->threads}, *all = calloc((size_t)w->size, sizeof *all);
    if (!all) return kiln_error(KILN_ERR_NOMEM, "dist: out of memory");
    if (w->mpi && MPI_Gather(threads, 1, MPI_INT, all, 1, MPI_INT, 0, MPI_COMM_WORLD)) {
        free(all);
        return kiln_error(KILN_ERR_BACKEND, "dist: the ranks could not report their threads");
    }
    if (!w->mpi) all[0] = w->threads;
    if (w->rank == 0 && f) {
        fprintf(f, "world: %d rank%s on %d host%s (launcher: %s)\n", w->size, w->size == 1 ? "" : "s",
                w->hosts, w->hosts == 1 ? "" : "s", w->launcher);
        for (int r = 0; r < w->size; r++)
            fprintf(f, "  rank %d: host %s, pid %ld, %d thread%s\n", r,
                    w->mpi ? kiln_dist_host_of(r) : w->host, w->mpi ? kiln_dist_pid_of(r) : w->pid,
                    all[r], all[r] == 1 ? "" : "s");
        fflush(f);
    }
    free(all);
    return KILN_OK;
}
