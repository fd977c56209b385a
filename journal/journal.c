/*
 * journal.c - opening, recovering, reading, acknowledging and inspecting the device journal.
 *
 * Design (the whole contract is journal/journal.h; the file layout is docs/journal.md):
 *
 *   1. A writable open never trusts a file it did not verify: a forked child opens it read-only
 *      and walks every table (a damaged page can make LMDB read wild memory; in a child that is a
 *      signal, not a dead daemon). A file that fails is renamed journal.mdb.broken-<secs> and a
 *      fresh journal starts with sequences above journal.hwm's reservations (invariant: a
 *      committed sequence is never reused, even across recreation).
 *   2. The LMDB map size is the quota, so the data file cannot grow past it; jcommit.c evicts
 *      above the soft limit so that commits keep finding free pages.
 *   3. Reads run in their own read-only transaction (MDB_NOTLS, any thread) and never wait for
 *      the committer; acks and gc run in short write transactions of the calling thread,
 *      serialized with the committer by write_mu.
 *   4. Compaction is the only operation that closes the environment while the handle lives; it
 *      holds env_lock exclusively, which every other LMDB user holds shared.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "journal/journal_int.h"

#define J_MIN_QUOTA (1024ull * 1024)
#define J_PAGE 4096u

static const char *const table_names[] = {"event", "metric", "log",  "meta",
                                          "acks",  "gaps",   "state"};
#define J_TABLES 7

const char *journal_strerror(int err)
{
    switch (err) {
    case JOURNAL_OK: return "success";
    case JOURNAL_EINVAL: return "invalid argument";
    case JOURNAL_ENOMEM: return "out of memory";
    case JOURNAL_EIO: return "file I/O error";
    case JOURNAL_ELMDB: return "unexpected LMDB error";
    case JOURNAL_EFULL: return "journal quota reached and nothing may be evicted for this stream";
    case JOURNAL_ECLOSED: return "journal is closed or its committer stopped";
    case JOURNAL_EAGAIN: return "append queue full";
    case JOURNAL_ETOOBIG: return "record or value too large";
    case JOURNAL_ECORRUPT: return "journal file is damaged";
    case JOURNAL_EVERSION: return "journal file has another format version";
    case JOURNAL_ENOTFOUND: return "not found";
    case JOURNAL_ERANGE: return "sequence range not assigned";
    case JOURNAL_ERDONLY: return "journal opened read-only";
    case JOURNAL_EBUSY: return "journal is open for writing by another process";
    default: return "unknown journal error";
    }
}

const char *journal_durability_name(enum journal_durability mode)
{
    switch (mode) {
    case JOURNAL_SYNC_COMMIT: return "commit";
    case JOURNAL_SYNC_PERIODIC: return "periodic";
    case JOURNAL_SYNC_OS: return "os";
    }
    return NULL;
}

int journal_durability_parse(const char *name, enum journal_durability *out)
{
    if (!name || !out)
        return JOURNAL_EINVAL;
    for (int m = JOURNAL_SYNC_COMMIT; m <= JOURNAL_SYNC_OS; m++) {
        if (strcmp(name, journal_durability_name((enum journal_durability)m)) == 0) {
            *out = (enum journal_durability)m;
            return 0;
        }
    }
    return JOURNAL_EINVAL;
}

const char *journal_gap_reason_name(enum journal_gap_reason reason)
{
    switch (reason) {
    case JOURNAL_GAP_QUOTA: return "quota";
    case JOURNAL_GAP_WRITE_FAILED: return "write-failed";
    case JOURNAL_GAP_RECOVERY: return "recovery";
    }
    return "unknown";
}

void journal_config_init(struct journal_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->quota_bytes = 256ull * 1024 * 1024;
    cfg->durability = JOURNAL_SYNC_COMMIT;
    cfg->group_window_us = 200;
    cfg->sync_interval_ms = 1000;
    cfg->group_max_bytes = 4u * 1024 * 1024;
    cfg->queue_max_bytes = 16u * 1024 * 1024;
    cfg->max_record_bytes = 1024 * 1024;
    cfg->delete_chunk_records = 10000;
}

static void errf(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void errf(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (!errbuf || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + 1 + strlen(name) + 1;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* ---- verification ------------------------------------------------------------------------ */

/* Checks the file: its size against its meta page, and with `walk` every table and record.
 * The walk runs in a forked child for writable opens (a damaged page must not take the daemon
 * down); read-only opens only check the size (reading past the end of the file would be
 * SIGBUS) and leave the rest to env_open(). */
