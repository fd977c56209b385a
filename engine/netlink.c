/*
 * netlink.c - a NETLINK_ROUTE watcher on the event loop (see netlink.h).
 */
#include "engine/netlink.h"

#include <event2/event.h>

#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct netlink_watch {
    int fd;
    struct event *ev;
    netlink_change_fn fn;
    void *arg;
    unsigned long changes;
};

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct netlink_watch *w = arg;
    (void)what;
    /* Drain everything queued: a burst (interface up + address + routes) is one wake-up. The
     * socket is non-blocking; ENOBUFS (the kernel dropped messages for us) also means
     * "something changed". */
    char buf[8192];
    int got = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0) {
            got = 1;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == ENOBUFS) {
            got = 1;
            continue;
        }
        break;
    }
    if (got) {
        w->changes++;
        w->fn(w->arg);
    }
}

int netlink_watch_new(struct event_base *base, netlink_change_fn fn, void *arg,
                      struct netlink_watch **out)
{
    int err = 0;
    struct netlink_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->fn = fn;
    w->arg = arg;
    w->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (w->fd < 0) {
        err = -errno;
        goto fail;
    }
    struct sockaddr_nl sa;
    memset(&sa, 0, sizeof(sa));
    sa.nl_family = AF_NETLINK;
    sa.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR |
                   RTMGRP_IPV6_ROUTE;
    if (bind(w->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        err = -errno;
        goto fail;
    }
    w->ev = event_new(base, w->fd, EV_READ | EV_PERSIST, on_readable, w);
    if (!w->ev || event_add(w->ev, NULL) != 0) {
        err = -ENOMEM;
        goto fail;
    }
    *out = w;
    return 0;
fail:
    if (w->ev)
        event_free(w->ev);
    if (w->fd >= 0)
        close(w->fd);
    free(w);
    return err;
}

void netlink_watch_free(struct netlink_watch *w)
{
    if (!w)
        return;
    event_free(w->ev);
    close(w->fd);
    free(w);
}

unsigned long netlink_watch_changes(const struct netlink_watch *w)
{
    return w->changes;
}
