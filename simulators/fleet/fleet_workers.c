/*
 * fleet_workers.c - ferry-fleet across several worker processes (see fleet_workers.h).
 */
#include "simulators/fleet/fleet_workers.h"

#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* Measured: an idle device holds about 8 descriptors (its proxy's listener, curl's wakeup
 * socket pair, the journal's data file twice, its lock and owner files, an eventfd), and each
 * request in flight 3 more (curl's socket, the proxy's two ends). With the engine's 4 requests in
 * flight (a backlog after an outage) that is 20; budgeting 12 made a 10,000-device run hit EMFILE
 * in the proxies' accept() during the catch-up. */
#define FDS_PER_DEVICE 20
#define FDS_RESERVED 128
/* Simulated OTA adds, per device: the agents' HTTP client (curl's wakeup pair), each agent's job
 * pipe, and a download's file and socket in flight. */
#define FDS_PER_DEVICE_OTA 8

enum { MSG_READY = 'R', MSG_SECOND = 'S', MSG_DELAYS = 'D', MSG_TOTALS = 'T' };

struct msg_totals {
    struct fleet_totals t;
    int completed;
};

unsigned fleet_devices_per_process(int ota)
{
    unsigned per_device = FDS_PER_DEVICE + (ota ? FDS_PER_DEVICE_OTA : 0);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1000;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1000000)
        rl.rlim_cur = 1000000;
    if (rl.rlim_cur <= FDS_RESERVED + per_device)
        return 1;
    return (unsigned)((rl.rlim_cur - FDS_RESERVED) / per_device);
}

/* ---- worker side ------------------------------------------------------------------------- */

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_msg(int fd, char type, const void *p, uint32_t len)
{
    char hdr[5] = {type};
    memcpy(hdr + 1, &len, 4);
    return write_all(fd, hdr, 5) == 0 && write_all(fd, p, len) == 0 ? 0 : -1;
}

static void on_second(void *arg, const struct fleet_second *s)
{
    (void)send_msg(*(int *)arg, MSG_SECOND, s, sizeof *s);
}

static void on_term(evutil_socket_t sig, short what, void *arg)
{
    event_base_loopbreak(arg);
}

/* The body of one worker: creates its slice, reports ready, waits for the start, runs, sends
 * delays and totals. Returns the exit status. */
static int worker_main(struct fleet_config cfg, int out_fd, int go_fd, const char *devices_out)
{
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    cfg.on_second = on_second;
    cfg.on_second_arg = &out_fd;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return 1;
    int code = 1;
    struct fleet *fl = NULL;
    struct event *sigterm = NULL, *sigint = NULL;
    struct event_base *base = event_base_new();
    char err[512];
    if (!base)
        goto out;
    if (fleet_new(base, &cfg, &fl, err, sizeof err) < 0) {
        fprintf(stderr, "ferry-fleet: devices %u..%u: %s\n", cfg.first_device,
                cfg.first_device + cfg.devices - 1, err);
        goto out;
    }
    sigterm = evsignal_new(base, SIGTERM, on_term, base);
    sigint = evsignal_new(base, SIGINT, on_term, base);
    if (!sigterm || event_add(sigterm, NULL) < 0 || !sigint || event_add(sigint, NULL) < 0)
        goto out;
    if (send_msg(out_fd, MSG_READY, "", 0) < 0)
        goto out;
    char go;
    ssize_t r;
    while ((r = read(go_fd, &go, 1)) < 0 && errno == EINTR) {
    }
    if (r != 1)
        goto out; /* the parent gave up */
    fleet_start(fl);
    event_base_dispatch(base);
    struct msg_totals mt = {.completed = fleet_done(fl)};
    fleet_totals(fl, &mt.t);
    if (fleet_count_in_ingest(fl, &mt.t, err, sizeof err) < 0)
        fprintf(stderr, "ferry-fleet: %s\n", err);
    const struct fleet_delay *d;
    size_t n;
    fleet_delays(fl, &d, &n);
    for (size_t i = 0; i < n;) {
        size_t k = n - i < 65536 ? n - i : 65536;
        if (send_msg(out_fd, MSG_DELAYS, d + i, (uint32_t)(k * sizeof *d)) < 0)
            goto out;
        i += k;
    }
    if (devices_out)
        (void)fleet_write_devices(fl, devices_out);
    if (send_msg(out_fd, MSG_TOTALS, &mt, sizeof mt) < 0)
        goto out;
    code = 0;
out:
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    fleet_free(fl);
    if (base)
        event_base_free(base);
    curl_global_cleanup();
    return code;
}

