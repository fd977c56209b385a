/*
 * system.c - the system collector: Telegraf's cpu, mem, swap, disk, diskio, net, system and
 * processes inputs, read straight from /proc (and statvfs for disk space).
 *
 * The names and the arithmetic follow Telegraf (and gopsutil under it) so that a dashboard built
 * for Telegraf data shows the same numbers: cpu usage_* are percentages of the jiffies between two
 * rounds (guest time taken out of user and nice), mem "cached" includes SReclaimable and "used" is
 * total - free - buffers - cached, disk "used_percent" is used / (used + available). The mapping
 * table is in docs/configuration.md, "[collect.system]". Where this collector differs from
 * Telegraf's defaults it says so there (system has no n_users; diskio skips loop and ram devices
 * and devices that never did any I/O).
 *
 * Cost: one round reads about 8 small files plus /proc/PID/stat per process; nothing is
 * allocated after the first round (one scratch buffer, one cpu table).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/util.h"
#include "engine/collect/collect.h"

#define SCRATCH_BYTES (512 * 1024)
#define CPU_COUNTERS 10 /* user nice system idle iowait irq softirq steal guest guest_nice */
#define MAX_CPUS 1024

struct cpu_sample {
    char name[16];
    uint64_t v[CPU_COUNTERS];
};

struct system_state {
    char root[PATH_MAX];
    bool percpu;
    long page_size;
    char *scratch; /* SCRATCH_BYTES */
    struct cpu_sample *prev, *cur;
    size_t n_prev, n_cur;
    int n_cpus; /* per-core lines in the last /proc/stat */
};

enum { C_USER, C_NICE, C_SYSTEM, C_IDLE, C_IOWAIT, C_IRQ, C_SOFTIRQ, C_STEAL, C_GUEST, C_GNICE };

static int read_or_fail(struct system_state *st, const char *rel, char *errbuf, size_t errlen)
{
    long n = collect_read_file(st->root, rel, st->scratch, SCRATCH_BYTES);
    if (n < 0) {
        snprintf(errbuf, errlen, "%s%s: %s", st->root, rel, strerror((int)-n));
        return COLLECT_EREAD;
    }
    return 0;
}

/* Next line of a NUL-terminated text: returns its start and moves *p past it; NULL at the end.
 * The newline is replaced by NUL. */
static char *next_line(char **p)
{
    char *s = *p;
    if (!*s)
        return NULL;
    char *nl = strchr(s, '\n');
    if (nl) {
        *nl = 0;
        *p = nl + 1;
    } else {
        *p = s + strlen(s);
    }
    return s;
}

/* Parses up to max unsigned decimal numbers separated by blanks; returns how many. */
static size_t parse_u64s(const char *s, uint64_t *v, size_t max)
{
    size_t n = 0;
    while (n < max) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (!isdigit((unsigned char)*s))
            break;
        char *end;
        errno = 0;
        unsigned long long x = strtoull(s, &end, 10);
        if (errno)
            break;
        v[n++] = x;
        s = end;
    }
    return n;
}

/* ---- cpu ------------------------------------------------------------------------------------ */

static const struct cpu_sample *find_prev(const struct system_state *st, const char *name)
{
    for (size_t i = 0; i < st->n_prev; i++)
        if (strcmp(st->prev[i].name, name) == 0)
            return &st->prev[i];
    return NULL;
}

static uint64_t cpu_total(const struct cpu_sample *s)
{
    /* Telegraf's totalCPUTime: guest time is already part of user and nice. */
    return s->v[C_USER] + s->v[C_NICE] + s->v[C_SYSTEM] + s->v[C_IDLE] + s->v[C_IOWAIT] +
           s->v[C_IRQ] + s->v[C_SOFTIRQ] + s->v[C_STEAL];
}

static double pct(uint64_t now, uint64_t before, double total)
{
    /* Counters can step back (a CPU went offline and came back): clamp at 0. */
    return now > before ? 100.0 * (double)(now - before) / total : 0.0;
}

