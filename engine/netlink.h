/*
 * netlink.h - wakes the sync engine when the device's connectivity may have changed.
 *
 * A NETLINK_ROUTE socket subscribed to link, IPv4/IPv6 address and route changes
 * (RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR |
 * RTMGRP_IPV6_ROUTE), watched by the event loop. When any message arrives the socket is drained
 * and the callback is called once: the engine then retries at once instead of waiting out a
 * backoff that began while the modem was down. The messages themselves are not interpreted:
 * any change is worth one attempt, and an attempt is cheap. Costs nothing while nothing
 * changes (no timer, no polling).
 */
#ifndef FERRY_ENGINE_NETLINK_H
#define FERRY_ENGINE_NETLINK_H

struct event_base;
struct netlink_watch;

/* Called on the loop thread after one or more netlink messages arrived. */
typedef void (*netlink_change_fn)(void *arg);

/* Opens the socket and starts watching. Returns 0 and *out, or -errno (socket/bind failed,
 * e.g. -EPERM in a sandbox; the engine then runs without it). */
int netlink_watch_new(struct event_base *base, netlink_change_fn fn, void *arg,
                      struct netlink_watch **out) __attribute__((warn_unused_result));

/* Stops watching and closes the socket. NULL is a no-op. */
void netlink_watch_free(struct netlink_watch *w);

/* Number of change notifications delivered so far (for status and tests). */
unsigned long netlink_watch_changes(const struct netlink_watch *w);

#endif