static int verify_file(const char *path, bool walk, char *why, size_t whylen)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    struct stat st;
    int rc = JOURNAL_ECORRUPT;
    if (stat(path, &st) != 0) {
        int e = errno;
        errf(why, whylen, "stat %s: %s", path, strerror(e));
        return e == ENOENT ? JOURNAL_ENOTFOUND : JOURNAL_EIO;
    }
    if (st.st_size < 2 * J_PAGE) {
        errf(why, whylen, "%s is truncated: %lld bytes, smaller than two meta pages", path,
             (long long)st.st_size);
        return JOURNAL_ECORRUPT;
    }
    int mrc = mdb_env_create(&env);
    if (mrc == 0)
        mrc = mdb_env_set_maxdbs(env, 16);
    if (mrc == 0)
        mrc = mdb_env_open(env, path, MDB_RDONLY | MDB_NOSUBDIR | MDB_NOLOCK | MDB_NOTLS, 0600);
    if (mrc) {
        errf(why, whylen, "mdb_env_open %s: %s", path, mdb_strerror(mrc));
        rc = mrc == MDB_VERSION_MISMATCH ? JOURNAL_EVERSION : j_lmdb_err(mrc);
        if (rc != JOURNAL_EIO && rc != JOURNAL_ENOMEM && rc != JOURNAL_EVERSION)
            rc = JOURNAL_ECORRUPT;
        goto out;
    }
    MDB_envinfo info;
    MDB_stat est;
    if (mdb_env_info(env, &info) || mdb_env_stat(env, &est))
        goto out;
    uint64_t need = ((uint64_t)info.me_last_pgno + 1) * est.ms_psize;
    /* The size again, now that the meta page is read: a writer running beside a read-only
     * opener commits between the first stat and the meta read, and its meta page then names
     * pages past the size seen before (the file grows before the meta page is written, so a
     * size taken after the meta read is always large enough for an intact file). */
    if (stat(path, &st) != 0) {
        int e = errno;
        errf(why, whylen, "stat %s: %s", path, strerror(e));
        rc = JOURNAL_EIO;
        goto out;
    }
    if ((uint64_t)st.st_size < need) {
        errf(why, whylen, "%s is truncated: %lld bytes, its meta page needs %" PRIu64, path,
             (long long)st.st_size, need);
        goto out;
    }
    if (!walk) {
        /* Read-only opens stop here: the tables are checked by env_open() under a proper
         * reader slot (this environment has none, MDB_NOLOCK, so a writer running beside us
         * could reuse the pages we would read). */
        rc = 0;
        goto out;
    }
    if ((mrc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn))) {
        errf(why, whylen, "mdb_txn_begin %s: %s", path, mdb_strerror(mrc));
        goto out;
    }
    MDB_dbi dbi[J_TABLES];
    for (int t = 0; t < J_TABLES; t++) {
        if ((mrc = mdb_dbi_open(txn, table_names[t], 0, &dbi[t]))) {
            errf(why, whylen, "%s: table '%s' unreadable: %s", path, table_names[t],
                 mdb_strerror(mrc));
            goto out;
        }
    }
    MDB_val k = {sizeof("format_version") - 1, (void *)"format_version"}, v;
    if ((mrc = mdb_get(txn, dbi[3], &k, &v)) || v.mv_size != 4) {
        errf(why, whylen, "%s: no format_version key: %s", path,
             mrc ? mdb_strerror(mrc) : "wrong size");
        goto out;
    }
    uint32_t version = (uint32_t)((const uint8_t *)v.mv_data)[0] |
                       (uint32_t)((const uint8_t *)v.mv_data)[1] << 8 |
                       (uint32_t)((const uint8_t *)v.mv_data)[2] << 16 |
                       (uint32_t)((const uint8_t *)v.mv_data)[3] << 24;
    if (version != JOURNAL_FORMAT_VERSION) {
        errf(why, whylen, "%s: format version %u, expected %d", path, version,
             JOURNAL_FORMAT_VERSION);
        rc = JOURNAL_EVERSION;
        goto out;
    }
    k.mv_size = sizeof("counters") - 1;
    k.mv_data = (void *)"counters";
    if ((mrc = mdb_get(txn, dbi[3], &k, &v)) || v.mv_size != J_COUNTERS_U64 * 8) {
        errf(why, whylen, "%s: counters missing or malformed", path);
        goto out;
    }
    uint64_t next_seq[J_STREAMS];
    for (int s = 0; s < J_STREAMS; s++)
        next_seq[s] = j_get_le64((const uint8_t *)v.mv_data + 8 * (6 * s));
    {
        for (int t = 0; t < J_TABLES; t++) {
            MDB_cursor *c;
            if ((mrc = mdb_cursor_open(txn, dbi[t], &c)))
                goto walk_fail;
            uint64_t prev = 0;
            while ((mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == 0) {
                if (t < J_STREAMS) {
                    uint64_t seq = k.mv_size == 8 ? j_get_be64(k.mv_data) : 0;
                    if (k.mv_size != 8 || v.mv_size < J_VALUE_HDR || seq <= prev ||
                        seq >= next_seq[t]) {
                        mdb_cursor_close(c);
                        errf(why, whylen, "%s: table '%s' has a bad record after seq %" PRIu64,
                             path, table_names[t], prev);
                        goto out;
                    }
                    prev = seq;
                }
            }
            mdb_cursor_close(c);
            if (mrc != MDB_NOTFOUND) {
            walk_fail:
                errf(why, whylen, "%s: walking table '%s': %s", path, table_names[t],
                     mdb_strerror(mrc));
                goto out;
            }
        }
    }
    rc = 0;
out:
    if (txn)
        mdb_txn_abort(txn);
    if (env)
        mdb_env_close(env);
    return rc;
}

/* Runs verify_file(walk) in a child so that a wild read in a damaged file kills the child. */
static int verify_in_child(const char *path, int close_fd, char *why, size_t whylen)
{
    /* No file, nothing to verify: do not fork for it. A fork copies the opener's page tables,
     * so in a process holding thousands of journals (ferry-fleet) one fork per fresh journal
     * made creating N of them quadratic (2,000 took 170 s). */
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        errf(why, whylen, "stat %s: %s", path, strerror(e));
        return e == ENOENT ? JOURNAL_ENOTFOUND : JOURNAL_EIO;
    }
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        errf(why, whylen, "pipe: %s", strerror(errno));
        return JOURNAL_EIO;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        errf(why, whylen, "fork: %s", strerror(errno));
        return JOURNAL_EIO;
    }
    if (pid == 0) {
        /* Do not hold the owner lock (shared through the inherited descriptor) and do not
         * outlive the opener: a killed daemon must not leave a verifier that blocks the next
         * start. */
        close(close_fd);
        close(fds[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(9);
        /* The parent's handlers (a test framework's, a daemon's) must not catch a fault here:
         * a wild read has to end this child with the signal. */
        int sigs[] = {SIGBUS, SIGSEGV, SIGILL, SIGFPE, SIGABRT, SIGALRM};
        for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
            signal(sigs[i], SIG_DFL);
        alarm(300); /* a loop in damaged pages must not hang the open */
        char msg[512] = "";
        int rc = verify_file(path, true, msg, sizeof(msg));
        size_t n = strlen(msg);
        if (write(fds[1], msg, n) < 0) {
            /* nothing to do: the exit status still says what happened */
        }
        _exit(rc == 0                   ? 0
              : rc == JOURNAL_EVERSION  ? 2
              : rc == JOURNAL_EIO       ? 3
              : rc == JOURNAL_ENOTFOUND ? 4
                                        : 1);
    }
    close(fds[1]);
    char msg[512];
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fds[0], msg + got, sizeof(msg) - 1 - got);
        if (r > 0) {
            got += (size_t)r;
            if (got == sizeof(msg) - 1)
                break;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        break;
    }
    msg[got] = '\0';
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            errf(why, whylen, "waitpid: %s", strerror(errno));
            return JOURNAL_EIO;
        }
    }
    if (WIFSIGNALED(status)) {
        errf(why, whylen, "%s: reading it killed the verifier with signal %d (damaged pages)", path,
             WTERMSIG(status));
        return JOURNAL_ECORRUPT;
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    if (code == 0)
        return 0;
    errf(why, whylen, "%s", msg[0] ? msg : "verification failed");
    switch (code) {
    case 2: return JOURNAL_EVERSION;
    case 3: return JOURNAL_EIO;
    case 4: return JOURNAL_ENOTFOUND;
    default: return JOURNAL_ECORRUPT;
    }
}

/* ---- environment ------------------------------------------------------------------------- */

static int fsync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

/* Opens j->env and the tables; for a writable journal creates what is missing (a new journal:
 * format version and counters whose sequences start above journal.hwm). */
