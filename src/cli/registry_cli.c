/* registry_cli.c — helpers of kiln runs and kiln models (see registry_cli.h). */
#include "cli/registry_cli.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli.h"

const char *kiln_cli_runs_dir(const char *given, const char *ref, char *buf, size_t cap) {
    if (given) return given;
    char probe[4200];
    struct stat st;
    if (!ref || snprintf(probe, sizeof probe, "%s/run.json", ref) >= (int)sizeof probe ||
        stat(probe, &st) != 0 || !S_ISREG(st.st_mode) || snprintf(buf, cap, "%s", ref) >= (int)cap)
        return "runs";
    /* <runs_dir>/<experiment>/<run>: drop the last two names */
    for (int up = 0; up < 2; up++) {
        size_t n = strlen(buf);
        while (n > 1 && buf[n - 1] == '/') buf[--n] = 0;
        char *slash = strrchr(buf, '/');
        if (!slash) {
            snprintf(buf, cap, "%s/../..", ref);
            return buf;
        }
        slash[slash == buf] = 0; /* "/x" -> "/" */
    }
    return buf;
}

int kiln_cli_exit_code(kiln_status s) {
    return s == KILN_OK                                      ? KILN_EXIT_OK
           : s == KILN_ERR_INVALID || s == KILN_ERR_NOTFOUND ? KILN_EXIT_USAGE
                                                             : KILN_EXIT_FAIL;
}

int kiln_cli_fail(const char *cmd, kiln_status s) {
    fprintf(stderr, "kiln %s: %s\n", cmd, kiln_last_error());
    return kiln_cli_exit_code(s);
}

int kiln_cli_open_registry(const char *cmd, const char *runs_dir, kiln_registry **out) {
    kiln_status s = kiln_registry_open(runs_dir, out);
    if (s) return kiln_cli_fail(cmd, s);
    kiln_registry_sync_stats stats;
    if ((s = kiln_registry_sync(*out, &stats))) {
        kiln_registry_close(*out);
        *out = NULL;
        return kiln_cli_fail(cmd, s);
    }
    if (kiln_registry_read_only(*out))
        fprintf(stderr,
                "kiln %s: note: %s is read-only: reading its run folders and kiln.db without "
                "changing them\n",
                cmd, kiln_registry_runs_dir(*out));
    if (stats.skipped)
        fprintf(stderr, "kiln %s: warning: %d run folder%s could not be read (%s)\n", cmd,
                stats.skipped, stats.skipped == 1 ? "" : "s", stats.warning);
    return KILN_EXIT_OK;
}

void kiln_cli_time(const char *iso, int seconds, char *out, size_t cap) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!iso) {
        snprintf(out, cap, "-");
        return;
    }
    const char *end = strptime(iso, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!end || *end) {
        snprintf(out, cap, "%s", iso);
        return;
    }
    time_t t = timegm(&tm);
    struct tm lt;
    localtime_r(&t, &lt);
    strftime(out, cap, seconds ? "%Y-%m-%d %H:%M:%S" : "%Y-%m-%d %H:%M", &lt);
}

void kiln_cli_duration(double s, char *out, size_t cap) {
    if (!isfinite(s) || s < 0) {
        snprintf(out, cap, "-");
        return;
    }
    long long n = (long long)s;
    if (s < 1)
        snprintf(out, cap, "<1s"); /* times are kept to the second */
    else if (n < 60)
        snprintf(out, cap, "%llds", n);
    else if (n < 3600)
        snprintf(out, cap, "%lldm%02llds", n / 60, n % 60);
    else if (n < 86400)
        snprintf(out, cap, "%lldh%02lldm", n / 3600, n / 60 % 60);
    else
        snprintf(out, cap, "%lldd%02lldh", n / 86400, n / 3600 % 24);
}

void kiln_cli_value(double v, char *out, size_t cap) {
    double a = fabs(v);
    if (isnan(v))
        snprintf(out, cap, "-");
    else if (v == 0)
        snprintf(out, cap, "0");
    else if (isinf(v) || a >= 1e7 || a < 1e-3)
        snprintf(out, cap, "%.3e", v);
    else if (a >= 1000)
        snprintf(out, cap, "%.1f", v);
    else
        snprintf(out, cap, "%.4f", v);
}

void kiln_cli_json_string(FILE *f, const char *s) {
    if (!s) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fputc('\\', f), fputc(*p, f);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

void kiln_cli_json_number(FILE *f, double v) {
    if (!isfinite(v)) {
        fputs("null", f);
        return;
    }
    char buf[32];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    fputs(buf, f);
}

int kiln_cli_run_strings(const kiln_registry_run *r, const char *out[KILN_CLI_RUN_STRINGS][2]) {
    const char *f[KILN_CLI_RUN_STRINGS][2] = {{"experiment", r->experiment},
                                              {"name", r->name},
                                              {"status", r->status},
                                              {"message", r->message},
                                              {"start_time", r->start_time},
                                              {"end_time", r->end_time},
                                              {"host", r->host},
                                              {"kiln_version", r->kiln_version},
                                              {"seed", r->seed},
                                              {"config_hash", r->config_hash},
                                              {"command", r->command},
                                              {"checkpoint", r->checkpoint}};
    memcpy(out, f, sizeof f);
    return KILN_CLI_RUN_STRINGS;
}
