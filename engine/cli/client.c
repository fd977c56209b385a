/*
 * client.c - the CLI's connection to the local ferryd (see client.h).
 */
#include "engine/cli/client.h"

#include <curl/curl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/utf8.h"
#include "common/util.h"
#include "engine/config.h"

int cli_client_parse_opt(struct cli_client_opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    const char **slot = NULL;
    const char *name = NULL;
    if (strcmp(a, "--url") == 0)
        slot = &o->url, name = "--url";
    else if (strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0)
        slot = &o->config_path, name = "--config";
    else if (strcmp(a, "--data-dir") == 0 || strcmp(a, "-d") == 0)
        slot = &o->data_dir, name = "--data-dir";
    else
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "ferry: %s needs a value\n", name);
        return -1;
    }
    *slot = argv[++*i];
    return 1;
}

/* Turns a listen address into one to connect to: wildcard hosts become loopback. */
static int url_from_listen(const char *listen, char *url, size_t url_len)
{
    char host[256];
    uint16_t port;
    if (ferryd_parse_hostport(listen, host, sizeof host, &port) != 0 || port == 0)
        return -1;
    const char *h = host;
    bool v6 = strchr(host, ':') != NULL;
    if (!host[0] || strcmp(host, "0.0.0.0") == 0)
        h = "127.0.0.1", v6 = false;
    else if (strcmp(host, "::") == 0)
        h = "::1";
    int n = snprintf(url, url_len, v6 ? "http://[%s]:%u" : "http://%s:%u", h, port);
    return n > 0 && (size_t)n < url_len ? 0 : -1;
}

/* Reads the http= line of DATA_DIR/ferryd.addr. */
static int url_from_addr_file(const char *data_dir, char *url, size_t url_len)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", data_dir, FERRYD_ADDR_FILE) >= (int)sizeof path)
        return -1;
    uint8_t *text = NULL;
    size_t len = 0;
    if (ferry_read_file(path, 64 * 1024, &text, &len) != 0)
        return -1;
    int rc = -1;
    for (char *line = strtok((char *)text, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "http=", 5) == 0 && line[5]) {
            rc = url_from_listen(line + 5, url, url_len);
            break;
        }
    }
    free(text);
    return rc;
}

int cli_client_base_url(const struct cli_client_opts *o, char *url, size_t url_len)
{
    if (o->url || getenv("FERRY_URL")) {
        const char *u = o->url ? o->url : getenv("FERRY_URL");
        size_t n = strlen(u);
        while (n && u[n - 1] == '/')
            n--;
        if (n + 1 > url_len) {
            fprintf(stderr, "ferry: URL too long\n");
            return -1;
        }
        memcpy(url, u, n);
        url[n] = 0;
        return 0;
    }
    const char *path = o->config_path;
    if (!path && access(FERRYD_CONFIG_DEFAULT_PATH, R_OK) == 0)
        path = FERRYD_CONFIG_DEFAULT_PATH;
    struct ferryd_config cfg;
    char err[512];
    if (ferryd_config_load(path, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "ferry: %s\n", err);
        return -1;
    }
    const char *data_dir = o->data_dir ? o->data_dir : cfg.data_dir;
    int rc = url_from_addr_file(data_dir, url, url_len);
    if (rc != 0)
        rc = url_from_listen(cfg.listen_http, url, url_len);
    if (rc != 0)
        fprintf(stderr,
                "ferry: cannot tell where ferryd listens: no %s/%s and [listen] http is \"%s\"; "
                "use --url\n",
                data_dir, FERRYD_ADDR_FILE, cfg.listen_http);
    ferryd_config_free(&cfg);
    return rc;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    size_t n = size * nmemb;
    return ferry_buf_append(arg, ptr, n) == 0 ? n : 0;
}

int cli_client_request(const char *base_url, const char *method, const char *path_and_query,
                       const char *content_type, const void *body, size_t body_len, long *status,
                       struct ferry_buf *response)
{
    char url[2048];
    if (snprintf(url, sizeof url, "%s%s", base_url, path_and_query) >= (int)sizeof url) {
        fprintf(stderr, "ferry: URL too long\n");
        return -1;
    }
    CURL *c = curl_easy_init();
    if (!c) {
        fprintf(stderr, "ferry: curl_easy_init failed\n");
        return -1;
    }
    struct curl_slist *headers = NULL;
    char ct[128];
    if (content_type) {
        snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
        headers = curl_slist_append(headers, ct);
    }
    headers = curl_slist_append(headers, "Expect:"); /* no 100-continue round trip */
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 60000L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, response);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    CURLcode cc = curl_easy_perform(c);
    int rc = 0;
    if (cc != CURLE_OK) {
        fprintf(stderr, "ferry: %s %s: %s (is ferryd running?)\n", method, url,
                curl_easy_strerror(cc));
        rc = -1;
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    return rc;
}

/* Prints text from a server for a person: each line escaped (common/utf8.h), newlines kept. */
static void print_escaped_lines(FILE *out, const char *p, size_t n)
{
    struct ferry_buf b = FERRY_BUF_INIT;
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t len = nl ? (size_t)(nl - p) : n;
        if (ferry_buf_append_escaped(&b, p, len) != 0 || (nl && ferry_buf_append_u8(&b, '\n') != 0))
            break;
        p += nl ? len + 1 : len;
        n -= nl ? len + 1 : len;
    }
    fwrite(b.data ? (const char *)b.data : "", 1, b.len, out);
    ferry_buf_free(&b);
}

void cli_client_print_error(const char *prefix, long status, const struct ferry_buf *response)
{
    json_t *j = response->len
                    ? json_loadb((const char *)response->data, response->len, JSON_ALLOW_NUL, NULL)
                    : NULL;
    json_t *msg = j ? json_object_get(j, "error") : NULL;
    fprintf(stderr, "%s: HTTP %ld: ", prefix, status);
    if (json_is_string(msg))
        print_escaped_lines(stderr, json_string_value(msg), json_string_length(msg));
    else if (response->data)
        print_escaped_lines(stderr, (const char *)response->data, response->len);
    fputc('\n', stderr);
    json_decref(j);
}
