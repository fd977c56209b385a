/*
 * fuzz_config.c - libFuzzer target: ferryd's INI configuration parser (engine/config.c,
 * ferryd_config_load_string) on arbitrary text.
 *
 * A corrupt configuration must be refused with an error, never crash ferryd. Properties checked
 * (abort() on violation):
 *   - the result is 0 or one of enum ferryd_config_error;
 *   - on failure the error line is not empty and every string of the config is NULL (config.h:
 *     "cfg is left freed");
 *   - on success every string is set, loading the same text again gives a config with no
 *     difference (ferryd_config_diff() == 0), and the helpers ferryd runs on a loaded config
 *     (release keys, host:port of the listen addresses, paths under data_dir) do not crash.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every string member, to check they are all NULL after a failure and all set after success. */
static const size_t string_offsets[] = {
    offsetof(struct ferryd_config, data_dir),
    offsetof(struct ferryd_config, device_class),
    offsetof(struct ferryd_config, device_name),
    offsetof(struct ferryd_config, server_url),
    offsetof(struct ferryd_config, enroll_token),
    offsetof(struct ferryd_config, ca_file),
    offsetof(struct ferryd_config, pinned_public_key),
    offsetof(struct ferryd_config, listen_http),
    offsetof(struct ferryd_config, listen_udp),
    offsetof(struct ferryd_config, listen_unix),
    offsetof(struct ferryd_config, update_component),
    offsetof(struct ferryd_config, update_install_path),
    offsetof(struct ferryd_config, update_release_keys),
    offsetof(struct ferryd_config, update_slot_backend),
    offsetof(struct ferryd_config, update_slot_dir),
    offsetof(struct ferryd_config, update_cmd_current),
    offsetof(struct ferryd_config, update_cmd_set_next),
    offsetof(struct ferryd_config, update_cmd_mark_good),
    offsetof(struct ferryd_config, update_cmd_rollback),
    offsetof(struct ferryd_config, update_slot_path),
    offsetof(struct ferryd_config, update_health_command),
    offsetof(struct ferryd_config, update_reboot_command),
    offsetof(struct ferryd_config, update_initial_version),
};

static const char *string_at(const struct ferryd_config *cfg, size_t offset)
{
    return *(char *const *)((const char *)cfg + offset);
}

static void exercise_helpers(const struct ferryd_config *cfg)
{
    uint8_t keys[FERRYD_MAX_RELEASE_KEYS][32];
    size_t n_keys;
    if (ferryd_config_release_keys(cfg, keys, FERRYD_MAX_RELEASE_KEYS, &n_keys) == 0 &&
        n_keys > FERRYD_MAX_RELEASE_KEYS)
        abort();
    const char *addrs[] = {cfg->listen_http, cfg->listen_udp};
    for (size_t i = 0; i < 2; i++) {
        char host[256];
        uint16_t port;
        if (ferryd_parse_hostport(addrs[i], host, sizeof host, &port) == 0 &&
            strlen(host) >= sizeof host)
            abort();
    }
    char path[4096];
    (void)!ferryd_config_path(cfg, cfg->listen_unix, path, sizeof path);
    (void)!ferryd_config_path(cfg, cfg->update_slot_dir, path, sizeof path);
    /* the components ferryd would start: 1..FERRYD_MAX_COMPONENTS, every string set */
    struct ferryd_update_effective comps[FERRYD_MAX_COMPONENTS];
    size_t n = ferryd_config_components(cfg, comps);
    if (n == 0 || n > FERRYD_MAX_COMPONENTS)
        abort();
    for (size_t i = 0; i < n; i++)
        if (!comps[i].component || !comps[i].install_path || !comps[i].slot_dir ||
            !comps[i].health_gates || !comps[i].initial_version)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The parser takes a NUL-terminated text: a NUL inside the input simply ends it. */
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    struct ferryd_config cfg;
    char err[512];
    int rc = ferryd_config_load_string(text, "fuzz.ini", &cfg, err, sizeof err);
    if (rc > 0 || rc < FERRYD_CONFIG_ENOMEM)
        abort();
    if (rc != 0) {
        if (err[0] == '\0' || strlen(err) >= sizeof err)
            abort();
        for (size_t i = 0; i < sizeof string_offsets / sizeof string_offsets[0]; i++)
            if (string_at(&cfg, string_offsets[i]) != NULL)
                abort();
        free(text);
        return 0;
    }
    for (size_t i = 0; i < sizeof string_offsets / sizeof string_offsets[0]; i++)
        if (string_at(&cfg, string_offsets[i]) == NULL)
            abort();
    exercise_helpers(&cfg);

    struct ferryd_config again;
    char err2[512];
    if (ferryd_config_load_string(text, "fuzz.ini", &again, err2, sizeof err2) != 0)
        abort();
    if (ferryd_config_diff(&cfg, &again, NULL, NULL) != 0)
        abort();
    ferryd_config_free(&again);
    ferryd_config_free(&cfg);
    free(text);
    return 0;
}