/* ---- parent side ------------------------------------------------------------------------- */

struct worker {
    pid_t pid;
    int out_fd, go_fd;
    char *buf;
    size_t len, cap;
    int ready, finished, eof;
    struct fleet_second *secs;
    size_t n_secs, cap_secs;
    struct msg_totals totals;
};

struct merge {
    struct worker *w;
    unsigned n;
    struct fleet_delay *delays;
    size_t n_delays, cap_delays;
    uint32_t next_second; /* the next summed second to finalize */
    uint64_t last_batches;
    int last_outage;
    double *before; /* summed per-second request rates before the outage */
    size_t n_before, cap_before;
    double peak_after;
    uint32_t outage_end_index;
    const struct fleet_config *cfg;
    int64_t last_report_ms;
};

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *n = realloc(*p, c * elem);
    if (!n)
        return -1;
    *p = n;
    *cap = c;
    return 0;
}

static int take_msg(struct merge *m, struct worker *w, char type, const char *p, uint32_t len)
{
    switch (type) {
    case MSG_READY: w->ready = 1; return 0;
    case MSG_SECOND:
        if (len != sizeof(struct fleet_second) ||
            grow((void **)&w->secs, &w->cap_secs, w->n_secs + 1, sizeof *w->secs) < 0)
            return -1;
        memcpy(&w->secs[w->n_secs++], p, len);
        return 0;
    case MSG_DELAYS: {
        size_t k = len / sizeof(struct fleet_delay);
        if (grow((void **)&m->delays, &m->cap_delays, m->n_delays + k, sizeof *m->delays) < 0)
            return -1;
        memcpy(m->delays + m->n_delays, p, k * sizeof *m->delays);
        m->n_delays += k;
        return 0;
    }
    case MSG_TOTALS:
        if (len != sizeof(struct msg_totals))
            return -1;
        memcpy(&w->totals, p, len);
        w->finished = 1;
        return 0;
    }
    return -1;
}

/* Reads what is there from one worker; returns -1 on a protocol error. */
static int pump(struct merge *m, struct worker *w)
{
    if (grow((void **)&w->buf, &w->cap, w->len + 65536, 1) < 0)
        return -1;
    ssize_t r = read(w->out_fd, w->buf + w->len, w->cap - w->len);
    if (r < 0)
        return errno == EINTR || errno == EAGAIN ? 0 : -1;
    if (r == 0) {
        w->eof = 1;
        return 0;
    }
    w->len += (size_t)r;
    size_t off = 0;
    while (w->len - off >= 5) {
        uint32_t len;
        memcpy(&len, w->buf + off + 1, 4);
        if (len > (64u << 20))
            return -1;
        if (w->len - off - 5 < len)
            break;
        if (take_msg(m, w, w->buf[off], w->buf + off + 5, len) < 0)
            return -1;
        off += 5 + len;
    }
    memmove(w->buf, w->buf + off, w->len - off);
    w->len -= off;
    return 0;
}

/* Sums every second that all workers have reported (a finished worker stays at its last one),
 * and prints progress and the outage's begin and end as the single-process fleet does. */
