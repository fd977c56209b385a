/*
 * ferry-delta.c - main() of `ferry-delta`: make, apply and inspect ferry deltas
 * (transport/delta.h).
 *
 * Used on the build host to make release artifacts (`ferry-delta make`, `ferry-delta full`), by
 * tests and benchmarks to apply them, and by operators to look inside one (`ferry-delta info`).
 * Only argument parsing lives here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "common/util.h"
#include "transport/delta.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ferry-delta make [OPTIONS] BASE TARGET OUT   delta from BASE to TARGET\n"
            "       ferry-delta full [OPTIONS] TARGET OUT        full-image artifact (no base)\n"
            "       ferry-delta apply [--stats] BASE|- DELTA OUT  rebuild the target into OUT\n"
            "       ferry-delta info [--json] DELTA              show a delta's header\n"
            "       ferry-delta --help | --version\n"
            "\n"
            "options for make/full:\n"
            "  --level N      zstd level 1..22 (default 19)\n"
            "  --window SIZE  target bytes per chunk, e.g. 8MiB (default; max 16MiB)\n"
            "  --max-ref SIZE base bytes referenced per chunk (default 48MiB, max 64MiB)\n"
            "  --no-exe       no executable chunks (by default, windows holding x86-64 or\n"
            "                 aarch64 ELF code are also tried with their branch and address\n"
            "                 operands converted, and kept when smaller; format version 2)\n"
            "  --stats        print sizes and times on stderr\n"
            "\n"
            "Applying needs one window plus ~1 MiB of anonymous memory (three windows when the\n"
            "delta has diff-coded chunks); the base is read through file mappings. A failed apply\n"
            "removes OUT (or truncates it, or zeroes the start of a block device) and says so.\n"
            "Exit status: 0 ok, 1 failure, 2 usage.\n");
}

static double now_s(void)
{
    return (double)ferry_monotonic_ns() / 1e9;
}

static long peak_rss_kib(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return -1;
    return ru.ru_maxrss;
}

static int parse_size_arg(const char *s, uint32_t max, uint32_t *out)
{
    uint64_t v;
    if (ferry_parse_size(s, &v) != 0 || v > max)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int cmd_make(int argc, char **argv, int full)
{
    struct delta_make_options o;
    delta_make_options_default(&o);
    int stats = 0, i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        int64_t lvl;
        if (strcmp(argv[i], "--stats") == 0) {
            stats = 1;
        } else if (strcmp(argv[i], "--no-exe") == 0) {
            o.no_exe = 1;
        } else if (strcmp(argv[i], "--level") == 0 && i + 1 < argc &&
                   ferry_parse_i64(argv[i + 1], 1, 22, &lvl) == 0) {
            o.level = (int)lvl;
            i++;
        } else if (strcmp(argv[i], "--window") == 0 && i + 1 < argc &&
                   parse_size_arg(argv[i + 1], DELTA_MAX_WINDOW_BYTES, &o.window_bytes) == 0) {
            i++;
        } else if (strcmp(argv[i], "--max-ref") == 0 && i + 1 < argc &&
                   parse_size_arg(argv[i + 1], DELTA_MAX_REF_BYTES, &o.max_ref_bytes) == 0) {
            i++;
        } else if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "ferry-delta: bad option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (argc - i != (full ? 2 : 3)) {
        usage(stderr);
        return 2;
    }
    const char *base = full ? NULL : argv[i];
    const char *target = argv[i + (full ? 0 : 1)];
    const char *outp = argv[i + (full ? 1 : 2)];
    struct delta_make_stats st = {0};
    char err[512] = "";
    double t0 = now_s();
    int rc = delta_make(base, target, outp, &o, &st, err, sizeof(err));
    if (rc != DELTA_OK) {
        fprintf(stderr, "ferry-delta: %s\n", err);
        return 1;
    }
    if (stats)
        fprintf(stderr,
                "make: base %llu target %llu delta %llu bytes, %u chunks, ref %llu, matched "
                "%llu, executables paired %u, executable chunks %u, %.2f s, peak rss %ld KiB\n",
                (unsigned long long)st.base_bytes, (unsigned long long)st.target_bytes,
                (unsigned long long)st.delta_bytes, st.chunks,
                (unsigned long long)st.ref_bytes_total, (unsigned long long)st.matched_bytes,
                st.exe_pairs, st.exe_chunks, now_s() - t0, peak_rss_kib());
    return 0;
}

/* Current RssAnon of this process in KiB (anonymous memory only: the base and the delta are
 * file-backed mappings and do not count), or -1. */
