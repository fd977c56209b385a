/*
 * tail.c - log files into `log` records, each read committed with the file's offset.
 *
 * Design: one inotify descriptor on the loop watches the directories of the configured globs
 * (a directory watch reports writes to the files in it, so there is one watch per directory and
 * no polling). An event marks its directory; the files followed there are then read from their
 * saved offset with pread() into one buffer, cut into records, and appended as ONE journal unit
 * together with the state-table entry "tail/NAME/PATH" = {dev, ino, offset, fingerprint, skip}
 * (journal_appendv_state). The parser keeps nothing between reads but that entry: a partial last
 * line, or an open multi-line record, is simply read again next time. So whatever is committed
 * describes exactly the records committed, and a restart continues from there.
 *
 * Rotation:
 *  - rename: the path names another inode (or none). The file still open is the old one: it is
 *    read to its end ("drained", a last line without newline included) in one unit that also
 *    moves the path's entry to the new inode at offset 0. After a restart the old file is found
 *    in the same directory by its inode.
 *  - copytruncate: the file is shorter than the offset, or its first bytes (the fingerprint of
 *    up to 256 consumed bytes) changed. The copy is looked for in the same directory (another
 *    inode whose first bytes have the same fingerprint and which is at least offset long); its
 *    bytes from offset on are drained in the unit that resets the path's offset to 0. Without a
 *    copy those bytes are lost and counted (lost_bytes), as with any tailer.
 *
 * Invariants:
 *  1. The offset in the state table is always the end of the last byte covered by a committed
 *     record (or skipped by a committed truncation), never inside an uncommitted one.
 *  2. A unit is appended whole or not at all (JOURNAL_EAGAIN leaves the in-memory offset alone
 *     and a 5 ms timer retries), so a retry never duplicates.
 *  3. A drained predecessor is drained entirely in the unit that retires it.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "engine/collect/collect.h"
#include "journal/journal.h"

#define TAIL_MAX_FILES 256
#define TAIL_MAX_DIRS 32
#define TAIL_MAX_PATTERNS 16
#define FP_MAX 256                         /* bytes of a file's start in its fingerprint */
#define READ_MIN_BYTES (256 * 1024)        /* one pread, one unit */
#define DRAIN_MAX_BYTES (16 * 1024 * 1024) /* most of a predecessor read in its one unit */
#define BUDGET_BYTES (4 * 1024 * 1024)     /* per file per loop turn; the rest on the next turn */
#define STATE_MAGIC 0x31544c46u            /* "FLT1" */

struct tail_file {
    char path[PATH_MAX];
    size_t path_len; /* strlen(path): the tag of every record, not measured per line */
    size_t dir;      /* index into t->dirs */
    int fd;          /* -1: no file at path now */
    dev_t dev;
    ino_t ino;
    uint64_t offset;
    uint64_t fp;     /* FNV-1a of the first fp_len bytes */
    uint32_t fp_len; /* min(FP_MAX, consumed bytes) */
    bool skip;       /* inside an over-long line already emitted (cut): skip to its newline */
    long long pending_since_ms; /* an open multi-line record waits since (0: none) */
    bool seen;                  /* still matched by the last glob scan */
};

struct tail_dir {
    char path[PATH_MAX];
    int wd;
    bool dirty;
    bool rescan;
};

struct tail {
    struct event_base *base;
    struct journal *journal;
    collect_appended_fn appended;
    void *arg;
    char name[128];
    char source[128];
    size_t source_len;
    char patterns[TAIL_MAX_PATTERNS][PATH_MAX];
    size_t pattern_dir[TAIL_MAX_PATTERNS];
    size_t n_patterns;
    regex_t start_re;
    bool multiline;
    size_t max_line;
    bool parse_level;
    int64_t flush_ms;
    bool first_scan;
    bool from_beginning;

    int ifd;
    struct event *ev_inotify, *ev_retry, *ev_flush;
    struct tail_dir dirs[TAIL_MAX_DIRS];
    size_t n_dirs;
    struct tail_file *files[TAIL_MAX_FILES];
    size_t n_files;

    char *buf;
    size_t buf_cap;
    struct collect_out out;
    struct journal_append_req *reqs;
    size_t cap_reqs;
    bool busy_now;                 /* the last append found the journal queue full: retry in 5 ms */
    struct ferry_buf text_scratch; /* a line repaired to valid UTF-8 (collect_text) */
    struct tail_stats stats;
};

/* ---- Levels --------------------------------------------------------------------------------- */

/* Level words by length (index = length, 3..9), so that a word of the line is compared only with
 * the few of its length: this runs on every line (measured: the table walk with strlen per entry
 * was the tail's largest cost after the copy into the journal). */
struct level_word {
    const char *word;
    int level;
};
static const struct level_word level_words_3[] = {{"err", RECORD_LEVEL_ERROR}, {NULL, 0}};
static const struct level_word level_words_4[] = {{"crit", RECORD_LEVEL_CRIT},
                                                  {"warn", RECORD_LEVEL_WARN},
                                                  {"info", RECORD_LEVEL_INFO},
                                                  {NULL, 0}};