static void finalize_seconds(struct merge *m)
{
    for (;;) {
        uint32_t k = m->next_second;
        struct fleet_second sum = {.index = k};
        int any_live = 0;
        for (unsigned i = 0; i < m->n; i++) {
            struct worker *w = &m->w[i];
            if (w->n_secs < k) {
                if (!w->finished && !w->eof)
                    return; /* not known yet */
                if (!w->n_secs)
                    continue;
            } else {
                any_live = 1;
            }
            const struct fleet_second *s = &w->secs[(w->n_secs < k ? w->n_secs : k) - 1];
            if (s->t_ms > sum.t_ms)
                sum.t_ms = s->t_ms;
            sum.enrolled += s->enrolled;
            sum.generated += s->generated;
            sum.acked += s->acked;
            sum.backlog += s->backlog;
            sum.batches += s->batches;
            if (s->outage > sum.outage)
                sum.outage = s->outage;
        }
        if (!any_live)
            return; /* every worker is past its last second */
        double rate = (double)(sum.batches - m->last_batches);
        m->last_batches = sum.batches;
        if (sum.outage == 0) {
            if (grow((void **)&m->before, &m->cap_before, m->n_before + 1, sizeof(double)) == 0)
                m->before[m->n_before++] = rate;
        } else if (sum.outage == 2) {
            if (m->outage_end_index == 0)
                m->outage_end_index = k;
            if (k - m->outage_end_index <= 120 && rate > m->peak_after)
                m->peak_after = rate;
        }
        if (sum.outage != m->last_outage) {
            if (sum.outage == 1)
                fprintf(stderr, "fleet: t=%llds cloud outage begins (%llds)\n",
                        (long long)(sum.t_ms / 1000), (long long)(m->cfg->outage_ms / 1000));
            else
                fprintf(stderr, "fleet: t=%llds cloud outage ends\n", (long long)(sum.t_ms / 1000));
            m->last_outage = sum.outage;
        }
        if (m->cfg->report_ms > 0 && sum.t_ms - m->last_report_ms >= m->cfg->report_ms) {
            m->last_report_ms = sum.t_ms;
            fprintf(stderr,
                    "fleet: t=%llds enrolled=%u/%u generated=%llu acked=%llu backlog=%llu "
                    "requests/s=%.0f (%u processes)\n",
                    (long long)(sum.t_ms / 1000), sum.enrolled, m->cfg->devices,
                    (unsigned long long)sum.generated, (unsigned long long)sum.acked,
                    (unsigned long long)sum.backlog, rate, m->n);
        }
        m->next_second = k + 1;
    }
}

static void merge_totals(struct merge *m, struct fleet_totals *out, int *completed)
{
    memset(out, 0, sizeof *out);
    *completed = 1;
    for (unsigned i = 0; i < m->n; i++) {
        const struct fleet_totals *t = &m->w[i].totals.t;
        *completed &= m->w[i].finished && m->w[i].totals.completed;
        out->devices += t->devices;
        out->enrolled += t->enrolled;
        out->generated += t->generated;
        out->append_errors += t->append_errors;
        out->acked += t->acked;
        out->engine_sent += t->engine_sent;
        out->backlog += t->backlog;
        out->found_in_ingest += t->found_in_ingest;
        out->batches += t->batches;
        if (t->drain_ms > out->drain_ms)
            out->drain_ms = t->drain_ms;
        out->ota_committed += t->ota_committed;
        out->ota_rolled_back += t->ota_rolled_back;
        out->ota_failed += t->ota_failed;
        out->ota_idle += t->ota_idle;
        out->ota_other += t->ota_other;
        out->ota_reboots += t->ota_reboots;
        out->ota_crashes += t->ota_crashes;
        out->offline += t->offline;
    }
    fleet_summarize(m->delays, m->n_delays, m->before, m->n_before, out);
    out->peak_requests_per_s = m->peak_after;
}

static int concat_parts(const char *devices_out, unsigned n)
{
    FILE *f = fopen(devices_out, "w");
    if (!f) {
        fprintf(stderr, "ferry-fleet: %s: %s\n", devices_out, strerror(errno));
        return -1;
    }
    int rc = 0;
    for (unsigned i = 0; i < n; i++) {
        char part[4096];
        snprintf(part, sizeof part, "%s.part%u", devices_out, i);
        FILE *p = fopen(part, "r");
        if (!p) {
            rc = -1;
            continue;
        }
        char buf[65536];
        size_t r;
        while ((r = fread(buf, 1, sizeof buf, p)) > 0)
            if (fwrite(buf, 1, r, f) != r)
                rc = -1;
        fclose(p);
        unlink(part);
    }
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
    interrupted = 1;
}

static void stop_workers(struct worker *w, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (w[i].pid > 0)
            kill(w[i].pid, SIGTERM);
}

