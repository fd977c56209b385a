/*
 * flaky_main.c - the ferry-flaky program: argument parsing, the control endpoint, signals and
 * the port file around the proxy in flaky_proxy.c.
 *
 * The control endpoint is a tiny HTTP server (evhttp) on a loopback port so a test can force the
 * link down and up at exact moments, switch profiles and read statistics without fixed ports:
 * both bound ports are written to --port-file once the proxy is ready (atomically, so a test
 * polling for the file never reads half of it).
 */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "simulators/flaky/flaky_profile.h"
#include "simulators/flaky/flaky_proxy.h"

#ifndef FLAKY_PROFILE_DIR
#define FLAKY_PROFILE_DIR "/usr/share/ferry/profiles"
#endif

struct app {
    struct event_base *base;
    struct flaky_proxy *proxy;
    struct evhttp *http;
    int control_port;
    const char *profile_dir;
};

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: ferry-flaky --upstream HOST:PORT [options]\n"
        "\n"
        "A TCP proxy that makes a link flaky: latency and jitter, bandwidth caps, stalls,\n"
        "resets, blackholes, refused and half-open connections, bit flips and on/off periods,\n"
        "as described by a profile (an INI file; see simulators/profiles/ and docs/testing.md).\n"
        "\n"
        "  --listen HOST:PORT     where clients connect (default 127.0.0.1:0, a free port)\n"
        "  --upstream HOST:PORT   the real server (required)\n"
        "  --profile NAME|FILE    a profile name from the profile directory, or a path to an\n"
        "                         .ini file (default: none, a transparent proxy)\n"
        "  --profile-dir DIR      where profile names are looked up\n"
        "                         (default $FERRY_FLAKY_PROFILE_DIR or %s)\n"
        "  --seed N               makes the run replayable: connection i draws its faults from\n"
        "                         (N, i). Default: random, printed at start.\n"
        "  --control HOST:PORT    control endpoint (e.g. 127.0.0.1:0):\n"
        "                           POST /down            force the link down\n"
        "                           POST /up              release it (back to the schedule)\n"
        "                           POST /profile?name=X  switch profile (name or file)\n"
        "                           GET  /stats           statistics as JSON\n"
        "  --port-file FILE       write 'listen_port=N' and 'control_port=N' lines once ready\n"
        "  --log-level LEVEL      error, warn, info (default), debug\n"
        "  --help                 this text\n"
        "  --version              print the version\n"
        "\n"
        "Signals: SIGUSR1 forces the link down, SIGUSR2 releases it, SIGINT/SIGTERM stop.\n"
        "At exit the statistics are printed to stdout as one JSON line.\n",
        FLAKY_PROFILE_DIR);
}

static int load_profile(const char *arg, const char *dir, struct flaky_profile *out)
{
    if (strcmp(arg, "none") == 0) {
        flaky_profile_defaults(out);
        return 0;
    }
    char path[4096];
    char err[512];
    if (flaky_profile_resolve(arg, dir, path, sizeof path) < 0) {
        log_error("flaky", "profile '%s': not a valid name or path", arg);
        return -1;
    }
    int rc = flaky_profile_load(path, out, err, sizeof err);
    if (rc < 0) {
        log_error("flaky", "%s", err);
        return -1;
    }
    return 0;
}

static void reply_json(struct evhttp_request *req, int code, const char *reason, const char *json)
{
    struct evbuffer *body = evbuffer_new();
    if (!body) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    evbuffer_add(body, json, strlen(json));
    evbuffer_add(body, "\n", 1);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, code, reason, body);
    evbuffer_free(body);
}