static const struct level_word level_words_5[] = {
    {"emerg", RECORD_LEVEL_EMERG}, {"panic", RECORD_LEVEL_EMERG},
    {"alert", RECORD_LEVEL_ALERT}, {"fatal", RECORD_LEVEL_CRIT},
    {"error", RECORD_LEVEL_ERROR}, {"debug", RECORD_LEVEL_DEBUG},
    {"trace", RECORD_LEVEL_DEBUG}, {NULL, 0}};
static const struct level_word level_words_6[] = {{"notice", RECORD_LEVEL_NOTICE}, {NULL, 0}};
static const struct level_word level_words_7[] = {{"warning", RECORD_LEVEL_WARN}, {NULL, 0}};
static const struct level_word level_words_8[] = {{"critical", RECORD_LEVEL_CRIT}, {NULL, 0}};
static const struct level_word level_words_9[] = {{"emergency", RECORD_LEVEL_EMERG}, {NULL, 0}};
static const struct level_word *const level_words[10] = {
    NULL,          NULL,          NULL,          level_words_3, level_words_4,
    level_words_5, level_words_6, level_words_7, level_words_8, level_words_9};

static int level_of_word(const char *w, size_t n)
{
    if (n < 3 || n > 9)
        return -1;
    char first = (char)(w[0] | 0x20); /* a letter: its lower case */
    for (const struct level_word *l = level_words[n]; l->word != NULL; l++)
        if (l->word[0] == first && strncasecmp(l->word, w, n) == 0)
            return l->level;
    return -1;
}

int tail_parse_level(const char *line, size_t len)
{
    if (len > 160)
        len = 160;
    /* glog / klog: "E0102 15:04:05.000000 ..." */
    if (len >= 5 && strchr("IWEF", line[0]) && isdigit((unsigned char)line[1]) &&
        isdigit((unsigned char)line[2]) && isdigit((unsigned char)line[3]) &&
        isdigit((unsigned char)line[4])) {
        switch (line[0]) {
        case 'I': return RECORD_LEVEL_INFO;
        case 'W': return RECORD_LEVEL_WARN;
        case 'E': return RECORD_LEVEL_ERROR;
        default: return RECORD_LEVEL_CRIT;
        }
    }
    /* The first word made of letters only that names a level: "ERROR", "[warn]", "level=info",
     * "\"level\":\"debug\"", "<E>"... Words are delimited by anything but letters. */
    size_t i = 0;
    while (i < len) {
        while (i < len && !isalpha((unsigned char)line[i]))
            i++;
        size_t start = i;
        while (i < len && isalpha((unsigned char)line[i]))
            i++;
        if (i > start && i - start <= 9) {
            int lvl = level_of_word(line + start, i - start);
            if (lvl >= 0)
                return lvl;
        }
    }
    return -1;
}

/* ---- State entries -------------------------------------------------------------------------- */

struct state_value {
    uint32_t magic;
    uint32_t fp_len;
    uint64_t dev, ino, offset, fp;
    uint8_t skip;
    uint8_t pad[7];
};

static size_t state_key(const struct tail *t, const char *path, char *key, size_t cap)
{
    int n = snprintf(key, cap, "tail/%s/%s", t->name, path);
    if (n < 0 || (size_t)n >= cap || n > JOURNAL_STATE_KEY_MAX)
        return 0;
    return (size_t)n;
}

static void state_fill(const struct tail_file *f, struct state_value *v)
{
    memset(v, 0, sizeof *v);
    v->magic = STATE_MAGIC;
    v->fp_len = f->fp_len;
    v->dev = (uint64_t)f->dev;
    v->ino = (uint64_t)f->ino;
    v->offset = f->offset;
    v->fp = f->fp;
    v->skip = f->skip;
}

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* Fingerprint of fd's first `len` bytes; -1 when they cannot all be read. */
static int fingerprint(int fd, uint32_t len, uint64_t *out)
{
    uint8_t b[FP_MAX];
    if (len == 0) {
        *out = fnv1a(b, 0);
        return 0;
    }
    ssize_t n = pread(fd, b, len, 0);
    if (n != (ssize_t)len)
        return -1;
    *out = fnv1a(b, len);
    return 0;
}

/* ---- Records -------------------------------------------------------------------------------- */

/* Packs one record of p[0, len) (its newline stripped). `force_cut`: the text is the head of a
 * longer line whose rest is skipped. */
