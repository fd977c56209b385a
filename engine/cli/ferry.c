/*
 * ferry.c - main() of the `ferry` CLI: picks the subcommand and nothing else.
 *
 * Every subcommand lives in engine/cli/cmd_<name>.c and is listed in engine/CMakeLists.txt.
 *
 * Conventions shared by every subcommand, applied here once (ferry(1), "CONVENTIONS"):
 *   - options may come before or after the subcommand: `ferry --json status` is
 *     `ferry status --json`; the options ferry knows before the subcommand (getopt_long) are
 *     --url, --config, --data-dir and --json, handed to the subcommand after its name;
 *   - `--opt=value` and `--opt value` are the same;
 *   - `--version` and `--help` work on the program and on every subcommand;
 *   - `--` ends the options: what follows is handed over as it is.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cli/cli.h"

struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct cli_command commands[] = {
    {"put", cli_put, "write InfluxDB line protocol to the local ferryd"},
    {"log", cli_log, "write a log line to the local ferryd"},
    {"status", cli_status, "show what the local ferryd is doing"},
    {"journal", cli_journal, "inspect a journal: stats, tail, dump (read-only)"},
    {"dict", cli_dict, "train a zstd dictionary for batches from sample data"},
    {"update", cli_update, "show and control over-the-air updates"},
    {"release", cli_release, "build, sign and verify release manifests"},
    {NULL, NULL, NULL},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: ferry [--url URL] [--config FILE] [--data-dir DIR] [--json] COMMAND "
                 "[ARGS...]\n"
                 "       ferry --help | --version\n\n"
                 "ferry is the device-side tool of the ferry fleet agent (see ferry(1)).\n\n"
                 "commands:\n");
    for (const struct cli_command *c = commands; c->name; c++)
        fprintf(out, "  %-9s %s\n", c->name, c->summary);
    fprintf(out, "\nOptions may come before or after COMMAND; --opt=value and --opt value are the\n"
                 "same. Run 'ferry COMMAND --help' for a command's options, 'ferry COMMAND\n"
                 "--version' or 'ferry --version' for the version.\n");
}

/* Splits "--name=value" into "--name" "value" (until "--"), so that every subcommand's parser
 * takes both forms. Returns a new argv (strings point into the old one, or into *names, one
 * allocation holding every split name) or NULL when out of memory; free both with free(). */
static char **split_long_options(int argc, char **argv, int *out_argc, char **names)
{
    size_t total = 0;
    for (int i = 1; i < argc; i++)
        total += strlen(argv[i]) + 1;
    char **out = calloc((size_t)argc * 2 + 1, sizeof(*out));
    char *store = malloc(total + 1);
    if (!out || !store) {
        free(out);
        free(store);
        return NULL;
    }
    size_t used = 0;
    int n = 0;
    bool ended = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *eq = strchr(a, '=');
        if (!ended && strcmp(a, "--") == 0)
            ended = true;
        if (ended || i == 0 || strncmp(a, "--", 2) != 0 || !eq || eq == a + 2) {
            out[n++] = argv[i];
            continue;
        }
        size_t len = (size_t)(eq - a);
        memcpy(store + used, a, len);
        store[used + len] = '\0';
        out[n++] = store + used;
        used += len + 1;
        out[n++] = (char *)(eq + 1);
    }
    out[n] = NULL;
    *out_argc = n;
    *names = store;
    return out;
}

int main(int argc, char **argv)
{
    enum { OPT_URL = 256, OPT_JSON };
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {"config", required_argument, NULL, 'c'},
        {"data-dir", required_argument, NULL, 'd'},
        {"url", required_argument, NULL, OPT_URL},
        {"json", no_argument, NULL, OPT_JSON},
        {NULL, 0, NULL, 0},
    };
    /* Options before the subcommand, handed to it after its name as --name=value. */
    const char *global[8];
    int n_global = 0;
    static char buf[4][1100];
    int c;
    /* "+": stop at the subcommand; what follows is the subcommand's */
    while ((c = getopt_long(argc, argv, "+hVc:d:", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return 0;
        case 'V': printf("ferry " FERRY_VERSION "\n"); return 0;
        case 'c':
        case 'd':
        case OPT_URL: {
            const char *name = c == 'c' ? "config" : c == 'd' ? "data-dir" : "url";
            int k = c == 'c' ? 0 : c == 'd' ? 1 : 2;
            int w = snprintf(buf[k], sizeof buf[k], "--%s=%s", name, optarg);
            if (w < 0 || (size_t)w >= sizeof buf[k]) {
                fprintf(stderr, "ferry: --%s: value too long\n", name);
                return 2;
            }
            global[n_global++] = buf[k];
            break;
        }
        case OPT_JSON: global[n_global++] = "--json"; break;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[optind];
    if (strcmp(name, "help") == 0) {
        usage(stdout);
        return 0;
    }
    const struct cli_command *cmd = NULL;
    for (const struct cli_command *k = commands; k->name; k++)
        if (strcmp(name, k->name) == 0)
            cmd = k;
    if (!cmd) {
        fprintf(stderr, "ferry: unknown command '%s'\n", name);
        usage(stderr);
        return 2;
    }
    /* subcommand argv: its name, the options given before it, then its own arguments */
    int sub_argc = 1 + n_global + (argc - optind - 1);
    char **sub = calloc((size_t)sub_argc + 1, sizeof(*sub));
    if (!sub) {
        fprintf(stderr, "ferry: out of memory\n");
        return 1;
    }
    int n = 0;
    sub[n++] = argv[optind];
    for (int i = 0; i < n_global; i++)
        sub[n++] = (char *)global[i];
    for (int i = optind + 1; i < argc; i++)
        sub[n++] = argv[i];
    /* --version on every subcommand (before "--"); after `release SUBCOMMAND` it is the
     * release's own option (`release create --version VERSION`) */
    bool release = strcmp(cmd->name, "release") == 0;
    for (int i = 1; i < n && strcmp(sub[i], "--") != 0 && (!release || i == 1); i++) {
        if (strcmp(sub[i], "--version") == 0) {
            printf("ferry " FERRY_VERSION "\n");
            free(sub);
            return 0;
        }
    }
    int split_argc = 0;
    char *names = NULL;
    char **split = split_long_options(n, sub, &split_argc, &names);
    free(sub);
    if (!split) {
        fprintf(stderr, "ferry: out of memory\n");
        return 1;
    }
    int rc = cmd->run(split_argc, split);
    free(split);
    free(names);
    return rc;
}