static int env_open(struct journal *j, bool *created, char *errbuf, size_t errlen)
{
    int mrc = mdb_env_create(&j->env);
    if (mrc) {
        errf(errbuf, errlen, "mdb_env_create: %s", mdb_strerror(mrc));
        return j_lmdb_err(mrc);
    }
    unsigned flags = MDB_NOSUBDIR | MDB_NOTLS;
    if (j->cfg.read_only)
        flags |= MDB_RDONLY;
    else if (j->cfg.durability != JOURNAL_SYNC_COMMIT)
        flags |= MDB_NOSYNC;
    MDB_txn *txn = NULL;
    int rc;
    mrc = mdb_env_set_maxdbs(j->env, 16);
    if (mrc == 0 && !j->cfg.read_only)
        mrc = mdb_env_set_mapsize(j->env, (size_t)j->mapsize);
    if (mrc == 0)
        mrc = mdb_env_set_maxreaders(j->env, 126);
    if (mrc == 0)
        mrc = mdb_env_open(j->env, j->path, flags, 0600);
    if (mrc) {
        errf(errbuf, errlen, "mdb_env_open %s: %s", j->path, mdb_strerror(mrc));
        rc = j_lmdb_err(mrc);
        goto fail;
    }
    MDB_stat est;
    mdb_env_stat(j->env, &est);
    j->psize = est.ms_psize;
    mrc = mdb_txn_begin(j->env, NULL, j->cfg.read_only ? MDB_RDONLY : 0, &txn);
    if (mrc) {
        errf(errbuf, errlen, "mdb_txn_begin %s: %s", j->path, mdb_strerror(mrc));
        rc = j_lmdb_err(mrc);
        goto fail;
    }
    MDB_dbi *dbis[J_TABLES] = {&j->dbi_stream[0], &j->dbi_stream[1], &j->dbi_stream[2],
                               &j->dbi_meta,      &j->dbi_acks,      &j->dbi_gaps,
                               &j->dbi_state};
    for (int t = 0; t < J_TABLES; t++) {
        mrc = mdb_dbi_open(txn, table_names[t], j->cfg.read_only ? 0 : MDB_CREATE, dbis[t]);
        if (mrc) {
            errf(errbuf, errlen, "%s: table '%s': %s", j->path, table_names[t], mdb_strerror(mrc));
            rc = mrc == MDB_NOTFOUND ? JOURNAL_ECORRUPT : j_lmdb_err(mrc);
            goto fail;
        }
    }
    MDB_val k = {sizeof("format_version") - 1, (void *)"format_version"}, v;
    mrc = mdb_get(txn, j->dbi_meta, &k, &v);
    if (mrc == MDB_NOTFOUND && !j->cfg.read_only) {
        uint8_t ver[4] = {JOURNAL_FORMAT_VERSION & 0xff, 0, 0, 0};
        v.mv_size = 4;
        v.mv_data = ver;
        rc = j_lmdb_err(mdb_put(txn, j->dbi_meta, &k, &v, 0));
        struct jcounters c;
        memset(&c, 0, sizeof(c));
        for (int s = 0; s < J_STREAMS; s++)
            c.next_seq[s] = j->hwm_reserved[s] + 1;
        c.gap_next_id = 1;
        if (rc == 0)
            rc = j_counters_store(j, txn, &c);
        if (rc) {
            errf(errbuf, errlen, "%s: initialising: %s", j->path, journal_strerror(rc));
            goto fail;
        }
        if (created)
            *created = true;
    } else if (mrc) {
        errf(errbuf, errlen, "%s: format_version: %s", j->path, mdb_strerror(mrc));
        rc = mrc == MDB_NOTFOUND ? JOURNAL_ECORRUPT : j_lmdb_err(mrc);
        goto fail;
    } else if (v.mv_size != 4 || ((const uint8_t *)v.mv_data)[0] != JOURNAL_FORMAT_VERSION) {
        errf(errbuf, errlen, "%s: format version is not %d", j->path, JOURNAL_FORMAT_VERSION);
        rc = JOURNAL_EVERSION;
        goto fail;
    }
    rc = j_counters_load(j, txn, &j->counters);
    if (rc) {
        errf(errbuf, errlen, "%s: counters: %s", j->path, journal_strerror(rc));
        goto fail;
    }
    if (!j->cfg.read_only) {
        uint64_t used;
        rc = j_used_bytes(j, txn, &used);
        if (rc)
            goto fail;
        j->used_bytes = used;
    }
    mrc = mdb_txn_commit(txn);
    txn = NULL;
    if (mrc) {
        errf(errbuf, errlen, "%s: commit: %s", j->path, mdb_strerror(mrc));
        rc = j_lmdb_err(mrc);
        goto fail;
    }
    return 0;
fail:
    if (txn)
        mdb_txn_abort(txn);
    mdb_env_close(j->env);
    j->env = NULL;
    return rc;
}

static void journal_free(struct journal *j)
{
    if (!j)
        return;
    if (j->env)
        mdb_env_close(j->env);
    if (j->owner_fd >= 0)
        close(j->owner_fd);
    free(j->fill.data);
    free(j->spare.data);
    free(j->dir);
    free(j->path);
    free(j->lock_path);
    free(j->hwm_path);
    free(j->owner_path);
    pthread_rwlock_destroy(&j->env_lock);
    pthread_mutex_destroy(&j->write_mu);
    pthread_mutex_destroy(&j->q_mu);
    pthread_cond_destroy(&j->commit_cv);
    pthread_cond_destroy(&j->space_cv);
    pthread_cond_destroy(&j->done_cv);
    free(j);
}

static int move_aside(struct journal *j, struct journal_open_info *info, char *errbuf,
                      size_t errlen)
{
    char dest[PATH_MAX];
    long long secs = (long long)time(NULL);
    for (int n = 0; n < 1000; n++) {
        int w = n ? snprintf(dest, sizeof(dest), "%s.broken-%lld-%d", j->path, secs, n)
                  : snprintf(dest, sizeof(dest), "%s.broken-%lld", j->path, secs);
        if (w < 0 || (size_t)w >= sizeof(dest)) {
            errf(errbuf, errlen, "path too long: %s", j->path);
            return JOURNAL_EINVAL;
        }
        struct stat st;
        if (stat(dest, &st) != 0)
            break;
    }
    if (rename(j->path, dest) != 0) {
        errf(errbuf, errlen, "rename %s -> %s: %s", j->path, dest, strerror(errno));
        return JOURNAL_EIO;
    }
    if (unlink(j->lock_path) != 0 && errno != ENOENT) {
        errf(errbuf, errlen, "unlink %s: %s", j->lock_path, strerror(errno));
        return JOURNAL_EIO;
    }
    if (fsync_path(j->dir, O_RDONLY | O_DIRECTORY) != 0) {
        errf(errbuf, errlen, "fsync %s: %s", j->dir, strerror(errno));
        return JOURNAL_EIO;
    }
    if (info)
        ferry_strlcpy(info->moved_to, dest, sizeof(info->moved_to));
    return 0;
}

/* A writer killed inside ferry_write_file_atomic() leaves journal.hwm.tmp.<pid> behind, and
 * one killed inside journal_compact() leaves journal.mdb.compact: we own the directory now
 * (owner lock held), so they can go. */