static int emit_cpu(const struct cpu_sample *cur, const struct cpu_sample *prev, int64_t ts,
                    struct collect_out *out)
{
    uint64_t t1 = cpu_total(cur), t0 = cpu_total(prev);
    if (t1 <= t0)
        return 0; /* no time passed (Telegraf skips such a sample too) */
    double total = (double)(t1 - t0);
    const uint64_t *a = cur->v, *b = prev->v;
    struct collect_rec rec;
    collect_rec_begin(&rec, "cpu", ts);
    collect_tag(&rec, "cpu", cur->name);
    uint64_t user_a = a[C_USER] - (a[C_USER] >= a[C_GUEST] ? a[C_GUEST] : 0);
    uint64_t user_b = b[C_USER] - (b[C_USER] >= b[C_GUEST] ? b[C_GUEST] : 0);
    uint64_t nice_a = a[C_NICE] - (a[C_NICE] >= a[C_GNICE] ? a[C_GNICE] : 0);
    uint64_t nice_b = b[C_NICE] - (b[C_NICE] >= b[C_GNICE] ? b[C_GNICE] : 0);
    collect_float(&rec, "usage_user", pct(user_a, user_b, total));
    collect_float(&rec, "usage_system", pct(a[C_SYSTEM], b[C_SYSTEM], total));
    collect_float(&rec, "usage_idle", pct(a[C_IDLE], b[C_IDLE], total));
    collect_float(&rec, "usage_nice", pct(nice_a, nice_b, total));
    collect_float(&rec, "usage_iowait", pct(a[C_IOWAIT], b[C_IOWAIT], total));
    collect_float(&rec, "usage_irq", pct(a[C_IRQ], b[C_IRQ], total));
    collect_float(&rec, "usage_softirq", pct(a[C_SOFTIRQ], b[C_SOFTIRQ], total));
    collect_float(&rec, "usage_steal", pct(a[C_STEAL], b[C_STEAL], total));
    collect_float(&rec, "usage_guest", pct(a[C_GUEST], b[C_GUEST], total));
    collect_float(&rec, "usage_guest_nice", pct(a[C_GNICE], b[C_GNICE], total));
    return collect_emit(out, &rec);
}

static int collect_cpu(struct system_state *st, int64_t ts, struct collect_out *out, char *errbuf,
                       size_t errlen)
{
    int rc = read_or_fail(st, "/proc/stat", errbuf, errlen);
    if (rc != 0)
        return rc;
    char *p = st->scratch, *line;
    st->n_cur = 0;
    int n_cpus = 0;
    while ((line = next_line(&p)) != NULL) {
        if (strncmp(line, "cpu", 3) != 0)
            continue;
        size_t name_len = strcspn(line, " \t");
        if (name_len >= sizeof st->cur[0].name || st->n_cur == MAX_CPUS + 1)
            continue;
        struct cpu_sample *s = &st->cur[st->n_cur];
        memset(s, 0, sizeof *s);
        if (name_len == 3)
            memcpy(s->name, "cpu-total", 10); /* Telegraf's name for the aggregate line */
        else {
            memcpy(s->name, line, name_len);
            n_cpus++;
        }
        if (parse_u64s(line + name_len, s->v, CPU_COUNTERS) < 4) {
            snprintf(errbuf, errlen, "%s/proc/stat: line \"%.40s\": fewer than 4 counters",
                     st->root, line);
            return COLLECT_EFORMAT;
        }
        st->n_cur++;
    }
    st->n_cpus = n_cpus;
    for (size_t i = 0; i < st->n_cur; i++) {
        const struct cpu_sample *s = &st->cur[i];
        if (!st->percpu && strcmp(s->name, "cpu-total") != 0)
            continue;
        const struct cpu_sample *prev = find_prev(st, s->name);
        if (prev && (rc = emit_cpu(s, prev, ts, out)) != 0)
            return rc;
    }
    struct cpu_sample *swap = st->prev;
    st->prev = st->cur;
    st->n_prev = st->n_cur;
    st->cur = swap;
    return 0;
}

/* ---- mem and swap --------------------------------------------------------------------------- */