static void reply_stats(struct app *a, struct evhttp_request *req)
{
    struct ferry_buf b = FERRY_BUF_INIT;
    if (flaky_proxy_stats_json(a->proxy, &b) < 0 || ferry_buf_append_u8(&b, 0) < 0) {
        ferry_buf_free(&b);
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    reply_json(req, 200, "OK", (const char *)b.data);
    ferry_buf_free(&b);
}

static void control_profile(struct app *a, struct evhttp_request *req)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *query = evhttp_uri_get_query(uri);
    struct evkeyvalq params;
    TAILQ_INIT(&params);
    if (!query || evhttp_parse_query_str(query, &params) < 0) {
        reply_json(req, 400, "Bad Request", "{\"error\":\"POST /profile needs ?name=NAME|FILE\"}");
        return;
    }
    const char *name = evhttp_find_header(&params, "name");
    struct flaky_profile prof;
    if (!name || load_profile(name, a->profile_dir, &prof) < 0) {
        reply_json(req, 400, "Bad Request",
                   "{\"error\":\"profile not found or invalid (see ferry-flaky's log)\"}");
        evhttp_clear_headers(&params);
        return;
    }
    flaky_proxy_set_profile(a->proxy, &prof);
    log_info("flaky", "control: profile switched to %s", prof.name);
    evhttp_clear_headers(&params);
    reply_stats(a, req);
}

static void control_cb(struct evhttp_request *req, void *arg)
{
    struct app *a = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (!path)
        path = "/";
    if (strcmp(path, "/stats") == 0 && cmd == EVHTTP_REQ_GET) {
        reply_stats(a, req);
        return;
    }
    if (cmd != EVHTTP_REQ_POST) {
        reply_json(req, 404, "Not Found",
                   "{\"error\":\"routes: POST /down, POST /up, POST /profile?name=, GET /stats\"}");
        return;
    }
    if (strcmp(path, "/down") == 0) {
        flaky_proxy_force_down(a->proxy, 1);
        log_info("flaky", "control: link forced down");
        reply_stats(a, req);
    } else if (strcmp(path, "/up") == 0) {
        flaky_proxy_force_down(a->proxy, 0);
        log_info("flaky", "control: link released");
        reply_stats(a, req);
    } else if (strcmp(path, "/profile") == 0) {
        control_profile(a, req);
    } else {
        reply_json(req, 404, "Not Found",
                   "{\"error\":\"routes: POST /down, POST /up, POST /profile?name=, GET /stats\"}");
    }
}

static int start_control(struct app *a, const char *hostport)
{
    char host[256];
    int port;
    if (flaky_split_hostport(hostport, host, sizeof host, &port) < 0) {
        log_error("flaky", "--control '%s': expected HOST:PORT", hostport);
        return -1;
    }
    a->http = evhttp_new(a->base);
    if (!a->http)
        return -1;
    struct evhttp_bound_socket *bound =
        evhttp_bind_socket_with_handle(a->http, host, (ev_uint16_t)port);
    if (!bound) {
        log_error("flaky", "--control %s: cannot bind", hostport);
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &len) < 0)
        return -1;
    a->control_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                     : ((struct sockaddr_in *)&ss)->sin_port);
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_gencb(a->http, control_cb, a);
    return 0;
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct app *a = arg;
    if (sig == SIGUSR1) {
        flaky_proxy_force_down(a->proxy, 1);
        log_info("flaky", "SIGUSR1: link forced down");
    } else if (sig == SIGUSR2) {
        flaky_proxy_force_down(a->proxy, 0);
        log_info("flaky", "SIGUSR2: link released");
    } else {
        event_base_loopbreak(a->base);
    }
}

static uint64_t random_seed(void)
{
    return (uint64_t)ferry_realtime_ns() ^ ((uint64_t)getpid() << 32);
}

