/*
 * inventory.c - what the device is: the fields of the `inventory` event.
 *
 * ferryd appends an `inventory` event at start and whenever one of these changes (checked on a
 * slow timer): hostname, machine id, board model (device tree), L4T release, kernel release,
 * the size of the root and data filesystems, and ferryd's version. The fingerprint of the last
 * one announced is kept in the state table (key "inventory/fingerprint") and written in the
 * same transaction as the event (journal_append_event_with_state), so a restart with nothing
 * changed announces nothing, and a crash never loses an announcement it recorded.
 */
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "engine/collect/collect.h"

static void read_line(const char *root, const char *rel, char *out, size_t cap)
{
    out[0] = 0;
    if (collect_read_file(root, rel, out, cap) <= 0)
        return;
    size_t n = strcspn(out, "\n"); /* the first line; device-tree strings end with NUL */
    out[n] = 0;
}

static void fs_size(const char *path, char *out, size_t cap)
{
    struct statvfs sv;
    if (statvfs(path, &sv) != 0) {
        out[0] = 0;
        return;
    }
    snprintf(out, cap, "%llu", (unsigned long long)sv.f_blocks * (unsigned long long)sv.f_frsize);
}

void inventory_collect(const char *root, const char *data_dir, const char *version,
                       struct inventory *inv)
{
    memset(inv, 0, sizeof *inv);
    if (gethostname(inv->hostname, sizeof inv->hostname - 1) != 0)
        inv->hostname[0] = 0;
    read_line(root, "/etc/machine-id", inv->machine_id, sizeof inv->machine_id);
    read_line(root, "/proc/device-tree/model", inv->model, sizeof inv->model);
    char rel[512];
    unsigned major = 0;
    char rev[32] = "";
    read_line(root, "/etc/nv_tegra_release", rel, sizeof rel);
    if (sscanf(rel, "# R%u (release), REVISION: %31[0-9.]", &major, rev) == 2)
        snprintf(inv->l4t, sizeof inv->l4t, "%u.%s", major, rev);
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(inv->kernel, sizeof inv->kernel, "%s", u.release);
    char rootpath[512];
    if (collect_path(root, "/", rootpath, sizeof rootpath) == 0)
        fs_size(rootpath, inv->root_bytes, sizeof inv->root_bytes);
    fs_size(data_dir, inv->data_bytes, sizeof inv->data_bytes);
    snprintf(inv->ferryd, sizeof inv->ferryd, "%s", version);
}

size_t inventory_kv(const struct inventory *inv, const char **kv)
{
    const char *pairs[] = {"hostname",   inv->hostname,   "machine_id", inv->machine_id,
                           "model",      inv->model,      "l4t",        inv->l4t,
                           "kernel",     inv->kernel,     "root_bytes", inv->root_bytes,
                           "data_bytes", inv->data_bytes, "ferryd",     inv->ferryd};
    size_t n = 0;
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i += 2) {
        if (!pairs[i + 1][0])
            continue; /* unknown here (no device tree, not a Jetson): left out */
        kv[2 * n] = pairs[i];
        kv[2 * n + 1] = pairs[i + 1];
        n++;
    }
    return n;
}

uint64_t inventory_fingerprint(const struct inventory *inv)
{
    const char *kv[2 * INVENTORY_FIELDS];
    size_t n = inventory_kv(inv, kv);
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < 2 * n; i++)
        for (const char *p = kv[i];; p++) {
            h ^= (unsigned char)*p;
            h *= 1099511628211ull;
            if (!*p)
                break;
        }
    return h;
}