/* Telegraf's mem fields and the /proc/meminfo keys behind them (kB unless `count`). */
static const struct meminfo_map {
    const char *field;
    const char *key;
    bool count;
} mem_fields[] = {
    {"active", "Active", false},
    {"available", "MemAvailable", false},
    {"buffered", "Buffers", false},
    {"cached", "Cached", false}, /* + SReclaimable below */
    {"commit_limit", "CommitLimit", false},
    {"committed_as", "Committed_AS", false},
    {"dirty", "Dirty", false},
    {"free", "MemFree", false},
    {"high_free", "HighFree", false},
    {"high_total", "HighTotal", false},
    {"huge_page_size", "Hugepagesize", false},
    {"huge_pages_free", "HugePages_Free", true},
    {"huge_pages_total", "HugePages_Total", true},
    {"inactive", "Inactive", false},
    {"low_free", "LowFree", false},
    {"low_total", "LowTotal", false},
    {"mapped", "Mapped", false},
    {"page_tables", "PageTables", false},
    {"shared", "Shmem", false},
    {"slab", "Slab", false},
    {"sreclaimable", "SReclaimable", false},
    {"sunreclaim", "SUnreclaim", false},
    {"swap_cached", "SwapCached", false},
    {"swap_free", "SwapFree", false},
    {"swap_total", "SwapTotal", false},
    {"total", "MemTotal", false},
    {"vmalloc_chunk", "VmallocChunk", false},
    {"vmalloc_total", "VmallocTotal", false},
    {"vmalloc_used", "VmallocUsed", false},
    {"write_back", "Writeback", false},
    {"write_back_tmp", "WritebackTmp", false},
};
#define N_MEM (sizeof mem_fields / sizeof mem_fields[0])

static size_t mem_index(const char *field)
{
    for (size_t i = 0; i < N_MEM; i++)
        if (strcmp(mem_fields[i].field, field) == 0)
            return i;
    return N_MEM;
}

static double ratio_pct(uint64_t part, uint64_t whole)
{
    return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

static int collect_mem(struct system_state *st, int64_t ts, struct collect_out *out, char *errbuf,
                       size_t errlen)
{
    int rc = read_or_fail(st, "/proc/meminfo", errbuf, errlen);
    if (rc != 0)
        return rc;
    uint64_t v[N_MEM];
    bool seen[N_MEM];
    memset(v, 0, sizeof v);
    memset(seen, 0, sizeof seen);
    char *p = st->scratch, *line;
    while ((line = next_line(&p)) != NULL) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = 0;
        for (size_t i = 0; i < N_MEM; i++) {
            if (strcmp(mem_fields[i].key, line) != 0)
                continue;
            uint64_t x = 0;
            if (parse_u64s(colon + 1, &x, 1) == 1) {
                v[i] = mem_fields[i].count ? x : x * 1024;
                seen[i] = true;
            }
            break;
        }
    }
    size_t i_total = mem_index("total"), i_free = mem_index("free");
    size_t i_buf = mem_index("buffered"), i_cached = mem_index("cached");
    size_t i_avail = mem_index("available"), i_srec = mem_index("sreclaimable");
    if (!seen[i_total] || !seen[i_free]) {
        snprintf(errbuf, errlen, "%s/proc/meminfo: no MemTotal or MemFree", st->root);
        return COLLECT_EFORMAT;
    }
    v[i_cached] += v[i_srec]; /* gopsutil: Cached includes SReclaimable */
    if (!seen[i_avail])       /* kernels before 3.14 */
        v[i_avail] = v[i_free] + v[i_buf] + v[i_cached];
    uint64_t total = v[i_total];
    uint64_t taken = v[i_free] + v[i_buf] + v[i_cached];
    uint64_t used = total > taken ? total - taken : 0;

    struct collect_rec rec;
    collect_rec_begin(&rec, "mem", ts);
    for (size_t i = 0; i < N_MEM; i++)
        collect_int(&rec, mem_fields[i].field, (int64_t)v[i]);
    collect_int(&rec, "used", (int64_t)used);
    collect_float(&rec, "used_percent", ratio_pct(used, total));
    collect_float(&rec, "available_percent", ratio_pct(v[i_avail], total));
    if ((rc = collect_emit(out, &rec)) != 0)
        return rc;

    /* swap: the same file, plus the page-in/out counters of /proc/vmstat (in bytes). */
    uint64_t sw_total = v[mem_index("swap_total")], sw_free = v[mem_index("swap_free")];
    uint64_t sw_used = sw_total > sw_free ? sw_total - sw_free : 0;
    uint64_t pswpin = 0, pswpout = 0;
    if (collect_read_file(st->root, "/proc/vmstat", st->scratch, SCRATCH_BYTES) >= 0) {
        p = st->scratch;
        while ((line = next_line(&p)) != NULL) {
            if (strncmp(line, "pswpin ", 7) == 0)
                (void)parse_u64s(line + 7, &pswpin, 1);
            else if (strncmp(line, "pswpout ", 8) == 0)
                (void)parse_u64s(line + 8, &pswpout, 1);
        }
    }
    collect_rec_begin(&rec, "swap", ts);
    collect_int(&rec, "total", (int64_t)sw_total);
    collect_int(&rec, "used", (int64_t)sw_used);
    collect_int(&rec, "free", (int64_t)sw_free);
    collect_float(&rec, "used_percent", ratio_pct(sw_used, sw_total));
    collect_int(&rec, "in", (int64_t)(pswpin * (uint64_t)st->page_size));
    collect_int(&rec, "out", (int64_t)(pswpout * (uint64_t)st->page_size));
    return collect_emit(out, &rec);
}