int fleet_run_workers(const struct fleet_config *cfg, unsigned n_procs, const char *devices_out,
                      struct fleet_totals *out, int *completed)
{
    struct merge m = {.n = n_procs, .next_second = 1, .cfg = cfg};
    m.w = calloc(n_procs, sizeof *m.w);
    if (!m.w)
        return -1;
    int rc = -1;
    unsigned started = 0;
    fflush(NULL); /* nothing buffered is written twice */
    for (unsigned i = 0; i < n_procs; i++) {
        struct worker *w = &m.w[i];
        unsigned first = (unsigned)((uint64_t)cfg->devices * i / n_procs);
        unsigned end = (unsigned)((uint64_t)cfg->devices * (i + 1) / n_procs);
        int out_p[2], go_p[2];
        if (pipe2(out_p, O_CLOEXEC) != 0)
            goto out;
        if (pipe2(go_p, O_CLOEXEC) != 0) {
            close(out_p[0]);
            close(out_p[1]);
            goto out;
        }
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "ferry-fleet: fork: %s\n", strerror(errno));
            close(out_p[0]);
            close(out_p[1]);
            close(go_p[0]);
            close(go_p[1]);
            goto out;
        }
        if (pid == 0) {
            close(out_p[0]);
            close(go_p[1]);
            for (unsigned j = 0; j < i; j++) {
                close(m.w[j].out_fd);
                close(m.w[j].go_fd);
            }
            struct fleet_config c = *cfg;
            c.first_device = first;
            c.devices = end - first;
            char part[4096];
            if (devices_out)
                snprintf(part, sizeof part, "%s.part%u", devices_out, i);
            _exit(worker_main(c, out_p[1], go_p[0], devices_out ? part : NULL));
        }
        close(out_p[1]);
        close(go_p[0]);
        w->pid = pid;
        w->out_fd = out_p[0];
        w->go_fd = go_p[1];
        started++;
    }
    fprintf(stderr, "fleet: %u devices in %u processes, creating...\n", cfg->devices, n_procs);
    /* Ctrl-C ends the run, not the report: the workers stop their loops and send totals. */
    struct sigaction sa = {.sa_handler = on_interrupt};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int stop_sent = 0;
    int go_sent = 0;
    struct pollfd *pfd = calloc(n_procs, sizeof *pfd);
    if (!pfd)
        goto out;
    for (;;) {
        unsigned open_fds = 0, ready = 0;
        for (unsigned i = 0; i < n_procs; i++) {
            pfd[i].fd = m.w[i].eof ? -1 : m.w[i].out_fd;
            pfd[i].events = POLLIN;
            open_fds += !m.w[i].eof;
            ready += m.w[i].ready;
        }
        if (!go_sent && !stop_sent && ready == n_procs) {
            fprintf(stderr, "fleet: all %u devices created, starting\n", cfg->devices);
            if (cfg->on_start)
                cfg->on_start(cfg->on_start_arg);
            for (unsigned i = 0; i < n_procs; i++)
                if (write_all(m.w[i].go_fd, "g", 1) < 0)
                    goto out_pfd;
            go_sent = 1;
        }
        if (!open_fds)
            break;
        if (interrupted && !stop_sent) {
            stop_workers(m.w, started);
            if (!go_sent) /* a worker waiting for the start reads end-of-file and exits */
                for (unsigned i = 0; i < n_procs; i++) {
                    close(m.w[i].go_fd);
                    m.w[i].go_fd = -1;
                }
            stop_sent = 1;
        }
        if (poll(pfd, n_procs, -1) < 0) {
            if (errno == EINTR)
                continue;
            goto out_pfd;
        }
        for (unsigned i = 0; i < n_procs; i++) {
            if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            if (pump(&m, &m.w[i]) < 0) {
                fprintf(stderr, "ferry-fleet: worker %u: bad message\n", i);
                goto out_pfd;
            }
            if (m.w[i].eof && !m.w[i].ready) {
                fprintf(stderr, "ferry-fleet: worker %u ended before its devices were ready\n", i);
                goto out_pfd;
            }
        }
        finalize_seconds(&m);
    }
    rc = 0;
    for (unsigned i = 0; i < n_procs; i++) {
        int status;
        while (waitpid(m.w[i].pid, &status, 0) < 0 && errno == EINTR) {
        }
        m.w[i].pid = 0;
        if (!m.w[i].finished || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "ferry-fleet: worker %u (devices from %u) did not finish\n", i,
                    (unsigned)((uint64_t)cfg->devices * i / n_procs));
            rc = -1;
        }
    }
    merge_totals(&m, out, completed);
    if (devices_out && concat_parts(devices_out, n_procs) < 0)
        fprintf(stderr, "ferry-fleet: %s: could not write every device\n", devices_out);
out_pfd:
    free(pfd);
out:
    stop_workers(m.w, started);
    for (unsigned i = 0; i < started; i++) {
        if (m.w[i].pid > 0)
            while (waitpid(m.w[i].pid, NULL, 0) < 0 && errno == EINTR) {
            }
        close(m.w[i].out_fd);
        if (m.w[i].go_fd >= 0)
            close(m.w[i].go_fd);
        free(m.w[i].buf);
        free(m.w[i].secs);
    }
    free(m.w);
    free(m.delays);
    free(m.before);
    return rc;
}