int main(int argc, char **argv)
{
    const char *listen = "127.0.0.1:0";
    const char *upstream = NULL;
    const char *profile_arg = "none";
    const char *control = NULL;
    const char *port_file = NULL;
    const char *profile_dir = getenv("FERRY_FLAKY_PROFILE_DIR");
    uint64_t seed = random_seed();
    int seed_given = 0;
    enum ferry_log_level level = FERRY_LOG_INFO;
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"upstream", required_argument, NULL, 'u'},
        {"profile", required_argument, NULL, 'p'},
        {"profile-dir", required_argument, NULL, 'd'},
        {"seed", required_argument, NULL, 's'},
        {"control", required_argument, NULL, 'c'},
        {"port-file", required_argument, NULL, 'f'},
        {"log-level", required_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
        switch (ch) {
        case 'V': printf("%s " FERRY_VERSION "\n", "ferry-flaky"); return 0;
        case 'l': listen = optarg; break;
        case 'u': upstream = optarg; break;
        case 'p': profile_arg = optarg; break;
        case 'd': profile_dir = optarg; break;
        case 'c': control = optarg; break;
        case 'f': port_file = optarg; break;
        case 's':
            if (ferry_parse_u64(optarg, UINT64_MAX, &seed) < 0) {
                fprintf(stderr, "ferry-flaky: --seed '%s': expected a non-negative integer\n",
                        optarg);
                return 2;
            }
            seed_given = 1;
            break;
        case 'v':
            if (ferry_log_level_parse(optarg, &level) < 0) {
                fprintf(stderr,
                        "ferry-flaky: --log-level '%s': expected error, warn, info or debug\n",
                        optarg);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!upstream || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (!profile_dir)
        profile_dir = FLAKY_PROFILE_DIR;
    ferry_log_init(level, 2);
    signal(SIGPIPE, SIG_IGN);

    int exit_code = 1;
    struct app a = {.profile_dir = profile_dir};
    struct event *sigs[4] = {NULL, NULL, NULL, NULL};
    static const int signums[4] = {SIGUSR1, SIGUSR2, SIGINT, SIGTERM};
    struct flaky_profile profile;
    if (load_profile(profile_arg, profile_dir, &profile) < 0)
        return 2;
    a.base = event_base_new();
    if (!a.base)
        goto out;
    char err[512];
    struct flaky_proxy_config cfg = {
        .listen = listen, .upstream = upstream, .seed = seed, .profile = &profile};
    int rc = flaky_proxy_new(a.base, &cfg, &a.proxy, err, sizeof err);
    if (rc < 0) {
        log_error("flaky", "%s", err);
        goto out;
    }
    if (control && start_control(&a, control) < 0)
        goto out;
    for (int i = 0; i < 4; i++) {
        sigs[i] = evsignal_new(a.base, signums[i], signal_cb, &a);
        if (!sigs[i] || event_add(sigs[i], NULL) < 0)
            goto out;
    }
    if (port_file) {
        char text[128];
        int n = snprintf(text, sizeof text, "listen_port=%d\ncontrol_port=%d\n",
                         flaky_proxy_listen_port(a.proxy), a.control_port);
        int wrc = ferry_write_file_atomic(port_file, text, (size_t)n, 0644);
        if (wrc < 0) {
            log_error("flaky", "--port-file %s: %s", port_file, strerror(-wrc));
            goto out;
        }
    }
    log_info("flaky", "listening on port %d -> %s, profile %s, seed %llu%s, control port %d",
             flaky_proxy_listen_port(a.proxy), upstream, profile.name, (unsigned long long)seed,
             seed_given ? "" : " (random; pass --seed to replay)", a.control_port);
    if (event_base_dispatch(a.base) < 0)
        goto out;
    struct ferry_buf b = FERRY_BUF_INIT;
    if (flaky_proxy_stats_json(a.proxy, &b) == 0 && ferry_buf_append_u8(&b, 0) == 0)
        printf("%s\n", (const char *)b.data);
    fflush(stdout);
    ferry_buf_free(&b);
    exit_code = 0;
out:
    for (int i = 0; i < 4; i++)
        if (sigs[i])
            event_free(sigs[i]);
    if (a.http)
        evhttp_free(a.http);
    flaky_proxy_free(a.proxy);
    if (a.base)
        event_base_free(a.base);
    return exit_code;
}