/* ---- disk ----------------------------------------------------------------------------------- */

/* Telegraf's default ignore_fs, beside every "nodev" filesystem of /proc/filesystems (proc,
 * sysfs, cgroup, and network filesystems: statvfs on a hung NFS server would block the loop). */
static const char *const ignore_fs[] = {"tmpfs",   "devtmpfs", "devfs",   "iso9660",
                                        "overlay", "aufs",     "squashfs"};

/* /proc/mounts escapes space, tab, newline and backslash as \ooo; undo it in place. */
static void unescape_mount(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
            r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 3;
        } else {
            *w++ = *r;
        }
    }
    *w = 0;
}

static bool fs_ignored(const char *fstype, const char *nodev_list)
{
    for (size_t i = 0; i < sizeof ignore_fs / sizeof ignore_fs[0]; i++)
        if (strcmp(fstype, ignore_fs[i]) == 0)
            return true;
    /* nodev_list: "\tproc\n\tsysfs\n..." made from /proc/filesystems */
    size_t n = strlen(fstype);
    for (const char *p = nodev_list; (p = strstr(p, fstype)) != NULL; p += n)
        if (p > nodev_list && p[-1] == '\t' && (p[n] == '\n' || p[n] == 0))
            return true;
    return false;
}

static int emit_disk(struct system_state *st, const char *dev, const char *mnt, const char *fstype,
                     const char *opts, int64_t ts, struct collect_out *out)
{
    char path[PATH_MAX];
    struct statvfs sv;
    if (collect_path(st->root, mnt, path, sizeof path) != 0 || statvfs(path, &sv) != 0)
        return 0; /* gone or not ours to read: Telegraf skips it the same way */
    if (sv.f_blocks == 0)
        return 0;
    uint64_t frsize = sv.f_frsize ? sv.f_frsize : sv.f_bsize;
    uint64_t total = (uint64_t)sv.f_blocks * frsize;
    uint64_t free_b = (uint64_t)sv.f_bavail * frsize;
    uint64_t used = ((uint64_t)sv.f_blocks - (uint64_t)sv.f_bfree) * frsize;
    uint64_t itotal = sv.f_files, ifree = sv.f_ffree;
    uint64_t iused = itotal > ifree ? itotal - ifree : 0;
    const char *base = strrchr(dev, '/');
    base = base ? base + 1 : dev;
    bool ro = strncmp(opts, "ro", 2) == 0 && (opts[2] == ',' || opts[2] == 0);
    struct collect_rec rec;
    collect_rec_begin(&rec, "disk", ts);
    collect_tag(&rec, "device", base);
    collect_tag(&rec, "fstype", fstype);
    collect_tag(&rec, "mode", ro ? "ro" : "rw");
    collect_tag(&rec, "path", mnt);
    collect_int(&rec, "total", (int64_t)total);
    collect_int(&rec, "free", (int64_t)free_b);
    collect_int(&rec, "used", (int64_t)used);
    collect_float(&rec, "used_percent", ratio_pct(used, used + free_b));
    collect_int(&rec, "inodes_total", (int64_t)itotal);
    collect_int(&rec, "inodes_free", (int64_t)ifree);
    collect_int(&rec, "inodes_used", (int64_t)iused);
    collect_float(&rec, "inodes_used_percent", ratio_pct(iused, itotal));
    return collect_emit(out, &rec);
}

