/*
 * metered.h - is the device's link metered? The OTA agent's policy for metered links asks this
 * before each download starts and again on every connectivity change.
 *
 * The answer comes from the interface of the default route (/proc/net/route: the up route to
 * 0.0.0.0/0 with the lowest metric) matched against shell globs (fnmatch), by default the names
 * Linux gives cellular modems and tethering: "wwan* wwp* rmnet* ppp* usb*". A Jetson on LTE
 * routes through wwan0 or usb0; on Ethernet or Wi-Fi through eth0/wlan0, which do not match.
 */
#ifndef FERRY_ENGINE_OTA_METERED_H
#define FERRY_ENGINE_OTA_METERED_H

#include <stdbool.h>
#include <stddef.h>

#define OTA_METERED_DEFAULT_GLOBS "wwan* wwp* rmnet* ppp* usb*"
#define OTA_ROUTE_FILE "/proc/net/route"

/* The interface of the default route, read from `route_file` (NULL: /proc/net/route).
 * Returns 0 with the name in ifname, -1 when there is no default route or the file is unreadable
 * (then the link is not known to be metered). */
int ota_default_route_interface(const char *route_file, char *ifname, size_t len);

/* Whether `ifname` matches one of the globs in `globs` (separated by spaces or commas; NULL:
 * OTA_METERED_DEFAULT_GLOBS). */
bool ota_interface_metered(const char *globs, const char *ifname);

#endif
