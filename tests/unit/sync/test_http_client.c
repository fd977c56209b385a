/*
 * test_http_client.c - transport/http_client against a real libevent evhttp server running on
 * the same event_base in this process (port 0, read back). Proves: a POST with a body arrives
 * and its response and headers come back; Retry-After is captured; the deadline ends a request
 * the server never answers; a stalled transfer is abandoned by the low-speed limit well before
 * its deadline; a body over the bound fails; Range reaches the server and on_data streams; a
 * closed port is a connect error; cancel calls back exactly once.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/util.h"
#include "transport/http_client.h"

struct fixture {
    struct event_base *base;
    struct evhttp *http;
    struct http_client *client;
    int port;
    char url[128];
    /* outcome of the last request */
    int calls;
    int err;
    long status;
    char body[256];
    size_t body_len;
    int64_t retry_after_ms;
    int64_t elapsed_ms;
    char header[64];
    size_t streamed;
    char seen_range[64];
};

static void done_cb(void *arg, struct http_request *req, const struct http_response *resp)
{
    struct fixture *f = arg;
    f->calls++;
    f->err = resp->err;
    f->status = resp->status;
    f->retry_after_ms = resp->retry_after_ms;
    f->elapsed_ms = resp->elapsed_ms;
    f->body_len = resp->body_len;
    if (resp->body) {
        size_t n = resp->body_len < sizeof(f->body) - 1 ? resp->body_len : sizeof(f->body) - 1;
        memcpy(f->body, resp->body, n);
        f->body[n] = '\0';
    }
    size_t hl = 0;
    const char *h = http_response_header(req, "X-Ferry-Test", &hl);
    if (h && hl < sizeof(f->header)) {
        memcpy(f->header, h, hl);
        f->header[hl] = '\0';
    }
    event_base_loopbreak(f->base);
}

static void handler(struct evhttp_request *req, void *arg)
{
    struct fixture *f = arg;
    const char *uri = evhttp_request_get_uri(req);
    struct evbuffer *out = evbuffer_new();
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    if (strncmp(uri, "/echo", 5) == 0) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        evbuffer_add_printf(out, "got %zu:", evbuffer_get_length(in));
        evbuffer_add_buffer(out, in);
        evhttp_add_header(oh, "X-Ferry-Test", "  hello  ");
        evhttp_send_reply(req, 200, "OK", out);
    } else if (strcmp(uri, "/busy") == 0) {
        evhttp_add_header(oh, "Retry-After", "7");
        evbuffer_add_printf(out, "{\"error\":\"busy\"}");
        evhttp_send_reply(req, 503, "Service Unavailable", out);
    } else if (strcmp(uri, "/silent") == 0) {
        /* never answered: the client's deadline must end it */
    } else if (strcmp(uri, "/stall") == 0) {
        evhttp_send_reply_start(req, 200, "OK");
        evbuffer_add_printf(out, "first bytes then nothing");
        evhttp_send_reply_chunk(req, out);
    } else if (strcmp(uri, "/big") == 0) {
        char block[1024];
        memset(block, 'x', sizeof(block));
        for (int i = 0; i < 100; i++)
            evbuffer_add(out, block, sizeof(block));
        evhttp_send_reply(req, 200, "OK", out);
    } else if (strcmp(uri, "/range") == 0) {
        const char *r = evhttp_find_header(evhttp_request_get_input_headers(req), "Range");
        snprintf(f->seen_range, sizeof(f->seen_range), "%s", r ? r : "");
        char block[4096];
        memset(block, 'r', sizeof(block));
        evbuffer_add(out, block, sizeof(block));
        evhttp_send_reply(req, 206, "Partial Content", out);
    } else {
        evhttp_send_reply(req, 404, "Not Found", out);
    }
    evbuffer_free(out);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->base = event_base_new();
    f->http = evhttp_new(f->base);
    evhttp_set_gencb(f->http, handler, f);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(f->http, "127.0.0.1", 0);
    assert_non_null(bs);
    struct sockaddr_in sin;
    socklen_t sl = sizeof(sin);
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sin, &sl), 0);
    f->port = ntohs(sin.sin_port);
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d", f->port);
    f->client = http_client_new(f->base);
    assert_non_null(f->client);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    http_client_free(f->client);
    evhttp_free(f->http);
    event_base_free(f->base);
    free(f);
    return 0;
}