static void remove_stale_temp_files(struct journal *j)
{
    DIR *d = opendir(j->dir);
    if (!d)
        return;
    static const char hwm_tmp[] = JOURNAL_HWM_FILE_NAME ".tmp.";
    static const char compact_tmp[] = JOURNAL_FILE_NAME ".compact";
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, hwm_tmp, sizeof(hwm_tmp) - 1) == 0 ||
            strcmp(e->d_name, compact_tmp) == 0) {
            char *p = path_join(j->dir, e->d_name);
            if (p)
                (void)unlink(p);
            free(p);
        }
    }
    closedir(d);
}

static void compute_limits(struct journal *j)
{
    /* Reserve for copy-on-write: a commit writes new copies of the pages it changes before the
     * old ones are free, and pages freed by one commit are reusable only by later ones. */
    uint64_t reserve = j->mapsize / 8 + 2 * (uint64_t)j->cfg.group_max_bytes + 64ull * j->psize;
    if (reserve > j->mapsize / 2)
        reserve = j->mapsize / 2;
    j->soft_limit = j->mapsize - reserve;
    j->low_limit = j->soft_limit - j->mapsize / 16;
    /* Acks and gc must always find pages to copy-on-write the few pages they touch (a delete
     * reuses the pages it frees within its own transaction, so a few tree depths suffice). */
    uint64_t last_reserve = j->mapsize / 32 > 32ull * j->psize ? j->mapsize / 32 : 32ull * j->psize;
    j->event_limit = j->mapsize - last_reserve;
}

/* After a recovery: gap entries for what the lost file may have held, and the event. */
static void after_recovery(struct journal *j, const uint64_t reserved[J_STREAMS],
                           const uint64_t oldest[J_STREAMS], bool have_hwm,
                           struct journal_open_info *info)
{
    if (have_hwm) {
        pthread_rwlock_rdlock(&j->env_lock);
        pthread_mutex_lock(&j->write_mu);
        MDB_txn *txn;
        if (mdb_txn_begin(j->env, NULL, 0, &txn) == 0) {
            struct jcounters c = j->counters;
            int rc = 0;
            for (int s = 0; s < J_STREAMS && !rc; s++) {
                uint64_t first = oldest[s] ? oldest[s] : 1;
                if (reserved[s] >= first)
                    rc = j_gap_add(j, txn, &c, s, first, reserved[s], JOURNAL_GAP_RECOVERY);
            }
            if (!rc)
                rc = j_counters_store(j, txn, &c);
            if (!rc && mdb_txn_commit(txn) == 0)
                j->counters = c;
            else if (rc)
                mdb_txn_abort(txn);
        }
        pthread_mutex_unlock(&j->write_mu);
        pthread_rwlock_unlock(&j->env_lock);
    }
    if (!j->cfg.encode_event)
        return;
    uint8_t buf[4096];
    size_t len = 0;
    char message[4600];
    snprintf(message, sizeof(message), "journal file could not be used (%s); moved to %s",
             info->reason, info->moved_to);
    if (j->cfg.encode_event(j->cfg.encode_event_arg, "journal.recovered", message,
                            ferry_realtime_ns(), buf, sizeof(buf), &len) != 0 ||
        len == 0 || len > sizeof(buf))
        return;
    if (journal_append(j, RECORD_EVENT, ferry_realtime_ns(), buf, len, JOURNAL_APPEND_WAIT, NULL) ==
        0)
        info->recovery_event_appended = true;
}