static int collect_disk(struct system_state *st, int64_t ts, struct collect_out *out, char *errbuf,
                        size_t errlen)
{
    /* The nodev list first, into the upper half of the scratch buffer. */
    char *nodev = st->scratch + SCRATCH_BYTES / 2;
    long n = collect_read_file(st->root, "/proc/filesystems", nodev, SCRATCH_BYTES / 2);
    if (n < 0)
        nodev[0] = 0;
    char *w = nodev, *p = nodev, *line;
    while ((line = next_line(&p)) != NULL) {
        if (strncmp(line, "nodev\t", 6) != 0)
            continue;
        size_t len = strlen(line + 5);
        memmove(w, line + 5, len); /* keeps the leading tab */
        w += len;
        *w++ = '\n';
    }
    *w = 0;
    long m = collect_read_file(st->root, "/proc/self/mounts", st->scratch, SCRATCH_BYTES / 2);
    if (m < 0) {
        snprintf(errbuf, errlen, "%s/proc/self/mounts: %s", st->root, strerror((int)-m));
        return COLLECT_EREAD;
    }
    p = st->scratch;
    while ((line = next_line(&p)) != NULL) {
        char *fields[4];
        char *save = NULL, *tok = strtok_r(line, " ", &save);
        size_t k = 0;
        for (; tok && k < 4; tok = strtok_r(NULL, " ", &save))
            fields[k++] = tok;
        if (k < 4 || fs_ignored(fields[2], nodev))
            continue;
        unescape_mount(fields[0]);
        unescape_mount(fields[1]);
        /* A mount point listed again (stacked mounts) is reported once, for the top one: look
         * ahead for a later line with the same mount point. */
        bool later = false;
        for (char *q = p; *q;) {
            char *eol = strchr(q, '\n');
            char *sp = strchr(q, ' ');
            if (sp && (!eol || sp < eol)) {
                char *sp2 = strchr(sp + 1, ' ');
                size_t ml = sp2 ? (size_t)(sp2 - sp - 1) : 0;
                if (ml == strlen(fields[1]) && memcmp(sp + 1, fields[1], ml) == 0) {
                    later = true;
                    break;
                }
            }
            if (!eol)
                break;
            q = eol + 1;
        }
        if (later)
            continue;
        int rc = emit_disk(st, fields[0], fields[1], fields[2], fields[3], ts, out);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- diskio --------------------------------------------------------------------------------- */

static int collect_diskio(struct system_state *st, int64_t ts, struct collect_out *out,
                          char *errbuf, size_t errlen)
{
    int rc = read_or_fail(st, "/proc/diskstats", errbuf, errlen);
    if (rc != 0)
        return rc;
    char *p = st->scratch, *line;
    while ((line = next_line(&p)) != NULL) {
        unsigned major, minor;
        char name[64];
        int used = 0;
        if (sscanf(line, " %u %u %63s%n", &major, &minor, name, &used) != 3)
            continue;
        if (strncmp(name, "loop", 4) == 0 || strncmp(name, "ram", 3) == 0)
            continue;
        uint64_t v[11];
        if (parse_u64s(line + used, v, 11) != 11)
            continue;
        if (v[0] == 0 && v[4] == 0)
            continue; /* never used: nothing a dashboard wants */
        struct collect_rec rec;
        collect_rec_begin(&rec, "diskio", ts);
        collect_tag(&rec, "name", name);
        collect_int(&rec, "reads", (int64_t)v[0]);
        collect_int(&rec, "merged_reads", (int64_t)v[1]);
        collect_int(&rec, "read_bytes", (int64_t)(v[2] * 512)); /* sectors are 512 bytes here */
        collect_int(&rec, "read_time", (int64_t)v[3]);
        collect_int(&rec, "writes", (int64_t)v[4]);
        collect_int(&rec, "merged_writes", (int64_t)v[5]);
        collect_int(&rec, "write_bytes", (int64_t)(v[6] * 512));
        collect_int(&rec, "write_time", (int64_t)v[7]);
        collect_int(&rec, "iops_in_progress", (int64_t)v[8]);
        collect_int(&rec, "io_time", (int64_t)v[9]);
        collect_int(&rec, "weighted_io_time", (int64_t)v[10]);
        if ((rc = collect_emit(out, &rec)) != 0)
            return rc;
    }
    return 0;
}

/* ---- net ------------------------------------------------------------------------------------ */

/* Telegraf's net input reports interfaces that are up and not loopback. */
static bool iface_wanted(struct system_state *st, const char *name)
{
    char rel[128], buf[32];
    if (snprintf(rel, sizeof rel, "/sys/class/net/%s/flags", name) >= (int)sizeof rel)
        return false;
    if (collect_read_file(st->root, rel, buf, sizeof buf) <= 0)
        return strcmp(name, "lo") != 0; /* no sysfs (a container): only the name is known */
    unsigned long flags = strtoul(buf, NULL, 16);
    return (flags & 0x1) && !(flags & 0x8); /* IFF_UP, IFF_LOOPBACK */
}

static int collect_net(struct system_state *st, int64_t ts, struct collect_out *out, char *errbuf,
                       size_t errlen)
{
    int rc = read_or_fail(st, "/proc/net/dev", errbuf, errlen);
    if (rc != 0)
        return rc;
    /* iface_wanted() reads into a small buffer of its own, so the scratch text stays valid. */
    char *p = st->scratch, *line;
    while ((line = next_line(&p)) != NULL) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue; /* the two header lines */
        *colon = 0;
        while (*line == ' ')
            line++;
        if (!*line || strlen(line) >= 64 || !iface_wanted(st, line))
            continue;
        uint64_t v[16];
        if (parse_u64s(colon + 1, v, 16) != 16)
            continue;
        struct collect_rec rec;
        collect_rec_begin(&rec, "net", ts);
        collect_tag(&rec, "interface", line);
        collect_int(&rec, "bytes_recv", (int64_t)v[0]);
        collect_int(&rec, "packets_recv", (int64_t)v[1]);
        collect_int(&rec, "err_in", (int64_t)v[2]);
        collect_int(&rec, "drop_in", (int64_t)v[3]);
        collect_int(&rec, "bytes_sent", (int64_t)v[8]);
        collect_int(&rec, "packets_sent", (int64_t)v[9]);
        collect_int(&rec, "err_out", (int64_t)v[10]);
        collect_int(&rec, "drop_out", (int64_t)v[11]);
        if ((rc = collect_emit(out, &rec)) != 0)
            return rc;
    }
    return 0;
}

/* ---- system --------------------------------------------------------------------------------- */

static int collect_sys(struct system_state *st, int64_t ts, struct collect_out *out, char *errbuf,
                       size_t errlen)
{
    char buf[256];
    long n = collect_read_file(st->root, "/proc/loadavg", buf, sizeof buf);
    double l1, l5, l15;
    if (n < 0 || sscanf(buf, "%lf %lf %lf", &l1, &l5, &l15) != 3) {
        snprintf(errbuf, errlen, "%s/proc/loadavg: %s", st->root,
                 n < 0 ? strerror((int)-n) : "not three load averages");
        return n < 0 ? COLLECT_EREAD : COLLECT_EFORMAT;
    }
    double up = 0;
    n = collect_read_file(st->root, "/proc/uptime", buf, sizeof buf);
    if (n < 0 || sscanf(buf, "%lf", &up) != 1) {
        snprintf(errbuf, errlen, "%s/proc/uptime: %s", st->root,
                 n < 0 ? strerror((int)-n) : "not a number");
        return n < 0 ? COLLECT_EREAD : COLLECT_EFORMAT;
    }
    struct collect_rec rec;
    collect_rec_begin(&rec, "system", ts);
    collect_float(&rec, "load1", l1);
    collect_float(&rec, "load5", l5);
    collect_float(&rec, "load15", l15);
    collect_int(&rec, "n_cpus", st->n_cpus);
    collect_int(&rec, "uptime", (int64_t)up);
    return collect_emit(out, &rec);
}

/* ---- processes ------------------------------------------------------------------------------ */

static int collect_processes(struct system_state *st, int64_t ts, struct collect_out *out,
                             char *errbuf, size_t errlen)
{
    char dir[PATH_MAX];
    if (collect_path(st->root, "/proc", dir, sizeof dir) != 0)
        return COLLECT_EINVAL;
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(errbuf, errlen, "%s: %s", dir, strerror(errno));
        return COLLECT_EREAD;
    }
    int64_t running = 0, sleeping = 0, blocked = 0, zombies = 0, stopped = 0, dead = 0;
    int64_t paging = 0, idle = 0, unknown = 0, total = 0, threads = 0;
    struct dirent *e;
    char rel[64], buf[1024];
    while ((e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        if (snprintf(rel, sizeof rel, "/proc/%s/stat", e->d_name) >= (int)sizeof rel)
            continue;
        if (collect_read_file(st->root, rel, buf, sizeof buf) <= 0)
            continue; /* the process ended meanwhile */
        /* "pid (comm) S ppid ...": comm may hold spaces and parentheses; the last ')' ends it. */
        char *rp = strrchr(buf, ')');
        if (!rp || rp[1] != ' ' || !rp[2])
            continue;
        total++;
        switch (rp[2]) {
        case 'R': running++; break;
        case 'S': sleeping++; break;
        case 'D': blocked++; break;
        case 'Z': zombies++; break;
        case 'X': dead++; break;
        case 'T':
        case 't': stopped++; break;
        case 'W': paging++; break;
        case 'I': idle++; break;
        default: unknown++; break;
        }
        /* num_threads is field 20; after ')' comes field 3 (state). */
        const char *q = rp + 2;
        for (int field = 3; field < 20 && q; field++) {
            q = strchr(q, ' ');
            if (q)
                q++;
        }
        uint64_t nt = 0;
        if (q && parse_u64s(q, &nt, 1) == 1)
            threads += (int64_t)nt;
    }
    closedir(d);
    struct collect_rec rec;
    collect_rec_begin(&rec, "processes", ts);
    collect_int(&rec, "blocked", blocked);
    collect_int(&rec, "dead", dead);
    collect_int(&rec, "idle", idle);
    collect_int(&rec, "paging", paging);
    collect_int(&rec, "running", running);
    collect_int(&rec, "sleeping", sleeping);
    collect_int(&rec, "stopped", stopped);
    collect_int(&rec, "total", total);
    collect_int(&rec, "total_threads", threads);
    collect_int(&rec, "unknown", unknown);
    collect_int(&rec, "zombies", zombies);
    return collect_emit(out, &rec);
}

/* ---- The collector -------------------------------------------------------------------------- */

/* Every part runs even when an earlier one failed; the first error is returned. */
static int system_collect(void *state, int64_t ts, struct collect_out *out, char *errbuf,
                          size_t errlen)
{
    struct system_state *st = state;
    int (*const parts[])(struct system_state *, int64_t, struct collect_out *, char *,
                         size_t) = {collect_cpu, collect_mem, collect_disk,     collect_diskio,
                                    collect_net, collect_sys, collect_processes};
    int first = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        char err[COLLECT_ERRBUF] = "";
        int rc = parts[i](st, ts, out, err, sizeof err);
        if (rc == COLLECT_ENOMEM)
            return rc;
        if (rc != 0 && first == 0) {
            first = rc;
            snprintf(errbuf, errlen, "%s", err);
        }
    }
    return first;
}

