/*
 * ui_assets.h - the console's static files as the build embeds them (embed.cmake generates
 * ui_assets.c from cloud-ingest/ui/assets/). Internal to cloud-ingest/ui/.
 */
#ifndef FERRY_INGEST_UI_ASSETS_H
#define FERRY_INGEST_UI_ASSETS_H

#include <stddef.h>

struct ui_asset {
    const char *name;           /* file name under /ui/, e.g. "app.js" */
    const unsigned char *bytes; /* the file's bytes (NUL-terminated for convenience) */
    size_t len;                 /* bytes, without that NUL */
};

extern const struct ui_asset ui_assets[];
extern const unsigned ui_assets_count;

#endif
