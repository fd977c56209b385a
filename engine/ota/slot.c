/*
 * slot.c - simulated and command-hook A/B slot backends (see slot.h).
 *
 * The simulated boot loader keeps four variables in <dir>/bootctl, rewritten atomically:
 *   current=a|b   the slot running now
 *   good=a|b      the confirmed slot
 *   next=a|b|-    a one-shot trial requested by set_next()
 *   tries=N       boots of an unconfirmed current slot so far
 * ota_slots_boot(): a pending `next` becomes `current` (tries=1); an unconfirmed current slot that
 * was already tried max_trial_boots times falls back to `good` - which is what U-Boot's bootcount,
 * GRUB's one-shot next_entry and the Jetson's retry counter do for real.
 */
#include "engine/ota/slot.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

struct ota_slots {
    int simulated;
    char dir[1024];
    int max_trial_boots;
    char current[8], good[8], next[8];
    int tries;
    char cmd_current[512], cmd_set_next[512], cmd_mark_good[512], cmd_rollback[512];
    char slot_path[512];
};

static int fail(char *err, size_t n, int code, const char *msg, const char *what)
{
    if (err && n)
        snprintf(err, n, "%s%s%s", msg, what ? ": " : "", what ? what : "");
    return code;
}

static int sim_save(struct ota_slots *s)
{
    char path[1100], text[128];
    snprintf(path, sizeof(path), "%s/bootctl", s->dir);
    int n = snprintf(text, sizeof(text), "current=%s\ngood=%s\nnext=%s\ntries=%d\n", s->current,
                     s->good, s->next, s->tries);
    return ferry_write_file_atomic(path, text, (size_t)n, 0644) == 0 ? OTA_SLOT_OK : OTA_SLOT_E_IO;
}

static int sim_load(struct ota_slots *s)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/bootctl", s->dir);
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = ferry_read_file(path, 4096, &data, &len);
    if (rc == -ENOENT) { /* first boot: slot a, good */
        ferry_strlcpy(s->current, "a", sizeof(s->current));
        ferry_strlcpy(s->good, "a", sizeof(s->good));
        ferry_strlcpy(s->next, "-", sizeof(s->next));
        s->tries = 0;
        return sim_save(s);
    }
    if (rc != 0)
        return OTA_SLOT_E_IO;
    char *save = NULL;
    for (char *line = strtok_r((char *)data, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = '\0';
        const char *v = eq + 1;
        if (strcmp(line, "current") == 0)
            ferry_strlcpy(s->current, v, sizeof(s->current));
        else if (strcmp(line, "good") == 0)
            ferry_strlcpy(s->good, v, sizeof(s->good));
        else if (strcmp(line, "next") == 0)
            ferry_strlcpy(s->next, v, sizeof(s->next));
        else if (strcmp(line, "tries") == 0) {
            int64_t t;
            s->tries = ferry_parse_i64(v, 0, 1000, &t) == 0 ? (int)t : 0;
        }
    }
    free(data);
    if ((strcmp(s->current, "a") && strcmp(s->current, "b")) ||
        (strcmp(s->good, "a") && strcmp(s->good, "b")))
        return OTA_SLOT_E_IO;
    return OTA_SLOT_OK;
}