static int emit(struct tail *t, struct tail_file *f, const char *p, size_t len, bool force_cut,
                int64_t ts)
{
    while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r'))
        len--;
    size_t raw_len = len;
    bool cut = force_cut || len > t->max_line;
    if (len > t->max_line)
        len = t->max_line;
    const char *text;
    size_t text_len;
    if (collect_text(&t->text_scratch, p, len, &text, &text_len) != 0)
        return COLLECT_ENOMEM;
    struct record_field fields[2];
    struct record_tag tag = {{"file", 4}, {f->path, f->path_len}};
    struct record r;
    memset(&r, 0, sizeof r);
    r.stream = RECORD_LOG;
    r.ts_ns = ts;
    r.name.ptr = t->source;
    r.name.len = t->source_len;
    int lvl = t->parse_level ? tail_parse_level(p, len) : -1;
    r.level = (uint8_t)(lvl < 0 ? RECORD_LEVEL_INFO : lvl);
    r.message.ptr = text;
    r.message.len = text_len;
    r.tags = &tag;
    r.n_tags = 1;
    if (cut) {
        fields[0].key.ptr = "truncated";
        fields[0].key.len = 9;
        fields[0].type = RECORD_FIELD_BOOL;
        fields[0].v.b = true;
        fields[1].key.ptr = "original_bytes";
        fields[1].key.len = 14;
        fields[1].type = RECORD_FIELD_INT;
        fields[1].v.i = (int64_t)raw_len;
        r.fields = fields;
        r.n_fields = 2;
        t->stats.truncated++;
    }
    struct collect_out *o = &t->out;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 1024;
        struct collect_packed *np = realloc(o->recs, cap * sizeof *np);
        if (!np)
            return COLLECT_ENOMEM;
        o->recs = np;
        o->cap = cap;
    }
    size_t start = o->packed.len;
    int rc = record_pack(&r, &o->packed);
    if (rc == RECORD_ENOMEM)
        return COLLECT_ENOMEM;
    if (rc != 0) {
        log_limited(60, FERRY_LOG_WARN, "tail", "[input.tail.%s] %s: a record was skipped: %s",
                    t->name, f->path, record_strerror(rc));
        return 0; /* never stall a file on one record */
    }
    o->recs[o->n].offset = start;
    o->recs[o->n].len = o->packed.len - start;
    o->recs[o->n].ts_ns = ts;
    o->n++;
    return 0;
}

static bool is_start(const struct tail *t, const char *line, size_t len)
{
    char tmp[1024];
    size_t n = len < sizeof tmp - 1 ? len : sizeof tmp - 1;
    memcpy(tmp, line, n);
    tmp[n] = 0; /* regexec needs a C string; a start pattern looks at the line's beginning */
    return regexec(&t->start_re, tmp, 0, NULL, 0) == 0;
}

/*
 * Cuts buf[0, len) (file bytes from f->offset) into records. *consumed gets how many bytes the
 * emitted records (and skipped bytes) cover; f->skip is updated. `final`: nothing more will come
 * (a drained predecessor): the last line without newline and an open record are emitted.
 * `buf_full`: the buffer could hold no more, so a record that fills it must be emitted cut.
 */
static int parse(struct tail *t, struct tail_file *f, const char *buf, size_t len, bool final,
                 bool buf_full, bool flush_open, int64_t ts, size_t *consumed)
{
    size_t pos = 0;
    *consumed = 0;
    int rc;
    if (f->skip) {
        const char *nl = memchr(buf, '\n', len);
        if (!nl) {
            *consumed = len;
            if (final)
                f->skip = false;
            return 0;
        }
        pos = (size_t)(nl - buf) + 1;
        *consumed = pos;
        f->skip = false;
    }
    size_t rec_start = SIZE_MAX, rec_end = 0;
    while (pos < len) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t line_end = nl ? (size_t)(nl - buf) + 1 : len;
        size_t line_len = line_end - pos;
        if (!nl && !final) {
            /* A line without its newline yet: wait for it, unless it can never fit. */
            if (line_len >= t->max_line && (buf_full || line_len > t->max_line) &&
                rec_start == SIZE_MAX) {
                if ((rc = emit(t, f, buf + pos, line_len, true, ts)) != 0)
                    return rc;
                f->skip = true;
                *consumed = len;
                return 0;
            }
            break;
        }
        if (!t->multiline) {
            if ((rc = emit(t, f, buf + pos, line_len, false, ts)) != 0)
                return rc;
            *consumed = line_end;
        } else if (rec_start == SIZE_MAX || is_start(t, buf + pos, line_len)) {
            if (rec_start != SIZE_MAX) {
                if ((rc = emit(t, f, buf + rec_start, rec_end - rec_start, false, ts)) != 0)
                    return rc;
                *consumed = rec_end;
            }
            rec_start = pos;
            rec_end = line_end;
        } else {
            rec_end = line_end;
        }
        pos = line_end;
    }
    if (rec_start != SIZE_MAX) {
        /* An open record ends with the next start line, or when told to flush it. */
        bool must = final || flush_open || (buf_full && rec_start == 0);
        if (must) {
            if ((rc = emit(t, f, buf + rec_start, rec_end - rec_start, false, ts)) != 0)
                return rc;
            *consumed = rec_end;
            f->pending_since_ms = 0;
        } else if (!f->pending_since_ms) {
            f->pending_since_ms = ferry_monotonic_ms();
        }
    } else {
        f->pending_since_ms = 0;
    }
    return 0;
}

