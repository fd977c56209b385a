/*
 * ferry.c - main() of the `ferry` CLI: picks the subcommand and nothing else.
 *
 * Every subcommand lives in engine/cli/cmd_<name>.c and is listed in engine/CMakeLists.txt.
 */
#include <stdio.h>
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
    fprintf(out, "usage: ferry COMMAND [ARGS...]\n\n"
                 "ferry is the device-side tool of the ferry fleet agent (see ferry(1)).\n\n"
                 "commands:\n");
    for (const struct cli_command *c = commands; c->name; c++)
        fprintf(out, "  %-9s %s\n", c->name, c->summary);
    fprintf(out, "\nRun 'ferry COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("ferry " FERRY_VERSION "\n");
        return 0;
    }
    for (const struct cli_command *c = commands; c->name; c++) {
        if (strcmp(argv[1], c->name) == 0)
            return c->run(argc - 1, argv + 1);
    }
    fprintf(stderr, "ferry: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
