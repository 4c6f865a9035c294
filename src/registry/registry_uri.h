/* registry_uri.h — where the registry lives (library-private; registry_uri.c): the registry URI
 * and where it came from.
 *
 * Forms: "sqlite:" (<runs_dir>/kiln.db, the default), "sqlite:PATH" (that file), and
 * "postgresql://..." or "postgres://..." (a libpq connection URI; the extra query parameter
 * schema=NAME puts the registry in that schema, created when missing, and is not passed to
 * libpq; schema=auto names it after the runs folder: "runs_" and the 64-bit FNV-1a hash of its
 * real path in 16 hex digits, so one database holds the registries of many runs folders).
 * "mlflow+http(s)://HOST:PORT" (or plain "http(s)://HOST:PORT"): an MLflow tracking server
 * (MLflow's own, or kiln board's MLflow API): a training run is mirrored to it (mlflow_client.c,
 * conninfo holds the mlflow+ URI) while the commands that read the registry keep using the
 * local default, <runs_dir>/kiln.db, indexed from the folders. KILN_REGISTRY=off (or 0, false, no) is "off": training does not follow its run.
 *
 * Which one: the KILN_REGISTRY environment variable (kiln's --registry option sets it, so child
 * processes, tune trials and MPI ranks, use the same), else the registry: key of the user config
 * file ($KILN_CONFIG, else $XDG_CONFIG_HOME/kiln/config.yaml, else ~/.config/kiln/config.yaml; a
 * missing file is no setting), else sqlite:.
 */
#ifndef KILN_REGISTRY_URI_H
#define KILN_REGISTRY_URI_H

#include "kiln/status.h"

typedef enum { REG_URI_SQLITE = 0, REG_URI_PG, REG_URI_OFF, REG_URI_MLFLOW } reg_uri_kind;

typedef struct {
    reg_uri_kind kind;
    char path[4096];     /* sqlite:PATH: PATH ("" for <runs_dir>/kiln.db) */
    char conninfo[4096]; /* postgresql: the URI without schema=; mlflow: the mlflow+http(s) URI */
    char schema[128];    /* postgresql: schema=NAME, or "" */
    char display[4096];  /* the URI with any password replaced by "***" */
    char origin[4200];   /* "KILN_REGISTRY", "<file> (registry:)" or "default" */
} kiln_reg_uri;

/* Parses text. KILN_ERR_INVALID naming the forms for anything else. */
kiln_status kiln_reg_uri_parse(const char *text, kiln_reg_uri *out);
/* The registry this process uses (see the top of this file). */
kiln_status kiln_reg_uri_current(kiln_reg_uri *out);

#endif