int journal_open(const char *data_dir, const struct journal_config *cfg_in, struct journal **out,
                 struct journal_open_info *info, char *errbuf, size_t errlen)
{
    struct journal_open_info dummy;
    if (!info)
        info = &dummy;
    memset(info, 0, sizeof(*info));
    if (!data_dir || !*data_dir || !out) {
        errf(errbuf, errlen, "journal_open: data_dir and out are required");
        return JOURNAL_EINVAL;
    }
    *out = NULL;
    struct journal_config cfg;
    if (cfg_in)
        cfg = *cfg_in;
    else
        journal_config_init(&cfg);
    if (!cfg.read_only) {
        if (cfg.quota_bytes < J_MIN_QUOTA || cfg.quota_bytes > (uint64_t)SIZE_MAX ||
            journal_durability_name(cfg.durability) == NULL || cfg.max_record_bytes == 0 ||
            cfg.max_record_bytes > 64u * 1024 * 1024 || cfg.delete_chunk_records == 0 ||
            cfg.queue_max_bytes == 0 || cfg.group_max_bytes == 0 || cfg.keep_acked_metrics_ms < 0 ||
            cfg.keep_acked_metrics_ms > 366LL * 86400 * 1000 ||
            (cfg.durability == JOURNAL_SYNC_PERIODIC && cfg.sync_interval_ms == 0)) {
            errf(errbuf, errlen,
                 "journal_open: invalid config (quota >= 1 MiB, a known durability, "
                 "non-zero sizes, max_record_bytes <= 64 MiB)");
            return JOURNAL_EINVAL;
        }
    }
    struct journal *j = calloc(1, sizeof(*j));
    if (!j)
        return JOURNAL_ENOMEM;
    j->owner_fd = -1;
    pthread_rwlock_init(&j->env_lock, NULL);
    pthread_mutex_init(&j->write_mu, NULL);
    pthread_mutex_init(&j->q_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->commit_cv, &ca);
    pthread_cond_init(&j->space_cv, &ca);
    pthread_cond_init(&j->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    j->cfg = cfg;
    j->mapsize = cfg.quota_bytes / J_PAGE * J_PAGE;
    if (j->cfg.group_max_bytes > j->mapsize / 16)
        j->cfg.group_max_bytes = (size_t)(j->mapsize / 16);
    /* One arena is one transaction: keep it small against the quota (eviction makes room for
     * a whole arena before it writes). */
    if (j->cfg.queue_max_bytes > j->mapsize / 8)
        j->cfg.queue_max_bytes = (size_t)(j->mapsize / 8);
    int rc = JOURNAL_ENOMEM;
    j->dir = strdup(data_dir);
    j->path = path_join(data_dir, JOURNAL_FILE_NAME);
    j->lock_path = path_join(data_dir, JOURNAL_LOCK_FILE_NAME);
    j->hwm_path = path_join(data_dir, JOURNAL_HWM_FILE_NAME);
    j->owner_path = path_join(data_dir, JOURNAL_OWNER_FILE_NAME);
    if (!j->dir || !j->path || !j->lock_path || !j->hwm_path || !j->owner_path)
        goto fail;

    if (cfg.read_only) {
        char why[512] = "";
        rc = verify_file(j->path, false, why, sizeof(why));
        if (rc) {
            errf(errbuf, errlen, "%s", why);
            goto fail;
        }
        rc = env_open(j, NULL, errbuf, errlen);
        if (rc)
            goto fail;
        *out = j;
        return 0;
    }

    int mk = ferry_mkdir_p(data_dir, 0700);
    if (mk) {
        errf(errbuf, errlen, "mkdir %s: %s", data_dir, strerror(-mk));
        rc = JOURNAL_EIO;
        goto fail;
    }
    j->owner_fd = open(j->owner_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (j->owner_fd < 0) {
        errf(errbuf, errlen, "open %s: %s", j->owner_path, strerror(errno));
        rc = JOURNAL_EIO;
        goto fail;
    }
    /* A previous writer that was killed may leave its verifier child holding the lock for a
     * moment (until PR_SET_PDEATHSIG ends it): retry for about a second before EBUSY. */
    int lrc = -1;
    for (int attempt = 0; attempt < 100; attempt++) {
        lrc = flock(j->owner_fd, LOCK_EX | LOCK_NB);
        if (lrc == 0 || errno != EWOULDBLOCK)
            break;
        usleep(10 * 1000);
    }
    if (lrc != 0) {
        int e = errno; /* before errf() can change it */
        errf(errbuf, errlen, "%s: %s", j->owner_path,
             e == EWOULDBLOCK ? "another process has this journal open for writing" : strerror(e));
        rc = e == EWOULDBLOCK ? JOURNAL_EBUSY : JOURNAL_EIO;
        goto fail;
    }

    remove_stale_temp_files(j);
    uint64_t reserved[J_STREAMS] = {0}, oldest[J_STREAMS] = {0};
    int hrc = j_hwm_read(j->hwm_path, reserved, oldest);
    bool have_hwm = hrc == 0;
    if (!have_hwm)
        memset(reserved, 0, sizeof(reserved));
    memcpy(j->hwm_reserved, reserved, sizeof(reserved));

    char why[512] = "";
    rc = verify_in_child(j->path, j->owner_fd, why, sizeof(why));
    if (rc == JOURNAL_ENOTFOUND) {
        rc = 0; /* no journal yet */
    } else if (rc == JOURNAL_ECORRUPT || rc == JOURNAL_EVERSION) {
        if (cfg.no_recovery) {
            errf(errbuf, errlen, "%s", why);
            goto fail;
        }
        ferry_strlcpy(info->reason, why, sizeof(info->reason));
        rc = move_aside(j, info, errbuf, errlen);
        if (rc)
            goto fail;
        info->recovered = true;
        if (!have_hwm) {
            size_t l = strlen(info->reason);
            snprintf(info->reason + l, sizeof(info->reason) - l, "; no %s, sequences restart at 1",
                     JOURNAL_HWM_FILE_NAME);
        }
    } else if (rc) {
        errf(errbuf, errlen, "%s", why);
        goto fail;
    }
    bool created = false;
    rc = env_open(j, &created, errbuf, errlen);
    if (rc && rc != JOURNAL_EIO && rc != JOURNAL_ENOMEM) {
        /* The data file verified; what is left is LMDB's lock file (reader table), which only
         * readers share and which we may recreate: we hold the owner lock. A damaged one must
         * not keep the daemon from starting. */
        (void)unlink(j->lock_path);
        rc = env_open(j, &created, errbuf, errlen);
    }
    if (rc)
        goto fail;
    info->created = created && !info->recovered;
    for (int s = 0; s < J_STREAMS; s++) {
        /* An old file whose reservation file was lost or is behind: reserve from here. */
        if (j->hwm_reserved[s] < j->counters.next_seq[s] - 1)
            j->hwm_reserved[s] = j->counters.next_seq[s] - 1;
    }
    compute_limits(j);
    atomic_store(&j->refuse_nonevent, j->used_bytes > j->soft_limit);
    rc = j_committer_start(j);
    if (rc) {
        errf(errbuf, errlen, "cannot start the committer thread");
        goto fail;
    }
    if (info->recovered)
        after_recovery(j, reserved, oldest, have_hwm, info);
    *out = j;
    return 0;
fail:
    j_committer_stop(j);
    journal_free(j);
    return rc;
}

int journal_close(struct journal *j)
{
    if (!j)
        return 0;
    int rc = 0;
    if (!j->cfg.read_only) {
        j_committer_stop(j);
        rc = j->sticky_err;
        if (j->env) {
            int src = j_lmdb_err(mdb_env_sync(j->env, 1));
            if (!rc)
                rc = src;
        }
    }
    journal_free(j);
    return rc;
}

const char *journal_data_dir(const struct journal *j)
{
    return j ? j->dir : NULL;
}
const char *journal_file_path(const struct journal *j)
{
    return j ? j->path : NULL;
}

/* ---- read transactions ------------------------------------------------------------------- */

static int read_begin(struct journal *j, MDB_txn **txn)
{
    pthread_rwlock_rdlock(&j->env_lock);
    if (!j->env) {
        pthread_rwlock_unlock(&j->env_lock);
        return JOURNAL_ECLOSED;
    }
    int rc = j_lmdb_err(mdb_txn_begin(j->env, NULL, MDB_RDONLY, txn));
    if (rc)
        pthread_rwlock_unlock(&j->env_lock);
    return rc;
}

static void read_end(struct journal *j, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&j->env_lock);
}

static int write_begin(struct journal *j, MDB_txn **txn)
{
    if (j->cfg.read_only)
        return JOURNAL_ERDONLY;
    pthread_rwlock_rdlock(&j->env_lock);
    pthread_mutex_lock(&j->write_mu);
    int rc = j->env ? j_lmdb_err(mdb_txn_begin(j->env, NULL, 0, txn)) : JOURNAL_ECLOSED;
    if (rc) {
        pthread_mutex_unlock(&j->write_mu);
        pthread_rwlock_unlock(&j->env_lock);
    }
    return rc;
}

/* Commits (rc == 0) or aborts, installs the counters, and releases the write locks. */
static int write_end(struct journal *j, MDB_txn *txn, struct jcounters *c, int rc)
{
    if (rc == 0) {
        rc = j_counters_store(j, txn, c);
        if (rc == 0)
            j_recompute_limits(j, txn);
    }
    if (rc == 0) {
        rc = j_lmdb_err(mdb_txn_commit(txn));
        if (rc == 0)
            j->counters = *c;
    } else {
        mdb_txn_abort(txn);
    }
    pthread_mutex_unlock(&j->write_mu);
    pthread_rwlock_unlock(&j->env_lock);
    return rc;
}

/* ---- journal_read ------------------------------------------------------------------------ */

static int check_record(const MDB_val *k, const MDB_val *v)
{
    return (k->mv_size == 8 && v->mv_size >= J_VALUE_HDR) ? 0 : JOURNAL_ECORRUPT;
}

static int position(MDB_cursor *c, uint64_t seq, bool descending, MDB_val *k, MDB_val *v)
{
    uint8_t key[8];
    if (!descending) {
        j_be64(key, seq);
        k->mv_size = 8;
        k->mv_data = key;
        return mdb_cursor_get(c, k, v, MDB_SET_RANGE);
    }
    /* the largest key <= seq */
    if (seq == UINT64_MAX)
        return mdb_cursor_get(c, k, v, MDB_LAST);
    j_be64(key, seq + 1);
    k->mv_size = 8;
    k->mv_data = key;
    int rc = mdb_cursor_get(c, k, v, MDB_SET_RANGE);
    if (rc == MDB_NOTFOUND)
        return mdb_cursor_get(c, k, v, MDB_LAST);
    if (rc)
        return rc;
    return mdb_cursor_get(c, k, v, MDB_PREV);
}

int journal_read(struct journal *j, enum record_stream stream, const struct journal_read_opts *o,
                 journal_read_fn fn, void *arg, struct journal_read_result *res)
{
    struct journal_read_opts defaults = {0, 0, 0, 0};
    struct journal_read_result dummy;
    if (!res)
        res = &dummy;
    if (!o)
        o = &defaults;
    memset(res, 0, sizeof(*res));
    res->last_seq = o->from_seq;
    if (!j || !fn || (unsigned)stream >= J_STREAMS)
        return JOURNAL_EINVAL;
    bool desc = o->flags & JOURNAL_READ_NEWEST_FIRST;
    bool skip_acked = !(o->flags & JOURNAL_READ_INCLUDE_ACKED);
    if (desc && o->from_seq == 1)
        return 0;
    uint64_t start = desc ? (o->from_seq ? o->from_seq - 1 : UINT64_MAX) : o->from_seq + 1;
    if (!desc && o->from_seq == UINT64_MAX)
        return 0;
    MDB_txn *txn;
    int rc = read_begin(j, &txn);
    if (rc)
        return rc;
    MDB_cursor *c;
    rc = j_lmdb_err(mdb_cursor_open(txn, j->dbi_stream[stream], &c));
    if (rc) {
        read_end(j, txn);
        return rc;
    }
    /* The ack range around the cursor: for ascending reads the first range with last >= seq,
     * for descending ones the last range with first <= seq; looked up again only when the
     * cursor passes it, so a read costs one ack lookup per range, not per record. */
    bool have = false, found = false;
    uint64_t rf = 0, rl = 0;
    MDB_val k, v;
    int grc = position(c, start, desc, &k, &v);
    while (grc == 0) {
        rc = check_record(&k, &v);
        if (rc)
            break;
        uint64_t seq = j_get_be64(k.mv_data);
        bool acked = false;
        if (!have || (found && (desc ? seq < rf : seq > rl))) {
            rc = desc ? j_ack_find_le(j, txn, stream, seq, &found, &rf, &rl)
                      : j_ack_find_ge(j, txn, stream, seq, &found, &rf, &rl);
            if (rc)
                break;
            have = true;
        }
        acked = found && rf <= seq && seq <= rl;
        if (acked && skip_acked) {
            /* jump over the whole range */
            if (desc) {
                if (rf <= 1)
                    break;
                grc = position(c, rf - 1, true, &k, &v);
            } else {
                if (rl == UINT64_MAX)
                    break;
                grc = position(c, rl + 1, false, &k, &v);
            }
            continue;
        }
        size_t len = v.mv_size - J_VALUE_HDR;
        if (res->records > 0 && ((o->byte_budget && res->bytes + len > o->byte_budget) ||
                                 (o->max_records && res->records >= o->max_records))) {
            res->more = true;
            break;
        }
        struct journal_entry e = {
            stream, seq,  (int64_t)j_get_le64(v.mv_data), (const uint8_t *)v.mv_data + J_VALUE_HDR,
            len,    acked};
        res->records++;
        res->bytes += len;
        res->last_seq = seq;
        int cb = fn(arg, &e);
        if (cb) {
            rc = cb;
            MDB_val nk, nv;
            res->more = mdb_cursor_get(c, &nk, &nv, desc ? MDB_PREV : MDB_NEXT) == 0;
            break;
        }
        grc = mdb_cursor_get(c, &k, &v, desc ? MDB_PREV : MDB_NEXT);
    }
    if (rc == 0 && grc && grc != MDB_NOTFOUND)
        rc = j_lmdb_err(grc);
    mdb_cursor_close(c);
    read_end(j, txn);
    return rc;
}

/* ---- acks and gc ------------------------------------------------------------------------- */

int journal_ack(struct journal *j, enum record_stream stream, const struct journal_range *ranges,
                size_t n)
{
    if (!j || (unsigned)stream >= J_STREAMS || (n && !ranges) || n == 0)
        return JOURNAL_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (ranges[i].first == 0 || ranges[i].first > ranges[i].last)
            return JOURNAL_ERANGE;
    }
    MDB_txn *txn;
    int rc = write_begin(j, &txn);
    if (rc)
        return rc;
    struct jcounters c = j->counters;
    for (size_t i = 0; i < n && !rc; i++) {
        if (ranges[i].last >= c.next_seq[stream])
            rc = JOURNAL_ERANGE;
        else
            rc = j_ack_add(j, txn, &c, stream, ranges[i].first, ranges[i].last);
    }
    if (rc == 0) {
        size_t deleted = 0;
        bool more;
        rc = j_gc_stream(j, txn, &c, stream, j->cfg.delete_chunk_records,
                         j_keep_newer_than(j, stream), &deleted, &more);
    }
    return write_end(j, txn, &c, rc);
}

