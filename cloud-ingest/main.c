/*
 * main.c - ferry-ingest: parses the command line and the configuration file, opens the store and
 * runs the server, or runs an operator command. Everything else is in the ferry_ingest library.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloud-ingest/ingest.h"
#include "common/log.h"
#include "common/util.h"

static void help(void)
{
    printf(
        "usage: ferry-ingest [options]                  run the ingest service\n"
        "       ferry-ingest [options] device add ID PUBLIC_KEY_HEX [NAME [CLASS]]\n"
        "       ferry-ingest [options] device list [--json]\n"
        "       ferry-ingest [options] device revoke ID\n"
        "       ferry-ingest [options] device label ID KEY=VALUE... KEY-...\n"
        "                                  set (KEY=VALUE) and remove (KEY-) labels of a device\n"
        "       ferry-ingest [options] enroll-token create [--fleet] [--expires DURATION]\n"
        "                                                 [--max-uses N] [--label KEY=VALUE]...\n"
        "                                  devices enrolled with it get the labels\n"
        "       ferry-ingest [options] token create --role viewer|operator|admin --name NAME\n"
        "                                          [--expires DURATION|YYYY-MM-DD]\n"
        "       ferry-ingest [options] token list [--json]\n"
        "       ferry-ingest [options] token revoke NAME|ID\n"
        "       ferry-ingest [options] audit list [--after-seq N] [--limit N] [--json]\n"
        "       ferry-ingest [options] release publish|list ...   (docs/ota.md)\n"
        "       ferry-ingest [options] rollout "
        "create|list|status|pause|resume|abort|promote|compare\n"
        "                                  canary rollouts in waves with gates (docs/rollouts.md;\n"
        "                                  `ferry-ingest rollout --help`)\n"
        "       ferry-ingest action keygen PREFIX\n"
        "       ferry-ingest [options] action send --key FILE [--expires DURATION] [--print]\n"
        "                          DEVICE restart_unit UNIT | reboot | run PROGRAM [ARG...] |\n"
        "                          upload_logs MINUTES [UNIT...]\n"
        "       ferry-ingest [options] action list [--device ID] [--state pending|done] [--json]\n"
        "                                  signed device actions (docs/actions.md)\n"
        "       ferry-ingest [options] versions compare --component C [--metrics a.b,c.d]\n"
        "                                  [--since 24h|NS] [--json]   benchmark of every version\n"
        "                                  of a component the fleet ran (docs/compare.md)\n"
        "       ferry-ingest --url URL --token TOKEN|--token-file FILE device "
        "list|add|revoke|label\n"
        "       ferry-ingest --url URL --token TOKEN|--token-file FILE action send|list ...\n"
        "                                  the device commands through the API of a remote\n"
        "                                  ingest (admin token; label: operator; list: viewer;\n"
        "                                  FERRY_INGEST_TOKEN also works)\n"
        "       ferry-ingest --url URL --token TOKEN versions compare ...   the same over the\n"
        "                                  API (viewer token)\n"
        "       ferry-ingest --url URL --token TOKEN rollout create|list|status|compare|pause|\n"
        "                                  resume|abort|promote ...   the same over the API\n"
        "                                  (viewer token for reads, operator for the commands)\n"
        "       ferry-ingest --url URL --token TOKEN release publish --pub RELEASE.pub [--force]\n"
        "                                  MANIFEST.json ARTIFACT|DIR...   uploads the artifacts\n"
        "                                  (PUT /v1/artifacts, operator) and publishes the\n"
        "                                  manifest (POST /v1/releases, admin), which the ingest\n"
        "                                  verifies with its release.public_keys\n"
        "\n"
        "enroll-token: a secret a device shows once to POST /v1/enroll. token: an operator API\n"
        "token (role viewer, operator or admin) sent as 'Authorization: Bearer <token>';\n"
        "printed once, stored hashed. Every endpoint but /healthz, /v1/enroll and the device\n"
        "endpoints needs one (docs/security.md).\n"
        "\n"
        "labels: at most 32 per device, KEY 1..63 of [a-z0-9_.-] starting with a letter, VALUE\n"
        "up to 128 bytes of UTF-8. Selectors (GET /v1/devices?selector=..., rollouts): terms\n"
        "joined by ',' that all hold: KEY=V KEY!=V 'KEY in (A,B)' 'KEY notin (A,B)' KEY !KEY\n"
        "'version.COMPONENT >= 1.2.0' (= != < <= > >=, semver order); KEY: a label, class, id\n"
        "or name (docs/ingest.md \"Labels and selectors\").\n"
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
        "      --url URL            run device commands, versions compare, release publish\n"
        "                           and the rollout commands against this ingest's API\n"
        "      --token TOKEN        API token for --url (or --token-file FILE, "
        "FERRY_INGEST_TOKEN)\n"
        "      --ca-file FILE       CA certificates for an https --url\n"
        "  -h, --help               this text\n"
        "\n"
        "configuration keys (INI: [section] key = value):\n%s"
        "forwarders (INI: one [forward.NAME] section each; see docs/forwarding.md):\n%s"
        "\nalerts (INI: [alerts], [alert.NAME], [receiver.NAME]; see docs/alerts.md):\n%s"
        "\n"
        "endpoints: POST /v1/enroll (public), POST /v1/batches (device-signed body),\n"
        "GET /v1/devices/{id}/manifest and /v1/artifacts/{sha256} (device-signed request),\n"
        "GET /v1/devices[?selector=S], /v1/devices/{id} (viewer),\n"
        "POST /v1/devices/{id}/labels {\"set\":{...},\"remove\":[...]} (operator),\n"
        "GET /v1/export?device=ID&stream=S&after_seq=N&limit=L,\n"
        "GET /v1/forwarders, GET /v1/alerts, GET /v1/actions (viewer),\n"
        "POST /v1/devices/{id}/actions (operator; a signed action), GET /v1/devices/{id}/actions\n"
        "(device-signed request),\n"
        "GET /v1/rollouts, /v1/rollouts/{id}[/compare] (viewer),\n"
        "POST /v1/rollouts/{id}/pause|resume|abort|promote (operator),\n"
        "GET /v1/series?device=ID&metric=MEASUREMENT.FIELD&from=NS&to=NS&points=N (viewer),\n"
        "GET /v1/versions/compare?component=C[&metrics=a.b,c.d][&since=24h|NS] (viewer),\n"
        "GET /v1/audit (admin), GET /metrics (viewer, or public by server.metrics_public),\n"
        "GET /healthz (public), GET /ui/ (the fleet console; its pages ask for a token)\n"
        "(see docs/ingest.md, docs/console.md and ferry-ingest(8)).\n",
        ingest_config_help(), ingest_config_help_forward(), alerts_config_help());
}

/* Reads an API token from a file (first line), so it does not show in the process list. */
static int read_token_file(const char *path, char *out, size_t out_len)
{
    uint8_t *data = NULL;
    size_t len = 0;
    if (ferry_read_file(path, 4096, &data, &len) != 0)
        return -1;
    size_t n = strcspn((const char *)data, "\r\n");
    int rc = n > 0 && n < out_len ? 0 : -1;
    if (rc == 0) {
        memcpy(out, data, n);
        out[n] = '\0';
    }
    free(data);
    return rc;
}

int main(int argc, char **argv)
{
    struct ingest_admin_remote remote = {NULL, getenv("FERRY_INGEST_TOKEN"), NULL};
    static char token_buf[256];
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
        if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("ferry-ingest %s\n", FERRY_VERSION);
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
        if (strcmp(a, "--url") == 0) {
            remote.url = v;
            continue;
        }
        if (strcmp(a, "--token") == 0) {
            remote.token = v;
            continue;
        }
        if (strcmp(a, "--ca-file") == 0) {
            remote.ca_file = v;
            continue;
        }
        if (strcmp(a, "--token-file") == 0) {
            if (read_token_file(v, token_buf, sizeof(token_buf)) != 0) {
                fprintf(stderr, "ferry-ingest: --token-file %s: cannot read a token\n", v);
                return 2;
            }
            remote.token = token_buf;
            continue;
        } else if (strcmp(a, "-l") == 0 || strcmp(a, "--listen") == 0)
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
        return ingest_admin_main(&cfg, &remote, argc - i, argv + i);

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
