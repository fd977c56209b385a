/*
 * metered.c - metered-link detection (see metered.h).
 */
#include "engine/ota/metered.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

int ota_default_route_interface(const char *route_file, char *ifname, size_t len)
{
    FILE *f = fopen(route_file ? route_file : OTA_ROUTE_FILE, "re");
    if (!f)
        return -1;
    char line[512];
    unsigned long best_metric = (unsigned long)-1;
    int found = -1;
    /* Iface Destination Gateway Flags RefCnt Use Metric Mask ... (hex, first line a header) */
    while (fgets(line, sizeof(line), f)) {
        char name[64];
        unsigned long dest, gw, flags, refcnt, use, metric, mask;
        if (sscanf(line, "%63s %lx %lx %lx %lu %lu %lu %lx", name, &dest, &gw, &flags, &refcnt,
                   &use, &metric, &mask) != 8)
            continue; /* the header, or a line that is not a route */
        if (dest != 0 || mask != 0 || !(flags & 0x1 /* RTF_UP */))
            continue;
        if (found == 0 && metric >= best_metric)
            continue;
        best_metric = metric;
        ferry_strlcpy(ifname, name, len);
        found = 0;
    }
    fclose(f);
    return found;
}

bool ota_interface_metered(const char *globs, const char *ifname)
{
    const char *p = globs ? globs : OTA_METERED_DEFAULT_GLOBS;
    char pat[128];
    while (*p) {
        size_t n = strcspn(p, " ,\t");
        if (n > 0 && n < sizeof(pat)) {
            memcpy(pat, p, n);
            pat[n] = '\0';
            if (fnmatch(pat, ifname, 0) == 0)
                return true;
        }
        p += n;
        p += strspn(p, " ,\t");
    }
    return false;
}