static void run_request(struct fixture *f, struct http_request_opts *o, const char *path)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", f->url, path);
    o->url = url;
    o->on_done = done_cb;
    o->arg = f;
    f->calls = 0;
    f->header[0] = '\0';
    assert_int_equal(http_request_start(f->client, o, NULL), 0);
    /* a safety net: a hung test fails instead of waiting for ctest's timeout */
    struct timeval guard = {20, 0};
    event_base_loopexit(f->base, &guard);
    event_base_dispatch(f->base);
    assert_int_equal(f->calls, 1);
    assert_int_equal(http_client_in_flight(f->client), 0);
}

static void test_post_body_and_headers_roundtrip(void **state)
{
    struct fixture *f = *state;
    struct http_request_opts o;
    http_request_opts_init(&o);
    o.method = "POST";
    o.body = "payload\0binary";
    o.body_len = 14;
    const char *hdrs[] = {"Content-Type: application/octet-stream", NULL};
    o.headers = hdrs;
    run_request(f, &o, "/echo");
    assert_int_equal(f->err, HTTP_CLIENT_OK);
    assert_int_equal(f->status, 200);
    assert_int_equal(f->body_len, 7 + 14);
    assert_memory_equal(f->body, "got 14:payload\0binary", 21);
    assert_string_equal(f->header, "hello");
    /* a second request reuses the cached connection and still works */
    run_request(f, &o, "/echo");
    assert_int_equal(f->status, 200);
}

static void test_retry_after_captured_on_503(void **state)
{
    struct fixture *f = *state;
    struct http_request_opts o;
    http_request_opts_init(&o);
    run_request(f, &o, "/busy");
    assert_int_equal(f->err, HTTP_CLIENT_OK);
    assert_int_equal(f->status, 503);
    assert_int_equal(f->retry_after_ms, 7000);
    assert_string_equal(f->body, "{\"error\":\"busy\"}");
}

static void test_deadline_ends_unanswered_request(void **state)
{
    struct fixture *f = *state;
    struct http_request_opts o;
    http_request_opts_init(&o);
    o.deadline_ms = 300;
    run_request(f, &o, "/silent");
    assert_int_equal(f->err, HTTP_CLIENT_ETIMEOUT);
    assert_true(f->elapsed_ms >= 280);
    assert_true(f->elapsed_ms < 5000);
}

static void test_stalled_transfer_abandoned_before_deadline(void **state)
{
    struct fixture *f = *state;
    struct http_request_opts o;
    http_request_opts_init(&o);
    o.deadline_ms = 15000;
    o.low_speed_bytes_per_s = 1000;
    o.low_speed_time_s = 1;
    run_request(f, &o, "/stall");
    assert_int_equal(f->err, HTTP_CLIENT_ESTALLED);
    assert_int_equal(f->status, 200);
    assert_true(f->elapsed_ms >= 900);
    assert_true(f->elapsed_ms < 9000); /* deadline 15 s: stall detection, not the deadline */
}

static void test_body_over_bound_fails(void **state)
{
    struct fixture *f = *state;
    struct http_request_opts o;
    http_request_opts_init(&o);
    o.max_response_bytes = 10 * 1024;
    run_request(f, &o, "/big");
    assert_int_equal(f->err, HTTP_CLIENT_ETOOBIG);
    /* within the bound it is delivered whole */
    o.max_response_bytes = 200 * 1024;
    run_request(f, &o, "/big");
    assert_int_equal(f->err, HTTP_CLIENT_OK);
    assert_int_equal(f->body_len, 100 * 1024);
}

static int count_data(void *arg, const uint8_t *data, size_t len)
{
    struct fixture *f = arg;
    (void)data;
    f->streamed += len;
    return 0;
}

static void test_range_header_and_streaming(void **state)
{
    struct fixture *f = *state;
    struct http_request_opts o;
    http_request_opts_init(&o);
    o.range_start = 100;
    o.range_end = 4195;
    o.on_data = count_data;
    f->streamed = 0;
    run_request(f, &o, "/range");
    assert_int_equal(f->err, HTTP_CLIENT_OK);
    assert_int_equal(f->status, 206);
    assert_string_equal(f->seen_range, "bytes=100-4195");
    assert_int_equal(f->streamed, 4096);
    assert_int_equal(f->body_len, 0);
}

static void test_closed_port_is_connect_error(void **state)
{
    struct fixture *f = *state;
    /* a port that was just free: bind, read it, close */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t sl = sizeof(sin);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sin, &sl), 0);
    close(s);
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", ntohs(sin.sin_port));
    struct http_request_opts o;
    http_request_opts_init(&o);
    o.url = url;
    o.on_done = done_cb;
    o.arg = f;
    f->calls = 0;
    assert_int_equal(http_request_start(f->client, &o, NULL), 0);
    event_base_dispatch(f->base);
    assert_int_equal(f->calls, 1);
    assert_int_equal(f->err, HTTP_CLIENT_ECONNECT);
}