/* ---- Appending ------------------------------------------------------------------------------ */

/* Appends t->out plus the state of f (key for `path`) as one unit. `flags` 0 may wait for queue
 * space (start-up catch-up), JOURNAL_APPEND_NONBLOCK returns 1 when the queue is full. */
static int append_unit(struct tail *t, const struct tail_file *f, unsigned flags)
{
    char key[JOURNAL_STATE_KEY_MAX + 1];
    size_t klen = state_key(t, f->path, key, sizeof key);
    if (!klen)
        return COLLECT_EINVAL;
    struct state_value v;
    state_fill(f, &v);
    struct journal_state_op op = {key, klen, &v, sizeof v, false};
    struct collect_out *o = &t->out;
    if (o->n > t->cap_reqs) {
        struct journal_append_req *r = realloc(t->reqs, o->n * sizeof *r);
        if (!r)
            return COLLECT_ENOMEM;
        t->reqs = r;
        t->cap_reqs = o->n;
    }
    for (size_t i = 0; i < o->n; i++) {
        t->reqs[i].stream = RECORD_LOG;
        t->reqs[i].ts_ns = o->recs[i].ts_ns;
        t->reqs[i].payload = o->packed.data + o->recs[i].offset;
        t->reqs[i].len = o->recs[i].len;
        t->reqs[i].seq = 0;
    }
    int rc = journal_appendv_state(t->journal, t->reqs, o->n, &op, 1, flags);
    if (rc == JOURNAL_EAGAIN) {
        t->stats.busy++;
        t->busy_now = true;
        return 1;
    }
    if (rc != 0) {
        log_limited(60, FERRY_LOG_ERROR, "tail", "[input.tail.%s] %s: journal: %s", t->name,
                    f->path, journal_strerror(rc));
        return COLLECT_EJOURNAL;
    }
    t->stats.records += o->n;
    if (o->n && t->appended)
        t->appended(t->arg);
    return 0;
}

/* Updates the fingerprint once more consumed bytes make it longer. */
static void refresh_fp(struct tail_file *f)
{
    if (f->fp_len >= FP_MAX || f->offset <= f->fp_len || f->fd < 0)
        return;
    uint32_t want = f->offset < FP_MAX ? (uint32_t)f->offset : FP_MAX;
    uint64_t fp;
    if (fingerprint(f->fd, want, &fp) == 0) {
        f->fp = fp;
        f->fp_len = want;
    }
}

/* ---- Predecessors (rotation) ---------------------------------------------------------------- */

/* Reads fd from `from` to its end (at most DRAIN_MAX_BYTES) into t->buf (grown). Returns bytes. */
static long read_rest(struct tail *t, int fd, uint64_t from)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size <= from)
        return 0;
    uint64_t want = (uint64_t)st.st_size - from;
    if (want > DRAIN_MAX_BYTES) {
        t->stats.lost_bytes += want - DRAIN_MAX_BYTES;
        log_warn("tail", "[input.tail.%s]: %llu bytes of a rotated file beyond %d MiB skipped",
                 t->name, (unsigned long long)(want - DRAIN_MAX_BYTES), DRAIN_MAX_BYTES >> 20);
        want = DRAIN_MAX_BYTES;
    }
    if (want > t->buf_cap) {
        char *nb = realloc(t->buf, (size_t)want);
        if (!nb)
            return -1;
        t->buf = nb;
        t->buf_cap = (size_t)want;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t n = pread(fd, t->buf + got, (size_t)want - got, (off_t)(from + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return (long)got;
}

/* Finds in f's directory a file that is f's past content: by inode (renamed), or by fingerprint
 * (a copy) with at least `min_size` bytes. Returns an open fd or -1. */
static int find_predecessor(struct tail *t, const struct tail_file *f, uint64_t ino, uint64_t fp,
                            uint32_t fp_len, uint64_t min_size)
{
    const char *dir = t->dirs[f->dir].path;
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int best = -1;
    time_t best_mtime = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[PATH_MAX];
        if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p)
            continue;
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        struct stat st;
        uint64_t h;
        bool match = false;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
            if (ino && (uint64_t)st.st_ino == ino)
                match = true;
            else if (!ino && (uint64_t)st.st_ino != (uint64_t)f->ino &&
                     (uint64_t)st.st_size >= min_size && fingerprint(fd, fp_len, &h) == 0 &&
                     h == fp)
                match = true;
        }
        if (match && (best < 0 || st.st_mtime >= best_mtime)) {
            if (best >= 0)
                close(best);
            best = fd;
            best_mtime = st.st_mtime;
            if (ino)
                break;
        } else {
            close(fd);
        }
    }
    closedir(d);
    return best;
}