static long rss_anon_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "RssAnon:", 8) == 0)
            v = strtol(line + 8, NULL, 10);
    fclose(f);
    return v;
}

/* Samples RssAnon after every window, while the window buffer is live. */
static int sample_anon(uint64_t done, uint64_t total, void *arg)
{
    (void)done;
    (void)total;
    long *peak = arg, a = rss_anon_kib();
    if (a > *peak)
        *peak = a;
    return 0;
}

static int cmd_apply(int argc, char **argv)
{
    int stats = 0, i = 1;
    if (i < argc && strcmp(argv[i], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    if (i < argc && strcmp(argv[i], "--stats") == 0) {
        stats = 1;
        i++;
    }
    if (argc - i != 3) {
        usage(stderr);
        return 2;
    }
    const char *base = strcmp(argv[i], "-") == 0 ? NULL : argv[i];
    char err[512] = "";
    double t0 = now_s();
    long peak_anon = rss_anon_kib();
    struct delta_apply_options ao = {.progress = sample_anon, .progress_arg = &peak_anon};
    int rc = delta_apply(base, argv[i + 1], argv[i + 2], &ao, err, sizeof(err));
    if (rc != DELTA_OK) {
        fprintf(stderr, "ferry-delta: %s (%s)\n", err, delta_strerror(rc));
        return 1;
    }
    if (stats)
        fprintf(stderr, "apply: %.2f s, peak rss %ld KiB (incl. file-backed), peak anon %ld KiB\n",
                now_s() - t0, peak_rss_kib(), peak_anon);
    return 0;
}

static int cmd_info(int argc, char **argv)
{
    int json = 0, i = 1;
    if (i < argc && strcmp(argv[i], "--json") == 0) {
        json = 1;
        i++;
    }
    if (argc - i != 1) {
        usage(stderr);
        return 2;
    }
    struct delta_info in;
    char err[512] = "";
    int rc = delta_read_info(argv[i], &in, err, sizeof(err));
    if (rc != DELTA_OK) {
        fprintf(stderr, "ferry-delta: %s\n", err);
        return 1;
    }
    char bh[65], th[65];
    ferry_hex_encode(in.base_sha256, 32, bh);
    ferry_hex_encode(in.target_sha256, 32, th);
    if (json)
        printf("{\"version\":%u,\"has_base\":%s,\"base_size\":%llu,\"base_sha256\":\"%s\",\"target_"
               "size\":%llu,"
               "\"target_sha256\":\"%s\",\"window_bytes\":%u,\"chunks\":%u,\"header_bytes\":%llu,"
               "\"file_bytes\":%llu,\"max_ref_bytes\":%llu}\n",
               in.version, in.has_base ? "true" : "false", (unsigned long long)in.base_size, bh,
               (unsigned long long)in.target_size, th, in.window_bytes, in.chunks,
               (unsigned long long)in.header_bytes, (unsigned long long)in.file_bytes,
               (unsigned long long)in.max_ref_bytes);
    else
        printf("version:       %u\nkind:          %s\nbase:          %llu bytes sha256 %s\ntarget: "
               "       %llu "
               "bytes sha256 %s\nwindow:        %u bytes\nchunks:        %u\nheader:        "
               "%llu bytes\nfile:          %llu bytes\nmax reference: %llu bytes\n",
               in.version, in.has_base ? "delta" : "full", (unsigned long long)in.base_size, bh,
               (unsigned long long)in.target_size, th, in.window_bytes, in.chunks,
               (unsigned long long)in.header_bytes, (unsigned long long)in.file_bytes,
               (unsigned long long)in.max_ref_bytes);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    /* --version alone or after a command (no command has an option of that name) */
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0 ||
        (argc >= 3 && strcmp(argv[2], "--version") == 0)) {
        printf("ferry-delta %s\n", FERRY_VERSION);
        return 0;
    }
    if (strcmp(cmd, "make") == 0)
        return cmd_make(argc - 1, argv + 1, 0);
    if (strcmp(cmd, "full") == 0)
        return cmd_make(argc - 1, argv + 1, 1);
    if (strcmp(cmd, "apply") == 0)
        return cmd_apply(argc - 1, argv + 1);
    if (strcmp(cmd, "info") == 0)
        return cmd_info(argc - 1, argv + 1);
    fprintf(stderr, "ferry-delta: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
