
/*
 * Copyright (C) ngx_studio_testusers_module authors
 *
 * A minimal TAP producer for the C unit tests: "ok N - name" or
 * "not ok N - name", "# ..." diagnostics, and the plan "1..N" printed
 * last, once the number of tests is known.  tap_done() is the exit code.
 */


#ifndef _STU_TAP_H_INCLUDED_
#define _STU_TAP_H_INCLUDED_


#include <stdarg.h>
#include <stdio.h>


static unsigned  tap_tests;
static unsigned  tap_failures;


static void
tap_diag(const char *fmt, ...)
{
    va_list  args;

    fputs("# ", stdout);

    va_start(args, fmt);
    vprintf(fmt, args);
    va_end(args);

    fputc('\n', stdout);
    fflush(stdout);
}


static int
tap_ok(int pass, const char *fmt, ...)
{
    va_list  args;

    tap_tests++;

    if (!pass) {
        tap_failures++;
    }

    printf("%sok %u - ", pass ? "" : "not ", tap_tests);

    va_start(args, fmt);
    vprintf(fmt, args);
    va_end(args);

    fputc('\n', stdout);
    fflush(stdout);

    return pass;
}


static int
tap_done(void)
{
    printf("1..%u\n", tap_tests);

    if (tap_failures) {
        tap_diag("failed %u of %u tests", tap_failures, tap_tests);
        return 1;
    }

    return 0;
}


#endif /* _STU_TAP_H_INCLUDED_ */