int journal_gc(struct journal *j, size_t max_records, size_t *out_deleted, bool *out_more)
{
    if (!j)
        return JOURNAL_EINVAL;
    size_t total = 0;
    bool more = false;
    int rc = 0;
    /* Nothing acknowledged is waiting: no write transaction (and no fsync) at all. */
    pthread_mutex_lock(&j->write_mu);
    for (int s = 0; s < J_STREAMS; s++)
        more = more || j->counters.acked_records[s] > 0;
    pthread_mutex_unlock(&j->write_mu);
    while (more && (max_records == 0 || total < max_records)) {
        size_t chunk = j->cfg.delete_chunk_records;
        if (max_records && max_records - total < chunk)
            chunk = max_records - total;
        MDB_txn *txn;
        rc = write_begin(j, &txn);
        if (rc)
            break;
        struct jcounters c = j->counters;
        size_t deleted = 0;
        more = false;
        for (int s = 0; s < J_STREAMS && rc == 0 && deleted < chunk; s++) {
            bool smore = false;
            rc = j_gc_stream(j, txn, &c, s, chunk, j_keep_newer_than(j, s), &deleted, &smore);
            more = more || smore;
        }
        if (deleted >= chunk && !more) {
            /* The chunk ended exactly at a stream boundary: look again next round. */
            more = false;
            for (int s = 0; s < J_STREAMS; s++)
                more = more || c.acked_records[s] > 0;
        }
        if (rc == 0 && deleted == 0 && j->cfg.keep_acked_metrics_ms > 0) {
            /* only retained metrics are acknowledged: no commit (and no fsync) for nothing */
            mdb_txn_abort(txn);
            pthread_mutex_unlock(&j->write_mu);
            pthread_rwlock_unlock(&j->env_lock);
            break;
        }
        rc = write_end(j, txn, &c, rc);
        if (rc)
            break;
        total += deleted;
        if (deleted == 0)
            more = false;
    }
    if (out_deleted)
        *out_deleted = total;
    if (out_more) {
        *out_more = false;
        pthread_mutex_lock(&j->write_mu);
        for (int s = 0; s < J_STREAMS; s++)
            *out_more = *out_more || j->counters.acked_records[s] > 0;
        pthread_mutex_unlock(&j->write_mu);
    }
    return rc;
}

