/*
 * slot.h - A/B slot backends of the OTA agent: where an update is written and how the boot
 * loader is told to try it, keep it, or go back (docs/ota.md, "Boot-loader hooks").
 *
 * Two backends behind one interface:
 *   simulated  slots are files <dir>/slot-a.img and <dir>/slot-b.img, the boot loader's variables
 *              live in <dir>/bootctl; ota_slots_boot() plays the boot loader at ferryd start, so
 *              restarting ferryd is a reboot. Used by tests and the demo.
 *   command    every operation is a shell command from the configuration, for real boot loaders
 *              (Jetson nvbootctrl, U-Boot fw_setenv/fw_printenv, GRUB grub-editenv); "%s" in a
 *              command is replaced by the slot name ("a" or "b").
 *
 * Boot-loader contract the agent relies on (both backends): set_next() makes the NEXT boot try the
 * other slot once (a trial); if that boot is not marked good and the device boots again, the boot
 * loader goes back to the good slot (crash-loop protection); mark_good() makes the running slot
 * the one to boot from now on; rollback() makes the next boot use the good slot.
 */
#ifndef FERRY_ENGINE_OTA_SLOT_H
#define FERRY_ENGINE_OTA_SLOT_H

#include <stddef.h>

enum ota_slot_error {
    OTA_SLOT_OK = 0,
    OTA_SLOT_E_ARG = -1,
    OTA_SLOT_E_IO = -2,      /* bootctl file unreadable/unwritable */
    OTA_SLOT_E_COMMAND = -3, /* a hook command failed or timed out */
};

struct ota_slot_config {
    const char *backend; /* "simulated" or "command" */
    const char *dir;     /* simulated: directory of slot files and bootctl */
    int max_trial_boots; /* simulated: boots of an unconfirmed slot before falling back (1) */
    /* command backend (all run with /bin/sh -c, 30 s timeout, "%s" = slot name) */
    const char *cmd_current;   /* prints the running slot name ("a"/"b", or "0"/"1") */
    const char *cmd_set_next;  /* boot slot %s next, once */
    const char *cmd_mark_good; /* mark the running slot %s good */
    const char *cmd_rollback;  /* make the next boot use slot %s (the good one) */
    const char
        *slot_path; /* path template of a slot's block device, e.g. /dev/disk/by-partlabel/APP_%s */
};

struct ota_slots;

int ota_slots_open(const struct ota_slot_config *cfg, struct ota_slots **out, char *err,
                   size_t err_len) __attribute__((warn_unused_result));
void ota_slots_close(struct ota_slots *s);

/* Simulated backend: the boot loader's work at power-on (switch to a pending trial slot, or fall
 * back from an unconfirmed one). Command backend: no-op. Call once at ferryd start. */
int ota_slots_boot(struct ota_slots *s) __attribute__((warn_unused_result));

/* The running slot ("a" or "b"). */
const char *ota_slots_current(const struct ota_slots *s);
/* The other slot. */
const char *ota_slots_inactive(const struct ota_slots *s);
/* Path of a slot's storage (file or block device). */
int ota_slots_path(const struct ota_slots *s, const char *slot, char *out, size_t out_len)
    __attribute__((warn_unused_result));
int ota_slots_set_next(struct ota_slots *s, const char *slot) __attribute__((warn_unused_result));
int ota_slots_mark_good(struct ota_slots *s) __attribute__((warn_unused_result));
int ota_slots_rollback(struct ota_slots *s) __attribute__((warn_unused_result));
/* Whether the running slot is confirmed good (simulated: bootctl says so; command: assumed). */
int ota_slots_running_is_good(const struct ota_slots *s);

/* Runs `cmd` with /bin/sh -c, a timeout, and stdout captured into out (may be NULL). Returns the
 * exit status (0..255), -1 on timeout or when it could not run. Shared with health checks. */
int ota_run_command(const char *cmd, int timeout_ms, char *out, size_t out_len);

#endif
