/* check_min.c — kiln_test_run and kiln_test_summary alone (tests/util/check.c without the
 * gradient checker and its dependencies), to build tests/test_http_parse.c by hand with a
 * sanitizer that the library is not built with (ThreadSanitizer); see the top of that file. */
#include <stdio.h>

#include "check.h"

int kiln_test_failed_now;
static int passed, failed;

void kiln_test_run(const char *name, void (*fn)(void)) {
    kiln_test_failed_now = 0;
    kiln_error_clear();
    fn();
    if (kiln_test_failed_now)
        failed++, printf("FAIL %s\n", name);
    else
        passed++, printf("ok   %s\n", name);
    fflush(stdout);
}

int kiln_test_summary(void) {
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
