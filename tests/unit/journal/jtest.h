/*
 * jtest.h - small helpers shared by the journal's tests: temporary data directories that are
 * removed afterwards, and a recursive remove that does not shell out.
 */
#ifndef FERRY_TESTS_JTEST_H
#define FERRY_TESTS_JTEST_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int jtest_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void jtest_rm_rf(const char *dir)
{
    nftw(dir, jtest_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Makes a fresh directory under $TMPDIR (or /tmp); returns a malloc'd path. */
static inline char *jtest_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    size_t n = strlen(base) + 32;
    char *p = malloc(n);
    if (!p)
        abort();
    snprintf(p, n, "%s/ferry-jt-XXXXXX", base);
    if (!mkdtemp(p))
        abort();
    return p;
}

static inline long long jtest_file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

#endif
