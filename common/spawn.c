/*
 * spawn.c - see spawn.h. posix_spawn with three pipes' worth of plumbing: stdin written and
 * closed as the child reads it, stdout+stderr read until EOF, poll() bounding the whole run by
 * the deadline. The child gets its own process group so that a timeout also stops what it
 * started.
 */
#include "common/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

extern char **environ;

int ferry_spawn_split(const char *command, char *storage, size_t storage_len,
                      char *argv[FERRY_SPAWN_ARGS_MAX + 1])
{
    if (command == NULL || ferry_strlcpy(storage, command, storage_len) >= storage_len)
        return -1;
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(storage, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save)) {
        if (n == FERRY_SPAWN_ARGS_MAX)
            return -1;
        argv[n++] = t;
    }
    argv[n] = NULL;
    return n > 0 && argv[0][0] == '/' ? n : -1;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ferry_spawn_run(char *const argv[], const void *input, size_t input_len, int64_t timeout_ms,
                    struct ferry_buf *out, size_t out_max, struct ferry_spawn_result *res,
                    char *err, size_t err_len)
{
    memset(res, 0, sizeof(*res));
    res->exit_code = -1;
    int in[2] = {-1, -1}, outp[2] = {-1, -1};
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(outp, O_CLOEXEC) != 0) {
        snprintf(err, err_len, "pipe: %s", strerror(errno));
        goto fail;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
    posix_spawn_file_actions_adddup2(&fa, outp[1], 2);
    posix_spawnattr_setpgroup(&attr, 0);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);
    int64_t start = mono_ms();
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(in[0]);
    close(outp[1]);
    in[0] = outp[1] = -1;
    if (rc != 0) {
        errno = rc;
        snprintf(err, err_len, "cannot run %s: %s", argv[0], strerror(rc));
        goto fail;
    }
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    /* A child that exits without reading its stdin must not stop the caller with SIGPIPE:
     * blocked on this thread while feeding it, and a pending one consumed afterwards. */
    sigset_t pipe_set, old_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
    size_t sent = 0;
    if (input_len == 0) {
        close(in[1]);
        in[1] = -1;
    }
    char chunk[4096];
    int64_t deadline = start + timeout_ms;
    for (;;) {
        struct pollfd p[2] = {{outp[0], POLLIN, 0}, {in[1], POLLOUT, 0}};
        int64_t left = deadline - mono_ms();
        if (left <= 0) {
            res->timed_out = true;
            kill(-pid, SIGKILL);
            break;
        }
        int n = poll(p, in[1] >= 0 ? 2 : 1, (int)(left > 1000 ? 1000 : left));
        if (n < 0 && errno != EINTR)
            break;
        if (in[1] >= 0 && (p[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = write(in[1], (const char *)input + sent, input_len - sent);
            if (w > 0)
                sent += (size_t)w;
            if (w < 0 && errno != EAGAIN && errno != EINTR)
                sent = input_len; /* it closed its stdin: stop feeding it */
            if (sent == input_len) {
                close(in[1]);
                in[1] = -1;
            }
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = read(outp[0], chunk, sizeof(chunk));
            if (r == 0)
                break; /* everything it (and its children) printed */
            if (r > 0) {
                size_t room = out->len < out_max ? out_max - out->len : 0;
                size_t take = (size_t)r < room ? (size_t)r : room;
                if (take < (size_t)r)
                    res->truncated = true;
                if (take > 0 && ferry_buf_append(out, chunk, take) != 0)
                    res->truncated = true;
            }
        }
    }
    int status = 0;
    if (res->timed_out) {
        waitpid(pid, &status, 0);
    } else {
        /* Output closed: it exited, or closed its descriptors and lives on; wait for the rest
         * of the deadline, then stop it. */
        while (waitpid(pid, &status, WNOHANG) == 0) {
            if (mono_ms() >= deadline) {
                res->timed_out = true;
                kill(-pid, SIGKILL);
                waitpid(pid, &status, 0);
                break;
            }
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set, NULL, &zero) == SIGPIPE)
        ;
    pthread_sigmask(SIG_SETMASK, &old_set, NULL);
    res->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    res->duration_ns = (mono_ms() - start) * 1000000;
    if (in[1] >= 0)
        close(in[1]);
    close(outp[0]);
    return 0;
fail:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (outp[i] >= 0)
            close(outp[i]);
    }
    return -1;
}
