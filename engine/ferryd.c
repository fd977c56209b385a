/*
 * ferryd.c - main() of the device daemon: parses the command line, nothing else.
 *
 * Everything ferryd does is wired in engine/daemon.c (ferryd_new/ferryd_run/ferryd_free); see
 * ferryd(8) and docs/configuration.md.
 */
#include <curl/curl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "engine/config.h"
#include "engine/daemon.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ferryd [--config FILE] [--data-dir DIR]\n"
            "\n"
            "ferryd is the ferry device daemon: it journals metrics, logs and events from local\n"
            "applications and ships them to ferry-ingest whenever the link allows (ferryd(8)).\n"
            "\n"
            "  -c, --config FILE    INI configuration (default " FERRYD_CONFIG_DEFAULT_PATH
            " when it exists,\n"
            "                       else built-in defaults; see docs/configuration.md)\n"
            "  -d, --data-dir DIR   overrides [device] data_dir\n"
            "      --check-config   load the configuration, print any error, and exit\n"
            "      --print-defaults print the built-in configuration and exit\n"
            "  -h, --help           this text\n"
            "  -V, --version        print the version\n"
            "\n"
            "Inputs: POST /write (InfluxDB line protocol), POST /logs, UDP and Unix socket line\n"
            "protocol. Status: GET /status, GET /metrics. The bound addresses are written to\n"
            "DATA_DIR/" FERRYD_ADDR_FILE ". Signals: SIGTERM/SIGINT stop cleanly, SIGHUP reloads.\n"
            "Exit status: 0 clean stop, 1 runtime failure, 2 usage, 3 configuration error.\n");
}

int main(int argc, char **argv)
{
    static const struct option long_opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"data-dir", required_argument, NULL, 'd'},
        {"check-config", no_argument, NULL, 'C'},
        {"print-defaults", no_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    struct ferryd_options opts = {NULL, NULL};
    int check_only = 0;
    int c;
    while ((c = getopt_long(argc, argv, "c:d:hV", long_opts, NULL)) != -1) {
        switch (c) {
        case 'c': opts.config_path = optarg; break;
        case 'd': opts.data_dir = optarg; break;
        case 'C': check_only = 1; break;
        case 'P': fputs(ferryd_config_defaults, stdout); return FERRYD_EXIT_OK;
        case 'h': usage(stdout); return FERRYD_EXIT_OK;
        case 'V': printf("ferryd " FERRY_VERSION "\n"); return FERRYD_EXIT_OK;
        default: usage(stderr); return FERRYD_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "ferryd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return FERRYD_EXIT_USAGE;
    }
    char err[1024] = "";
    if (check_only) {
        struct ferryd_config cfg;
        if (!opts.config_path && access(FERRYD_CONFIG_DEFAULT_PATH, F_OK) == 0)
            opts.config_path = FERRYD_CONFIG_DEFAULT_PATH; /* what ferryd itself would read */
        if (ferryd_config_load(opts.config_path, &cfg, err, sizeof err) != 0) {
            fprintf(stderr, "ferryd: %s\n", err);
            return FERRYD_EXIT_CONFIG;
        }
        ferryd_config_free(&cfg);
        printf("ferryd: %s: OK\n", opts.config_path ? opts.config_path : "(built-in defaults)");
        return FERRYD_EXIT_OK;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "ferryd: curl_global_init failed\n");
        return FERRYD_EXIT_FAILURE;
    }
    struct ferryd *d = NULL;
    int rc = ferryd_new(&opts, &d, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "ferryd: %s\n", err);
        curl_global_cleanup();
        return rc;
    }
    rc = ferryd_run(d);
    int frc = ferryd_free(d);
    curl_global_cleanup();
    return rc != 0 ? rc : frc;
}