int ota_run_command(const char *cmd, int timeout_ms, char *out, size_t out_len)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(pipefd[1], 1);
        setpgid(0, 0); /* its own group, so a timeout kills the whole pipeline */
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    size_t used = 0;
    long long deadline = ferry_monotonic_ms() + timeout_ms;
    int status = -1, timed_out = 0;
    for (;;) {
        long long left = deadline - ferry_monotonic_ms();
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        struct pollfd p = {pipefd[0], POLLIN, 0};
        int r = poll(&p, 1, (int)(left > 200 ? 200 : left));
        if (r > 0) {
            char buf[256];
            ssize_t n = read(pipefd[0], buf, sizeof(buf));
            if (n > 0 && out && used + 1 < out_len) {
                size_t take = (size_t)n < out_len - 1 - used ? (size_t)n : out_len - 1 - used;
                memcpy(out + used, buf, take);
                used += take;
            }
            if (n == 0)
                break;
        }
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            pid = -1;
            break;
        }
    }
    close(pipefd[0]);
    if (out && out_len)
        out[used] = '\0';
    if (timed_out && pid > 0) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -1;
    }
    if (pid > 0) {
        /* output closed: wait for the exit, still bounded by the deadline */
        while (waitpid(pid, &status, WNOHANG) == 0) {
            if (ferry_monotonic_ms() > deadline) {
                kill(-pid, SIGKILL);
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                return -1;
            }
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Runs a hook with "%s" replaced by `slot`. */
static int run_hook(const char *tmpl, const char *slot, char *out, size_t out_len)
{
    char cmd[1024];
    const char *p = strstr(tmpl, "%s");
    if (p)
        snprintf(cmd, sizeof(cmd), "%.*s%s%s", (int)(p - tmpl), tmpl, slot, p + 2);
    else
        ferry_strlcpy(cmd, tmpl, sizeof(cmd));
    return ota_run_command(cmd, 30000, out, out_len) == 0 ? OTA_SLOT_OK : OTA_SLOT_E_COMMAND;
}

int ota_slots_open(const struct ota_slot_config *cfg, struct ota_slots **out, char *err,
                   size_t err_len)
{
    if (!cfg || !cfg->backend || !out)
        return fail(err, err_len, OTA_SLOT_E_ARG, "slot backend not configured", NULL);
    struct ota_slots *s = calloc(1, sizeof(*s));
    if (!s)
        return fail(err, err_len, OTA_SLOT_E_ARG, "out of memory", NULL);
    int rc = OTA_SLOT_OK;
    if (strcmp(cfg->backend, "simulated") == 0) {
        s->simulated = 1;
        s->max_trial_boots = cfg->max_trial_boots > 0 ? cfg->max_trial_boots : 1;
        if (!cfg->dir || ferry_strlcpy(s->dir, cfg->dir, sizeof(s->dir)) >= sizeof(s->dir) ||
            ferry_mkdir_p(s->dir, 0755) != 0) {
            rc = fail(err, err_len, OTA_SLOT_E_ARG, "simulated slots need a directory", cfg->dir);
            goto out;
        }
        if ((rc = sim_load(s)) != 0) {
            rc = fail(err, err_len, rc, "cannot read bootctl in", s->dir);
            goto out;
        }
    } else if (strcmp(cfg->backend, "command") == 0) {
        if (!cfg->cmd_current || !cfg->cmd_set_next || !cfg->cmd_mark_good || !cfg->cmd_rollback ||
            !cfg->slot_path) {
            rc = fail(err, err_len, OTA_SLOT_E_ARG,
                      "command backend needs current, set_next, mark_good, rollback and "
                      "slot_path",
                      NULL);
            goto out;
        }
        ferry_strlcpy(s->cmd_current, cfg->cmd_current, sizeof(s->cmd_current));
        ferry_strlcpy(s->cmd_set_next, cfg->cmd_set_next, sizeof(s->cmd_set_next));
        ferry_strlcpy(s->cmd_mark_good, cfg->cmd_mark_good, sizeof(s->cmd_mark_good));
        ferry_strlcpy(s->cmd_rollback, cfg->cmd_rollback, sizeof(s->cmd_rollback));
        ferry_strlcpy(s->slot_path, cfg->slot_path, sizeof(s->slot_path));
        char cur[64] = "";
        if (run_hook(s->cmd_current, "", cur, sizeof(cur)) != 0) {
            rc = fail(err, err_len, OTA_SLOT_E_COMMAND, "current-slot command failed",
                      s->cmd_current);
            goto out;
        }
        char c = cur[0];
        ferry_strlcpy(s->current, (c == 'b' || c == 'B' || c == '1') ? "b" : "a",
                      sizeof(s->current));
        ferry_strlcpy(s->good, s->current, sizeof(s->good));
        ferry_strlcpy(s->next, "-", sizeof(s->next));
    } else {
        rc = fail(err, err_len, OTA_SLOT_E_ARG, "unknown slot backend", cfg->backend);
    }
out:
    if (rc != OTA_SLOT_OK) {
        free(s);
        return rc;
    }
    *out = s;
    return OTA_SLOT_OK;
}

void ota_slots_close(struct ota_slots *s)
{
    free(s);
}

int ota_slots_boot(struct ota_slots *s)
{
    if (!s->simulated)
        return OTA_SLOT_OK;
    if (strcmp(s->next, "-") != 0) {
        ferry_strlcpy(s->current, s->next, sizeof(s->current));
        ferry_strlcpy(s->next, "-", sizeof(s->next));
        s->tries = 1;
    } else if (strcmp(s->current, s->good) != 0) {
        if (s->tries >= s->max_trial_boots) { /* unconfirmed and out of tries: back to good */
            ferry_strlcpy(s->current, s->good, sizeof(s->current));
            s->tries = 0;
        } else {
            s->tries++;
        }
    }
    return sim_save(s);
}

const char *ota_slots_current(const struct ota_slots *s)
{
    return s->current;
}
const char *ota_slots_inactive(const struct ota_slots *s)
{
    return strcmp(s->current, "a") == 0 ? "b" : "a";
}

int ota_slots_running_is_good(const struct ota_slots *s)
{
    return strcmp(s->current, s->good) == 0;
}

int ota_slots_path(const struct ota_slots *s, const char *slot, char *out, size_t out_len)
{
    int n;
    if (s->simulated) {
        n = snprintf(out, out_len, "%s/slot-%s.img", s->dir, slot);
    } else {
        const char *p = strstr(s->slot_path, "%s");
        n = p ? snprintf(out, out_len, "%.*s%s%s", (int)(p - s->slot_path), s->slot_path, slot,
                         p + 2)
              : snprintf(out, out_len, "%s", s->slot_path);
    }
    return n > 0 && (size_t)n < out_len ? OTA_SLOT_OK : OTA_SLOT_E_ARG;
}

int ota_slots_set_next(struct ota_slots *s, const char *slot)
{
    if (!s->simulated)
        return run_hook(s->cmd_set_next, slot, NULL, 0);
    ferry_strlcpy(s->next, slot, sizeof(s->next));
    return sim_save(s);
}

int ota_slots_mark_good(struct ota_slots *s)
{
    if (!s->simulated) {
        int rc = run_hook(s->cmd_mark_good, s->current, NULL, 0);
        if (rc == OTA_SLOT_OK)
            ferry_strlcpy(s->good, s->current, sizeof(s->good));
        return rc;
    }
    ferry_strlcpy(s->good, s->current, sizeof(s->good));
    s->tries = 0;
    return sim_save(s);
}

int ota_slots_rollback(struct ota_slots *s)
{
    if (!s->simulated)
        return run_hook(s->cmd_rollback, s->good, NULL, 0);
    /* the next boot goes to the good slot: a pending trial is dropped and an unconfirmed
     * current slot has no tries left */
    ferry_strlcpy(s->next, strcmp(s->current, s->good) != 0 ? s->good : "-", sizeof(s->next));
    s->tries = s->max_trial_boots;
    return sim_save(s);
}