/* Drains pred_fd from `from` and retires it in one unit with f's new state (invariant 3). */
static int drain_and_switch(struct tail *t, struct tail_file *f, int pred_fd, uint64_t from,
                            bool pred_skip, unsigned flags)
{
    collect_out_reset(&t->out);
    long n = pred_fd >= 0 ? read_rest(t, pred_fd, from) : 0;
    if (n < 0)
        return COLLECT_ENOMEM;
    struct tail_file tmp = *f; /* parse() keeps skip/pending in the file it is given */
    tmp.skip = pred_skip;
    size_t consumed = 0;
    int rc = parse(t, &tmp, t->buf, (size_t)n, true, false, true, ferry_realtime_ns(), &consumed);
    if (rc != 0)
        return rc;
    t->stats.bytes += consumed;
    f->offset = 0;
    f->fp = fnv1a(NULL, 0);
    f->fp_len = 0;
    f->skip = false;
    f->pending_since_ms = 0;
    return append_unit(t, f, flags);
}

/* ---- Files ---------------------------------------------------------------------------------- */

static void close_file(struct tail_file *f)
{
    if (f->fd >= 0)
        close(f->fd); /* read-only */
    f->fd = -1;
}

static int open_at_path(struct tail_file *f)
{
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -1;
    }
    f->fd = fd;
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    return 0;
}

struct saved {
    bool found;
    struct state_value v;
};

static void load_state(struct tail *t, const char *path, struct saved *s)
{
    char key[JOURNAL_STATE_KEY_MAX + 1];
    size_t klen = state_key(t, path, key, sizeof key);
    size_t got = 0;
    s->found = klen && journal_state_get(t->journal, key, klen, &s->v, sizeof s->v, &got) == 0 &&
               got == sizeof s->v && s->v.magic == STATE_MAGIC && s->v.fp_len <= FP_MAX;
}

/* A file newly matched (at start, or created later): open it and decide where to start,
 * catching up on a rotation that happened while ferryd was not running. */
static int start_file(struct tail *t, struct tail_file *f, bool at_start)
{
    struct saved s;
    load_state(t, f->path, &s);
    if (open_at_path(f) != 0 && !s.found)
        return 0; /* vanished meanwhile */
    if (!s.found) {
        struct stat st;
        f->offset = 0;
        if (at_start && !t->from_beginning && f->fd >= 0 && fstat(f->fd, &st) == 0)
            f->offset = (uint64_t)st.st_size; /* like Fluentd: old content is not read */
        f->fp_len = 0;
        f->fp = fnv1a(NULL, 0);
        refresh_fp(f);
        return 0;
    }
    f->skip = s.v.skip != 0;
    bool same_inode = f->fd >= 0 && (uint64_t)f->ino == s.v.ino && (uint64_t)f->dev == s.v.dev;
    if (same_inode) {
        struct stat st;
        uint64_t fp = 0;
        if (fstat(f->fd, &st) == 0 && (uint64_t)st.st_size >= s.v.offset &&
            fingerprint(f->fd, s.v.fp_len, &fp) == 0 && fp == s.v.fp) {
            f->offset = s.v.offset; /* the normal restart */
            f->fp = s.v.fp;
            f->fp_len = s.v.fp_len;
            return 0;
        }
        /* Truncated (copytruncate) while we were away: the rest is in the copy, if any. */
        t->stats.truncations++;
        int pred = find_predecessor(t, f, 0, s.v.fp, s.v.fp_len, s.v.offset);
        if (pred < 0 && s.v.offset)
            log_warn("tail",
                     "[input.tail.%s] %s: truncated while ferryd was stopped and no copy "
                     "found; unread bytes after offset %llu are lost",
                     t->name, f->path, (unsigned long long)s.v.offset);
        int rc = drain_and_switch(t, f, pred, s.v.offset, f->skip, 0);
        if (pred >= 0)
            close(pred);
        return rc;
    }
    /* Renamed while we were away: finish the old inode first (ino 0: the path had no file). */
    int pred = s.v.ino ? find_predecessor(t, f, s.v.ino, 0, 0, 0) : -1;
    if (pred >= 0)
        t->stats.rotations++;
    else if (s.v.ino)
        log_warn("tail",
                 "[input.tail.%s] %s: rotated while ferryd was stopped and the old file (inode "
                 "%llu) is no longer in its directory; its bytes after offset %llu are lost",
                 t->name, f->path, (unsigned long long)s.v.ino, (unsigned long long)s.v.offset);
    int rc = drain_and_switch(t, f, pred, s.v.offset, f->skip, 0);
    if (pred >= 0)
        close(pred);
    return rc;
}

static struct tail_file *find_file(struct tail *t, const char *path)
{
    for (size_t i = 0; i < t->n_files; i++)
        if (strcmp(t->files[i]->path, path) == 0)
            return t->files[i];
    return NULL;
}

