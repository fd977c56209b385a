#!/usr/bin/env bash
# ferry-netns.sh - puts "the device side" in its own network namespace behind a veth pair, so
# that link-down events are real netlink events and bandwidth limits are real kernel queues.
#
# This is ferry-flaky's second mode (root only). Where ferry-flaky fakes a link inside a TCP
# proxy, this makes one the kernel believes in: ferryd run with `exec` sees its interface go
# down and up through netlink (RTM_NEWLINK with IFF_UP/IFF_RUNNING changing), and its uploads
# queue in a tbf qdisc. Latency uses netem when the kernel has it (sch_netem); many container
# kernels do not, and then only bandwidth is shaped, which `setup` says on stderr.
#
#   ferry-netns.sh check                         can this machine do it? (exit 0 yes, 77 no)
#   ferry-netns.sh setup NAME [--up RATE] [--down RATE] [--delay MS] [--net N]
#        creates netns NAME; the device side gets 10.N.0.2 on interface <NAME>d, the host side
#        10.N.0.1 on <NAME>h (N defaults to 77). RATE like 750kbit, 1.6mbit (tc units);
#        --up shapes device->host, --down host->device, --delay is one-way per direction.
#   ferry-netns.sh down NAME | up NAME           link down/up on the device side (real netlink)
#   ferry-netns.sh exec NAME CMD...              runs CMD inside the namespace
#   ferry-netns.sh teardown NAME                 removes the namespace and both interfaces
#
# Names are at most 12 characters so interface names fit IFNAMSIZ.
set -euo pipefail

die() { echo "ferry-netns: $*" >&2; exit 1; }

check() {
    if [ "$(id -u)" != 0 ]; then
        echo "ferry-netns: not root: network namespaces need CAP_NET_ADMIN" >&2
        return 77
    fi
    for tool in ip tc; do
        command -v "$tool" >/dev/null || { echo "ferry-netns: '$tool' not installed (iproute2)" >&2; return 77; }
    done
    local probe="fnprobe$$"
    if ! ip netns add "$probe" 2>/dev/null; then
        echo "ferry-netns: 'ip netns add' failed (no netns support or not permitted here)" >&2
        return 77
    fi
    ip netns del "$probe"
    return 0
}

# tbf needs a bucket of at least one packet; use 20 ms worth of the rate (like ferry-flaky's
# default burst), at least 3000 bytes.
burst_for() {
    local rate="$1" bits
    case "$rate" in
        *gbit) bits=$(awk "BEGIN{printf \"%d\", ${rate%gbit}*1e9}") ;;
        *mbit) bits=$(awk "BEGIN{printf \"%d\", ${rate%mbit}*1e6}") ;;
        *kbit) bits=$(awk "BEGIN{printf \"%d\", ${rate%kbit}*1e3}") ;;
        *bit) bits="${rate%bit}" ;;
        *) die "rate '$rate': use tc units such as 750kbit or 1.6mbit" ;;
    esac
    local b=$((bits / 8 / 50))
    [ "$b" -lt 3000 ] && b=3000
    echo "$b"
}

shape() { # shape NS_OR_EMPTY DEV RATE DELAY_MS
    local ns="$1" dev="$2" rate="$3" delay="$4"
    local run=()
    [ -n "$ns" ] && run=(ip netns exec "$ns")
    local parent="root"
    if [ -n "$delay" ] && [ "$delay" != 0 ]; then
        if "${run[@]}" tc qdisc add dev "$dev" root handle 1: netem delay "${delay}ms" 2>/dev/null; then
            parent="parent 1:"
        else
            echo "ferry-netns: netem is not available in this kernel (sch_netem missing):" \
                 "no latency on $dev, bandwidth only (tbf)" >&2
        fi
    fi
    if [ -n "$rate" ]; then
        # shellcheck disable=SC2086
        "${run[@]}" tc qdisc add dev "$dev" $parent handle 2: tbf rate "$rate" \
            burst "$(burst_for "$rate")" latency 2s
    fi
}

setup() {
    local name="$1"; shift
    local up_rate="" down_rate="" delay="" net=77
    while [ $# -gt 0 ]; do
        case "$1" in
            --up) up_rate="$2"; shift 2 ;;
            --down) down_rate="$2"; shift 2 ;;
            --delay) delay="$2"; shift 2 ;;
            --net) net="$2"; shift 2 ;;
            *) die "setup: unknown option $1" ;;
        esac
    done
    [ "${#name}" -le 12 ] || die "name '$name' longer than 12 characters"
    check || exit $?
    ip netns add "$name"
    ip link add "${name}h" type veth peer name "${name}d"
    ip link set "${name}d" netns "$name"
    ip addr add "10.${net}.0.1/24" dev "${name}h"
    ip link set "${name}h" up
    ip netns exec "$name" ip addr add "10.${net}.0.2/24" dev "${name}d"
    ip netns exec "$name" ip link set lo up
    ip netns exec "$name" ip link set "${name}d" up
    ip netns exec "$name" ip route add default via "10.${net}.0.1" 2>/dev/null || true
    # Egress of the device side is the device's upload; egress of the host side its download.
    shape "$name" "${name}d" "$up_rate" "$delay"
    shape "" "${name}h" "$down_rate" "$delay"
    echo "device=10.${net}.0.2 host=10.${net}.0.1 device_if=${name}d host_if=${name}h"
}

teardown() {
    local name="$1"
    ip link del "${name}h" 2>/dev/null || true
    ip netns del "$name" 2>/dev/null || true
}

cmd="${1:-}"
[ -n "$cmd" ] || { sed -n '2,25p' "$0"; exit 2; }
shift
case "$cmd" in
    check) check ;;
    setup) [ $# -ge 1 ] || die "setup NAME ..."; setup "$@" ;;
    down) ip netns exec "$1" ip link set "${1}d" down ;;
    up) ip netns exec "$1" ip link set "${1}d" up ;;
    exec) name="$1"; shift; exec ip netns exec "$name" "$@" ;;
    teardown) teardown "$1" ;;
    -h|--help|help) sed -n '2,25p' "$0" ;;
    *) die "unknown command '$cmd' (check, setup, down, up, exec, teardown)" ;;
esac