static void test_cancel_calls_back_once(void **state)
{
    struct fixture *f = *state;
    char url[256];
    snprintf(url, sizeof(url), "%s/silent", f->url);
    struct http_request_opts o;
    http_request_opts_init(&o);
    o.url = url;
    o.on_done = done_cb;
    o.arg = f;
    f->calls = 0;
    struct http_request *req = NULL;
    assert_int_equal(http_request_start(f->client, &o, &req), 0);
    struct timeval tv = {0, 100000};
    event_base_loopexit(f->base, &tv);
    event_base_dispatch(f->base);
    assert_int_equal(f->calls, 0);
    http_request_cancel(req);
    assert_int_equal(f->calls, 1);
    assert_int_equal(f->err, HTTP_CLIENT_ECANCELED);
    assert_int_equal(http_client_in_flight(f->client), 0);
    /* and a request still running at free is completed once, with ECANCELED */
    assert_int_equal(http_request_start(f->client, &o, NULL), 0);
    http_client_free(f->client);
    f->client = http_client_new(f->base);
    assert_non_null(f->client);
    assert_int_equal(f->calls, 2);
    assert_int_equal(f->err, HTTP_CLIENT_ECANCELED);
}

static void test_invalid_arguments_never_call_back(void **state)
{
    struct fixture *f = *state;
    struct http_request_opts o;
    http_request_opts_init(&o);
    o.on_done = done_cb;
    o.arg = f;
    f->calls = 0;
    assert_int_equal(http_request_start(f->client, &o, NULL), HTTP_CLIENT_EINVAL); /* no url */
    o.url = f->url;
    o.method = "BREW";
    assert_int_equal(http_request_start(f->client, &o, NULL), HTTP_CLIENT_EINVAL);
    o.method = "GET";
    o.range_start = 10;
    o.range_end = 5;
    assert_int_equal(http_request_start(f->client, &o, NULL), HTTP_CLIENT_EINVAL);
    assert_int_equal(f->calls, 0);
}

/* Only HTTP(S): a dict:// URL is refused (EINVAL) and nothing is sent or read. Proves the protocol
 * restriction with whichever libcurl option the build uses (see unit.sync.http_client_curl768). */
static void test_other_protocols_refused(void **state)
{
    struct fixture *f = *state;
    struct http_request_opts o;
    http_request_opts_init(&o);
    char url[128];
    /* dict:// to the test server: libcurl speaks DICT to any TCP server and would succeed */
    snprintf(url, sizeof(url), "dict://127.0.0.1:%d/d:ferry", f->port);
    o.url = url;
    o.on_done = done_cb;
    o.arg = f;
    f->calls = 0;
    f->body_len = 0;
    int rc = http_request_start(f->client, &o, NULL);
    if (rc == 0) {
        struct timeval guard = {20, 0};
        event_base_loopexit(f->base, &guard);
        event_base_dispatch(f->base);
        assert_int_equal(f->calls, 1);
        rc = f->err;
    }
    assert_int_equal(rc, HTTP_CLIENT_EINVAL);
    assert_int_equal(f->body_len, 0);
}

static void test_retry_after_parsing(void **state)
{
    (void)state;
    assert_int_equal(http_parse_retry_after("120", 3, 0), 120000);
    assert_int_equal(http_parse_retry_after("0", 1, 0), 0);
    assert_int_equal(http_parse_retry_after("99999999999", 11, 0), 24LL * 3600 * 1000);
    assert_int_equal(http_parse_retry_after("-5", 2, 0), -1);
    assert_int_equal(http_parse_retry_after("soon", 4, 0), -1);
    const char *date = "Wed, 21 Oct 2015 07:28:00 GMT";
    int64_t when = 1445412480;
    assert_int_equal(http_parse_retry_after(date, strlen(date), when - 30), 30000);
    assert_int_equal(http_parse_retry_after(date, strlen(date), when + 30), 0);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_post_body_and_headers_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_captured_on_503, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_ends_unanswered_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stalled_transfer_abandoned_before_deadline, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_body_over_bound_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_range_header_and_streaming, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closed_port_is_connect_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_calls_back_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_arguments_never_call_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_protocols_refused, setup, teardown),
        cmocka_unit_test(test_retry_after_parsing),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