/* Matches the patterns of dir `di` again; new files start. */
static void rescan(struct tail *t, size_t di, bool at_start)
{
    for (size_t i = 0; i < t->n_files; i++)
        if (t->files[i]->dir == di)
            t->files[i]->seen = false;
    for (size_t p = 0; p < t->n_patterns; p++) {
        if (t->pattern_dir[p] != di)
            continue;
        glob_t g;
        if (glob(t->patterns[p], GLOB_NOSORT, NULL, &g) != 0)
            continue;
        for (size_t k = 0; k < g.gl_pathc; k++) {
            struct tail_file *f = find_file(t, g.gl_pathv[k]);
            if (f) {
                f->seen = true;
                continue;
            }
            if (t->n_files == TAIL_MAX_FILES || strlen(g.gl_pathv[k]) >= PATH_MAX) {
                log_limited(300, FERRY_LOG_WARN, "tail", "[input.tail.%s]: more than %d files",
                            t->name, TAIL_MAX_FILES);
                continue;
            }
            f = calloc(1, sizeof *f);
            if (!f)
                continue;
            f->path_len = strlen(g.gl_pathv[k]);
            memcpy(f->path, g.gl_pathv[k], f->path_len + 1);
            f->dir = di;
            f->fd = -1;
            f->seen = true;
            /* A file the set already follows under another name (a rotated name that also
             * matches) is not started again from 0. */
            struct stat st;
            bool dup = false;
            if (stat(f->path, &st) == 0)
                for (size_t i = 0; i < t->n_files; i++)
                    if (t->files[i]->fd >= 0 && t->files[i]->ino == st.st_ino &&
                        t->files[i]->dev == st.st_dev)
                        dup = true;
            if (dup) {
                free(f);
                continue;
            }
            t->files[t->n_files++] = f;
            if (start_file(t, f, at_start) != 0)
                log_warn("tail", "[input.tail.%s] %s: cannot catch up on its rotation", t->name,
                         f->path);
        }
        globfree(&g);
    }
}

/* Reads what is new in f (or handles its rotation). Returns 0 when done, 1 when more is to
 * read (budget) or the journal was busy, or an error. */
static int read_file(struct tail *t, struct tail_file *f, bool flush_open, size_t *budget)
{
    /* Rotation by rename: the path names another inode, or nothing. */
    struct stat st;
    bool gone = stat(f->path, &st) != 0;
    if (f->fd >= 0 && (gone || st.st_ino != f->ino || st.st_dev != f->dev)) {
        int old = f->fd;
        uint64_t from = f->offset;
        bool skip = f->skip;
        f->fd = -1;
        if (!gone && open_at_path(f) != 0)
            gone = true;
        if (gone) {
            f->ino = 0;
            f->dev = 0;
        }
        t->stats.rotations++;
        int rc = drain_and_switch(t, f, old, from, skip, JOURNAL_APPEND_NONBLOCK);
        if (rc == 1) { /* journal busy: undo, retry later */
            close_file(f);
            f->fd = old;
            struct stat ost;
            if (fstat(old, &ost) == 0) {
                f->ino = ost.st_ino;
                f->dev = ost.st_dev;
            }
            f->offset = from;
            f->skip = skip;
            t->stats.rotations--;
            return 1;
        }
        close(old);
        if (rc != 0)
            return rc;
    }
    if (f->fd < 0) {
        if (gone || open_at_path(f) != 0)
            return 0;
        f->offset = 0;
        f->fp_len = 0;
    }
    /* copytruncate: shorter than what we read, or its first bytes changed. */
    struct stat fst;
    if (fstat(f->fd, &fst) != 0)
        return 0;
    uint64_t fp;
    if ((uint64_t)fst.st_size < f->offset ||
        (f->fp_len && (fingerprint(f->fd, f->fp_len, &fp) != 0 || fp != f->fp))) {
        t->stats.truncations++;
        int pred = find_predecessor(t, f, 0, f->fp, f->fp_len, f->offset);
        if (pred < 0)
            log_limited(60, FERRY_LOG_WARN, "tail",
                        "[input.tail.%s] %s: truncated and no copy found in its directory: what "
                        "was written after offset %llu before the truncation is lost",
                        t->name, f->path, (unsigned long long)f->offset);
        uint64_t from = f->offset;
        struct tail_file saved = *f;
        int rc = drain_and_switch(t, f, pred, from, f->skip, JOURNAL_APPEND_NONBLOCK);
        if (pred >= 0)
            close(pred);
        if (rc == 1) {
            int fd = f->fd;
            *f = saved;
            f->fd = fd;
            t->stats.truncations--;
            return 1;
        }
        if (rc != 0)
            return rc;
        if (fstat(f->fd, &fst) != 0)
            return 0;
    }
    while ((uint64_t)fst.st_size > f->offset || (flush_open && f->pending_since_ms)) {
        size_t want = t->buf_cap;
        ssize_t n = pread(f->fd, t->buf, want, (off_t)f->offset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_limited(60, FERRY_LOG_WARN, "tail", "[input.tail.%s] %s: read: %s", t->name,
                        f->path, strerror(errno));
            return 0;
        }
        collect_out_reset(&t->out);
        size_t consumed = 0;
        struct tail_file before = *f;
        int rc = parse(t, f, t->buf, (size_t)n, false, (size_t)n == want, flush_open,
                       ferry_realtime_ns(), &consumed);
        if (rc != 0)
            return rc;
        if (consumed == 0 && t->out.n == 0 && f->skip == before.skip)
            return 0; /* only a partial line or an open record: wait */
        f->offset += consumed;
        refresh_fp(f);
        rc = append_unit(t, f, JOURNAL_APPEND_NONBLOCK);
        if (rc == 1) {
            *f = before; /* invariant 2 */
            return 1;
        }
        if (rc != 0)
            return rc;
        t->stats.bytes += consumed;
        if (consumed >= *budget) {
            *budget = 0;
            return 1;
        }
        *budget -= consumed;
        if ((size_t)n < want)
            break;
        if (fstat(f->fd, &fst) != 0)
            break;
    }
    return 0;
}