/* ---- gaps -------------------------------------------------------------------------------- */

int journal_gaps(struct journal *j, struct journal_gap *out, size_t cap, size_t *out_n)
{
    if (!j || !out_n || (cap && !out))
        return JOURNAL_EINVAL;
    *out_n = 0;
    MDB_txn *txn;
    int rc = read_begin(j, &txn);
    if (rc)
        return rc;
    /* Under write_mu no write transaction is open, so the snapshot holds every committed gap
     * and the handed-out mark is set before j_gap_add() can look at it again: an entry that
     * leaves here is never widened afterwards (its widening would be lost when
     * journal_gaps_mark_reported() deletes it by id). */
    pthread_mutex_lock(&j->write_mu);
    mdb_txn_reset(txn);
    rc = j_lmdb_err(mdb_txn_renew(txn));
    if (rc) {
        pthread_mutex_unlock(&j->write_mu);
        read_end(j, txn);
        return rc;
    }
    MDB_cursor *c;
    rc = j_lmdb_err(mdb_cursor_open(txn, j->dbi_gaps, &c));
    if (rc == 0) {
        MDB_val k, v;
        int grc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
        while (grc == 0 && *out_n < cap) {
            if (k.mv_size != 8 || v.mv_size != 26) {
                rc = JOURNAL_ECORRUPT;
                break;
            }
            const uint8_t *p = v.mv_data;
            struct journal_gap *g = &out[(*out_n)++];
            g->id = j_get_be64(k.mv_data);
            g->stream = (enum record_stream)p[0];
            g->reason = (enum journal_gap_reason)p[1];
            g->first = j_get_le64(p + 2);
            g->last = j_get_le64(p + 10);
            g->ts_ns = (int64_t)j_get_le64(p + 18);
            grc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        }
        if (rc == 0 && grc && grc != MDB_NOTFOUND)
            rc = j_lmdb_err(grc);
        mdb_cursor_close(c);
    }
    if (rc == 0 && *out_n > 0 && out[*out_n - 1].id > j->gaps_handed_max_id)
        j->gaps_handed_max_id = out[*out_n - 1].id;
    pthread_mutex_unlock(&j->write_mu);
    read_end(j, txn);
    return rc;
}

int journal_gaps_newest_id(struct journal *j, uint64_t *out)
{
    if (!j || !out)
        return JOURNAL_EINVAL;
    *out = 0;
    MDB_txn *txn;
    int rc = read_begin(j, &txn);
    if (rc)
        return rc;
    MDB_cursor *c;
    rc = j_lmdb_err(mdb_cursor_open(txn, j->dbi_gaps, &c));
    if (rc == 0) {
        MDB_val k, v;
        int grc = mdb_cursor_get(c, &k, &v, MDB_LAST);
        if (grc == 0 && k.mv_size == 8)
            *out = j_get_be64(k.mv_data);
        else if (grc == 0)
            rc = JOURNAL_ECORRUPT;
        else if (grc != MDB_NOTFOUND)
            rc = j_lmdb_err(grc);
        mdb_cursor_close(c);
    }
    read_end(j, txn);
    return rc;
}