static void system_free(void *state)
{
    struct system_state *st = state;
    if (!st)
        return;
    free(st->scratch);
    free(st->prev);
    free(st->cur);
    free(st);
}

int collect_system_new(const struct collect_system_opts *opts, struct collector **out, char *errbuf,
                       size_t errlen)
{
    if (opts->interval_ms < 100 || strlen(opts->root) >= PATH_MAX - 64) {
        snprintf(errbuf, errlen, "[collect.system]: interval under 100 ms or root too long");
        return COLLECT_EINVAL;
    }
    struct collector *c = calloc(1, sizeof *c);
    struct system_state *st = calloc(1, sizeof *st);
    if (!c || !st)
        goto nomem;
    c->state = st;
    c->free_state = system_free;
    c->collect = system_collect;
    c->interval_ms = opts->interval_ms;
    memcpy(c->name, "system", 7);
    size_t rl = strlen(opts->root);
    while (rl > 0 && opts->root[rl - 1] == '/')
        rl--;
    memcpy(st->root, opts->root, rl);
    st->root[rl] = 0;
    st->percpu = opts->percpu;
    st->page_size = sysconf(_SC_PAGESIZE);
    if (st->page_size <= 0)
        st->page_size = 4096;
    st->scratch = malloc(SCRATCH_BYTES);
    st->prev = calloc(MAX_CPUS + 1, sizeof *st->prev);
    st->cur = calloc(MAX_CPUS + 1, sizeof *st->cur);
    if (!st->scratch || !st->prev || !st->cur)
        goto nomem;
    if (read_or_fail(st, "/proc/stat", errbuf, errlen) != 0) {
        collector_free(c);
        return COLLECT_EREAD;
    }
    *out = c;
    return 0;
nomem:
    if (c)
        collector_free(c);
    else
        system_free(st);
    snprintf(errbuf, errlen, "out of memory");
    return COLLECT_ENOMEM;
}