static void schedule_retry(struct tail *t, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(t->ev_retry, &tv);
}

static void arm_flush(struct tail *t)
{
    if (!t->multiline)
        return;
    for (size_t i = 0; i < t->n_files; i++)
        if (t->files[i]->pending_since_ms) {
            struct timeval tv = {(time_t)(t->flush_ms / 1000),
                                 (suseconds_t)((t->flush_ms % 1000) * 1000)};
            if (!evtimer_pending(t->ev_flush, NULL))
                event_add(t->ev_flush, &tv);
            return;
        }
}

/* Processes the dirty directories (all when `all`). */
static void run(struct tail *t, bool all, bool flush_open)
{
    bool again = false;
    for (size_t d = 0; d < t->n_dirs; d++) {
        struct tail_dir *dir = &t->dirs[d];
        if (!all && !dir->dirty)
            continue;
        dir->dirty = false;
        if (dir->rescan || all) {
            dir->rescan = false;
            rescan(t, d, false);
        }
        for (size_t i = 0; i < t->n_files; i++) {
            struct tail_file *f = t->files[i];
            if (f->dir != d)
                continue;
            size_t budget = BUDGET_BYTES;
            long long now = ferry_monotonic_ms();
            bool fl = flush_open && f->pending_since_ms && now - f->pending_since_ms >= t->flush_ms;
            int rc = read_file(t, f, fl, &budget);
            if (rc == 1) {
                dir->dirty = true;
                again = true;
            }
        }
    }
    t->stats.files = t->n_files;
    if (again)
        schedule_retry(t, t->busy_now ? 5 : 0);
    arm_flush(t);
}

static void on_inotify(evutil_socket_t fd, short what, void *arg)
{
    struct tail *t = arg;
    char evbuf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(t->ifd, evbuf, sizeof evbuf);
        if (n <= 0)
            break;
        for (char *p = evbuf; p < evbuf + n;) {
            const struct inotify_event *e = (const struct inotify_event *)p;
            p += sizeof *e + e->len;
            if (e->mask & IN_Q_OVERFLOW) {
                for (size_t d = 0; d < t->n_dirs; d++)
                    t->dirs[d].dirty = t->dirs[d].rescan = true;
                continue;
            }
            for (size_t d = 0; d < t->n_dirs; d++) {
                if (t->dirs[d].wd != e->wd)
                    continue;
                t->dirs[d].dirty = true;
                if (e->mask & (IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE))
                    t->dirs[d].rescan = true;
            }
        }
    }
    run(t, false, false);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct tail *t = arg;
    t->busy_now = false;
    run(t, false, false);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct tail *t = arg;
    for (size_t d = 0; d < t->n_dirs; d++)
        t->dirs[d].dirty = true;
    run(t, false, true);
}

/* ---- Setup ---------------------------------------------------------------------------------- */

static int add_pattern(struct tail *t, const char *pat, size_t len, char *errbuf, size_t errlen)
{
    if (t->n_patterns == TAIL_MAX_PATTERNS || len >= PATH_MAX || len == 0 || pat[0] != '/') {
        snprintf(errbuf, errlen, "[input.tail.%s] path \"%.*s\": an absolute pattern (at most %d)",
                 t->name, (int)len, pat, TAIL_MAX_PATTERNS);
        return COLLECT_EINVAL;
    }
    char *p = t->patterns[t->n_patterns];
    memcpy(p, pat, len);
    p[len] = 0;
    char *slash = strrchr(p, '/');
    size_t dlen = slash == p ? 1 : (size_t)(slash - p);
    if (strcspn(p, "*?[") < dlen) {
        snprintf(errbuf, errlen,
                 "[input.tail.%s] path \"%s\": wildcards only in the file name, not the directory",
                 t->name, p);
        return COLLECT_EINVAL;
    }
    size_t di = t->n_dirs;
    for (size_t d = 0; d < t->n_dirs; d++)
        if (strlen(t->dirs[d].path) == dlen && strncmp(t->dirs[d].path, p, dlen) == 0)
            di = d;
    if (di == t->n_dirs) {
        if (t->n_dirs == TAIL_MAX_DIRS)
            return COLLECT_EINVAL;
        struct tail_dir *dir = &t->dirs[t->n_dirs];
        memcpy(dir->path, p, dlen);
        dir->path[dlen] = 0;
        dir->wd = inotify_add_watch(t->ifd, dir->path,
                                    IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM |
                                        IN_DELETE | IN_CLOSE_WRITE);
        if (dir->wd < 0) {
            snprintf(errbuf, errlen, "[input.tail.%s] %s: inotify_add_watch: %s", t->name,
                     dir->path, strerror(errno));
            return COLLECT_EREAD;
        }
        t->n_dirs++;
    }
    t->pattern_dir[t->n_patterns++] = di;
    return 0;
}