int journal_gaps_mark_reported(struct journal *j, uint64_t up_to_id)
{
    if (!j)
        return JOURNAL_EINVAL;
    MDB_txn *txn;
    int rc = write_begin(j, &txn);
    if (rc)
        return rc;
    struct jcounters c = j->counters;
    MDB_cursor *cur;
    rc = j_lmdb_err(mdb_cursor_open(txn, j->dbi_gaps, &cur));
    if (rc == 0) {
        MDB_val k, v;
        int grc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        while (grc == 0 && k.mv_size == 8 && j_get_be64(k.mv_data) <= up_to_id) {
            grc = mdb_cursor_del(cur, 0);
            if (grc == 0)
                grc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        if (grc && grc != MDB_NOTFOUND)
            rc = j_lmdb_err(grc);
        mdb_cursor_close(cur);
    }
    return write_end(j, txn, &c, rc);
}

/* ---- state ------------------------------------------------------------------------------- */

int journal_state_get(struct journal *j, const char *key, size_t key_len, void *buf, size_t cap,
                      size_t *out_len)
{
    if (!j || !key || key_len == 0 || key_len > JOURNAL_STATE_KEY_MAX || !out_len || (cap && !buf))
        return JOURNAL_EINVAL;
    MDB_txn *txn;
    int rc = read_begin(j, &txn);
    if (rc)
        return rc;
    MDB_val k = {key_len, (void *)key}, v;
    int mrc = mdb_get(txn, j->dbi_state, &k, &v);
    if (mrc) {
        rc = j_lmdb_err(mrc);
    } else {
        *out_len = v.mv_size;
        if (v.mv_size > cap)
            rc = JOURNAL_ETOOBIG;
        else if (v.mv_size)
            memcpy(buf, v.mv_data, v.mv_size);
    }
    read_end(j, txn);
    return rc;
}

int journal_state_foreach(struct journal *j, const char *prefix, size_t prefix_len,
                          journal_state_fn fn, void *arg)
{
    if (!j || !fn || (prefix_len && !prefix) || prefix_len > JOURNAL_STATE_KEY_MAX)
        return JOURNAL_EINVAL;
    MDB_txn *txn;
    int rc = read_begin(j, &txn);
    if (rc)
        return rc;
    MDB_cursor *c;
    rc = j_lmdb_err(mdb_cursor_open(txn, j->dbi_state, &c));
    if (rc == 0) {
        MDB_val k = {prefix_len, (void *)prefix}, v;
        int grc = prefix_len ? mdb_cursor_get(c, &k, &v, MDB_SET_RANGE)
                             : mdb_cursor_get(c, &k, &v, MDB_FIRST);
        while (grc == 0) {
            if (k.mv_size < prefix_len || memcmp(k.mv_data, prefix, prefix_len) != 0)
                break;
            int cb = fn(arg, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
            if (cb) {
                rc = cb;
                break;
            }
            grc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        }
        if (rc == 0 && grc && grc != MDB_NOTFOUND)
            rc = j_lmdb_err(grc);
        mdb_cursor_close(c);
    }
    read_end(j, txn);
    return rc;
}

/* ---- stats ------------------------------------------------------------------------------- */

int journal_stats(struct journal *j, struct journal_stats *out)
{
    if (!j || !out)
        return JOURNAL_EINVAL;
    memset(out, 0, sizeof(*out));
    MDB_txn *txn;
    int rc = read_begin(j, &txn);
    if (rc)
        return rc;
    struct jcounters c;
    rc = j_counters_load(j, txn, &c);
    int64_t now_ns = ferry_realtime_ns();
    for (int s = 0; s < J_STREAMS && rc == 0; s++) {
        struct journal_stream_stats *ss = &out->stream[s];
        MDB_stat st;
        rc = j_lmdb_err(mdb_stat(txn, j->dbi_stream[s], &st));
        if (rc)
            break;
        ss->records = st.ms_entries;
        ss->bytes = c.bytes[s];
        ss->unsent_records =
            st.ms_entries >= c.acked_records[s] ? st.ms_entries - c.acked_records[s] : 0;
        ss->unsent_bytes = c.bytes[s] >= c.acked_bytes[s] ? c.bytes[s] - c.acked_bytes[s] : 0;
        ss->next_seq = c.next_seq[s];
        ss->evicted_records = c.evicted[s];
        ss->evicted_acked_records = c.evicted_acked[s];
        bool found;
        uint64_t seq = 0;
        int64_t ts = 0;
        rc = j_oldest_unsent(j, txn, s, &found, &seq, &ts);
        if (rc == 0 && found) {
            ss->oldest_unsent_seq = seq;
            ss->oldest_unsent_ts_ns = ts;
            ss->oldest_unsent_age_ms = (now_ns - ts) / 1000000;
        }
    }
    if (rc == 0) {
        MDB_stat gst;
        rc = j_lmdb_err(mdb_stat(txn, j->dbi_gaps, &gst));
        out->gaps_pending = gst.ms_entries;
    }
    if (rc == 0)
        rc = j_used_bytes(j, txn, &out->used_bytes);
    read_end(j, txn);
    if (rc)
        return rc;
    out->evictions = c.evictions;
    out->quota_bytes = j->cfg.read_only ? 0 : j->mapsize;
    struct stat st;
    if (stat(j->path, &st) == 0)
        out->file_bytes = (uint64_t)st.st_size;
    out->commits = atomic_load(&j->commits);
    out->committed_records = atomic_load(&j->committed_records);
    out->failed_appends = atomic_load(&j->failed_appends);
    out->syncs = atomic_load(&j->syncs);
    pthread_mutex_lock(&j->q_mu);
    out->queued_bytes = j->fill.len + j->spare.len;
    pthread_mutex_unlock(&j->q_mu);
    out->durability = j->cfg.durability;
    if (j->cfg.read_only) {
        MDB_envinfo info;
        pthread_rwlock_rdlock(&j->env_lock);
        if (j->env && mdb_env_info(j->env, &info) == 0)
            out->quota_bytes = info.me_mapsize;
        pthread_rwlock_unlock(&j->env_lock);
    }
    return 0;
}

/* ---- compaction -------------------------------------------------------------------------- */

/* Calls madvise(MADV_DONTNEED) on every mapping of the file with device `dev` and inode `ino`
 * in this process. LMDB does not tell where its map is (mdb_env_info's me_mapaddr is only set
 * with MDB_FIXEDMAP), so /proc/self/maps does. Returns 0, or JOURNAL_EIO. */
static int j_drop_file_mappings(dev_t dev, ino_t ino)
{
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return JOURNAL_EIO;
    char line[512];
    int rc = 0;
    bool found = false;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long lo, hi, off, inode;
        unsigned maj, min;
        char perms[8];
        if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu", &lo, &hi, perms, &off, &maj, &min,
                   &inode) != 7)
            continue;
        if (inode != (unsigned long long)ino || maj != major(dev) || min != minor(dev))
            continue;
        found = true;
        /* LMDB's map is shared and, without MDB_WRITEMAP, read-only: dropping its page table
         * entries loses nothing; the pages stay in the page cache. */
        if (perms[3] != 's' || perms[1] == 'w')
            continue;
        if (madvise((void *)(uintptr_t)lo, (size_t)(hi - lo), MADV_DONTNEED) != 0)
            rc = JOURNAL_EIO;
    }
    /* A line longer than the buffer (a long path) is read in pieces; the pieces do not parse. */
    fclose(f);
    return found ? rc : JOURNAL_EIO;
}

int journal_release_memory(struct journal *j)
{
    if (!j)
        return JOURNAL_EINVAL;
    pthread_rwlock_rdlock(&j->env_lock);
    int rc = JOURNAL_ECLOSED;
    struct stat st;
    if (j->env) {
        /* Under env_lock: compaction (the only remap) cannot swap the file meanwhile. */
        if (stat(j->path, &st) != 0)
            rc = JOURNAL_EIO;
        else
            rc = j_drop_file_mappings(st.st_dev, st.st_ino);
    }
    pthread_rwlock_unlock(&j->env_lock);
    return rc;
}

int journal_compact(struct journal *j, char *errbuf, size_t errlen)
{
    if (!j)
        return JOURNAL_EINVAL;
    if (j->cfg.read_only)
        return JOURNAL_ERDONLY;
    size_t tlen = strlen(j->path) + sizeof(".compact");
    char *tmp = malloc(tlen);
    if (!tmp)
        return JOURNAL_ENOMEM;
    snprintf(tmp, tlen, "%s.compact", j->path);
    int rc = 0;
    pthread_rwlock_wrlock(&j->env_lock);
    pthread_mutex_lock(&j->write_mu);
    if (!j->env) {
        rc = JOURNAL_ECLOSED;
        goto out;
    }
    (void)unlink(tmp);
    int mrc = mdb_env_copy2(j->env, tmp, MDB_CP_COMPACT);
    if (mrc) {
        errf(errbuf, errlen, "mdb_env_copy2 %s: %s", tmp, mdb_strerror(mrc));
        rc = j_lmdb_err(mrc);
        (void)unlink(tmp);
        goto out;
    }
    int frc = fsync_path(tmp, O_RDONLY);
    if (frc) {
        errf(errbuf, errlen, "fsync %s: %s", tmp, strerror(-frc));
        rc = JOURNAL_EIO;
        (void)unlink(tmp);
        goto out;
    }
    /* From here the environment is closed: the copy replaces the file, then it is reopened.
     * The lock file goes too, so the reopened environment starts a fresh reader table. */
    mdb_env_close(j->env);
    j->env = NULL;
    if (rename(tmp, j->path) != 0) {
        errf(errbuf, errlen, "rename %s -> %s: %s", tmp, j->path, strerror(errno));
        rc = JOURNAL_EIO;
        (void)unlink(tmp);
    } else if (fsync_path(j->dir, O_RDONLY | O_DIRECTORY) != 0) {
        errf(errbuf, errlen, "fsync %s: %s", j->dir, strerror(errno));
        rc = JOURNAL_EIO;
    }
    (void)unlink(j->lock_path);
    int orc = env_open(j, NULL, errbuf, errlen);
    if (orc) {
        rc = orc;
        pthread_mutex_lock(&j->q_mu);
        if (!j->sticky_err)
            j->sticky_err = JOURNAL_ECLOSED;
        pthread_mutex_unlock(&j->q_mu);
    }
out:
    pthread_mutex_unlock(&j->write_mu);
    pthread_rwlock_unlock(&j->env_lock);
    free(tmp);
    return rc;
}
