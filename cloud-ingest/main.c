/*
 * main.c - ferry-ingest: parses the command line and the configuration file, opens the store and
 * runs the server, or runs an operator command. Everything else is in the ferry_ingest library.
 */
#include <stdio.h>
#include <string.h>

#include "cloud-ingest/ingest.h"
#include "common/log.h"

static void help(void)
{
    printf(
        "usage: ferry-ingest [options]                  run the ingest service\n"
        "       ferry-ingest [options] device add ID PUBLIC_KEY_HEX [NAME [CLASS]]\n"
        "       ferry-ingest [options] device list [--json]\n"
        "       ferry-ingest [options] device revoke ID\n"
        "       ferry-ingest [options] token create [--fleet] [--expires DURATION]\n"
        "\n"
        "With no options: an LMDB store in ./ferry-ingest-data, listening on 127.0.0.1:8480.\n"
        "\n"
        "options:\n"
        "  -c, --config FILE        INI file: [server] [limits] [clock] [store] [log] "
        "[forward.NAME]\n"
        "  -l, --listen HOST:PORT   same as --server.listen\n"
        "  -d, --data-dir PATH      same as --store.lmdb_dir\n"
        "      --pg CONNINFO        use PostgreSQL: --store.type postgresql --store.pg_conninfo\n"
        "  --SECTION.KEY VALUE      any configuration key below (overrides the file)\n"
        "  -h, --help               this text\n"
        "\n"
        "configuration keys (INI: [section] key = value):\n%s"
        "forwarders (INI: one [forward.NAME] section each; see docs/forwarding.md):\n%s"
        "\n"
        "endpoints: POST /v1/enroll, POST /v1/batches, GET /v1/devices, GET /v1/devices/{id},\n"
        "GET /v1/export?device=ID&stream=S&after_seq=N&limit=L, GET /v1/forwarders, GET /metrics,\n"
        "GET /healthz (see docs/ingest.md and ferry-ingest(8)).\n",
        ingest_config_help(), ingest_config_help_forward());
}

int main(int argc, char **argv)
{
    struct ingest_config cfg;
    char err[512];
    ingest_config_defaults(&cfg);
    /* The config file first, so that flags override it whatever their order. */
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
            if (ingest_config_load(&cfg, argv[i + 1], err, sizeof(err)) != 0) {
                fprintf(stderr, "ferry-ingest: %s\n", err);
                return 2;
            }
        }
    }
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            help();
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ferry-ingest: %s needs a value (see --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        int rc = 0;
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0)
            continue;
        else if (strcmp(a, "-l") == 0 || strcmp(a, "--listen") == 0)
            rc = ingest_config_set(&cfg, "server.listen", v, err, sizeof(err));
        else if (strcmp(a, "-d") == 0 || strcmp(a, "--data-dir") == 0)
            rc = ingest_config_set(&cfg, "store.lmdb_dir", v, err, sizeof(err));
        else if (strcmp(a, "--pg") == 0) {
            rc = ingest_config_set(&cfg, "store.type", "postgresql", err, sizeof(err));
            if (rc == 0)
                rc = ingest_config_set(&cfg, "store.pg_conninfo", v, err, sizeof(err));
        } else if (strncmp(a, "--", 2) == 0 && strchr(a, '.') != NULL)
            rc = ingest_config_set(&cfg, a + 2, v, err, sizeof(err));
        else {
            fprintf(stderr, "ferry-ingest: unknown option %s (see --help)\n", a);
            return 2;
        }
        if (rc != 0) {
            fprintf(stderr, "ferry-ingest: %s\n", err);
            return 2;
        }
    }
    ingest_config_finish(&cfg);
    ferry_log_init(cfg.log_level, 2);
    if (i < argc)
        return ingest_admin_main(&cfg, argc - i, argv + i);

    struct ingest_store *store = NULL;
    if (ingest_store_open(&cfg.store, &store, err, sizeof(err)) != 0) {
        log_error("ingest", "cannot open store: %s", err);
        return 1;
    }
    struct ingest_server *srv = NULL;
    if (ingest_server_new(&cfg, store, &srv, err, sizeof(err)) != 0) {
        log_error("ingest", "cannot start: %s", err);
        ingest_store_close(store);
        return 1;
    }
    int rc = ingest_server_run(srv, true);
    ingest_server_free(srv);
    ingest_store_close(store);
    log_info("ingest", "stopped");
    return rc == 0 ? 0 : 1;
}