int tail_new(struct event_base *base, struct journal *j, const struct tail_opts *o,
             collect_appended_fn appended, void *arg, struct tail **out, char *errbuf,
             size_t errlen)
{
    if (!o->name || !o->name[0] || strlen(o->name) >= 128 || o->max_line_bytes < 64 ||
        o->max_line_bytes > RECORD_MAX_VALUE_LEN) {
        snprintf(errbuf, errlen, "[input.tail]: a name and max_line from 64 bytes to 64 KiB");
        return COLLECT_EINVAL;
    }
    struct tail *t = calloc(1, sizeof *t);
    if (!t)
        return COLLECT_ENOMEM;
    t->ifd = -1;
    t->base = base;
    t->journal = j;
    t->appended = appended;
    t->arg = arg;
    snprintf(t->name, sizeof t->name, "%s", o->name);
    snprintf(t->source, sizeof t->source, "%s", o->source && o->source[0] ? o->source : o->name);
    t->source_len = strlen(t->source);
    t->max_line = o->max_line_bytes;
    t->parse_level = o->parse_level;
    t->from_beginning = o->from_beginning;
    t->flush_ms = o->multiline_flush_ms > 0 ? o->multiline_flush_ms : 1000;
    collect_out_init(&t->out);
    int rc = COLLECT_ENOMEM;
    if (o->multiline_start && o->multiline_start[0]) {
        int rerr = regcomp(&t->start_re, o->multiline_start, REG_EXTENDED | REG_NOSUB);
        if (rerr != 0) {
            char why[128];
            regerror(rerr, &t->start_re, why, sizeof why);
            snprintf(errbuf, errlen, "[input.tail.%s] multiline_start \"%s\": %s", t->name,
                     o->multiline_start, why);
            free(t);
            return COLLECT_EINVAL;
        }
        t->multiline = true;
    }
    t->buf_cap = READ_MIN_BYTES;
    if (t->buf_cap < 4 * t->max_line)
        t->buf_cap = 4 * t->max_line;
    t->buf = malloc(t->buf_cap);
    t->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (!t->buf)
        goto fail;
    if (t->ifd < 0) {
        snprintf(errbuf, errlen, "[input.tail.%s]: inotify_init1: %s", t->name, strerror(errno));
        rc = COLLECT_EREAD;
        goto fail;
    }
    const char *p = o->paths ? o->paths : "";
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        size_t len = strcspn(p, " \t,");
        if ((rc = add_pattern(t, p, len, errbuf, errlen)) != 0)
            goto fail;
        p += len;
    }
    if (t->n_patterns == 0) {
        snprintf(errbuf, errlen, "[input.tail.%s]: no path", t->name);
        rc = COLLECT_EINVAL;
        goto fail;
    }
    rc = COLLECT_ENOMEM;
    t->ev_inotify = event_new(base, t->ifd, EV_READ | EV_PERSIST, on_inotify, t);
    t->ev_retry = evtimer_new(base, on_retry, t);
    t->ev_flush = evtimer_new(base, on_flush, t);
    if (!t->ev_inotify || !t->ev_retry || !t->ev_flush || event_add(t->ev_inotify, NULL) != 0)
        goto fail;
    for (size_t d = 0; d < t->n_dirs; d++)
        rescan(t, d, true);
    run(t, true, false);
    *out = t;
    return 0;
fail:
    tail_free(t);
    return rc;
}

void tail_get_stats(const struct tail *t, struct tail_stats *out)
{
    *out = t->stats;
    out->files = t->n_files;
}

void tail_free(struct tail *t)
{
    if (!t)
        return;
    if (t->ev_inotify)
        event_free(t->ev_inotify);
    if (t->ev_retry)
        event_free(t->ev_retry);
    if (t->ev_flush)
        event_free(t->ev_flush);
    if (t->ifd >= 0)
        close(t->ifd);
    for (size_t i = 0; i < t->n_files; i++) {
        close_file(t->files[i]);
        free(t->files[i]);
    }
    if (t->multiline)
        regfree(&t->start_re);
    free(t->buf);
    free(t->reqs);
    ferry_buf_free(&t->text_scratch);
    collect_out_free(&t->out);
    free(t);
}
