/*
 * metrics_http.c: the HTTP side of the metrics endpoint (metrics.h): accept, read one
 * request, send one answer, close.
 *
 * Not evhttp: evhttp takes every connection it is offered and, when accept() fails (out
 * of descriptors), logs and retries at once, spinning; libevent 2.1 can neither cap its
 * connections nor tell when it has closed one.  Here every connection is a bufferevent
 * meshd frees itself, so they are counted exactly:
 *  - at most METRICS_MAX_CONNS at once; a new one replaces the oldest that has not sent
 *    its request yet (so idle connections cannot lock the scraper out), or is closed;
 *  - METRICS_IO_SECONDS to send the request and to take the answer;
 *  - a request head over METRICS_MAX_HEAD bytes is refused (431);
 *  - a failing accept() pauses the listener for METRICS_ACCEPT_PAUSE_SECONDS.
 * HTTP/1.0 and 1.1 GET and HEAD; every answer has Content-Length and Connection: close.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"

#define METRICS_MAX_CONNS 16
#define METRICS_IO_SECONDS 10
#define METRICS_MAX_HEAD 8192
#define METRICS_ACCEPT_PAUSE_SECONDS 1

static struct event_base *loop;
static struct evconnlistener *listener;
static struct event *accept_pause;
/* Every open connection; waiting: its request is not complete yet.  Oldest first. */
static struct {
    struct bufferevent *bev;
    int waiting;
} conns[METRICS_MAX_CONNS];
static unsigned nconns;

static size_t slot_of(const struct bufferevent *bev)
{
    size_t i = 0;
    while (i < nconns && conns[i].bev != bev)
        i++;
    return i;
}

static void conn_free(struct bufferevent *bev)
{
    size_t i = slot_of(bev);
    if (i < nconns) {
        memmove(&conns[i], &conns[i + 1], (nconns - i - 1) * sizeof conns[0]);
        nconns--;
    }
    bufferevent_free(bev);
}

/* Makes room for one more: 0, or -1 if every connection has sent its request. */
static int make_room(void)
{
    if (nconns < METRICS_MAX_CONNS)
        return 0;
    for (size_t i = 0; i < nconns; i++) {
        if (conns[i].waiting) {
            conn_free(conns[i].bev);
            return 0;
        }
    }
    return -1;
}

/* Once the answer is out, the connection is done. */
static void on_written(struct bufferevent *bev, void *arg)
{
    (void)arg;
    conn_free(bev);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)what; /* EOF, error or timeout: all end the connection */
    (void)arg;
    conn_free(bev);
}

static void answer(struct bufferevent *bev, int code, const char *reason, const char *ctype,
                   struct evbuffer *body, int head_only)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    size_t len = body ? evbuffer_get_length(body) : 0;
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "Connection: close\r\n\r\n",
                        code, reason, ctype, len);
    if (body && !head_only)
        evbuffer_add_buffer(out, body);
    size_t i = slot_of(bev);
    if (i < nconns)
        conns[i].waiting = 0;
    bufferevent_disable(bev, EV_READ);
    bufferevent_setcb(bev, NULL, on_written, on_event, NULL);
}

static void error_answer(struct bufferevent *bev, int code, const char *reason)
{
    struct evbuffer *body = evbuffer_new();
    if (body)
        evbuffer_add_printf(body, "%d %s\n", code, reason);
    answer(bev, code, reason, "text/plain; charset=utf-8", body, 0);
    if (body)
        evbuffer_free(body);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (end.pos < 0) {
        if (evbuffer_get_length(in) > METRICS_MAX_HEAD)
            error_answer(bev, 431, "Request Header Fields Too Large");
        return;
    }
    size_t n;
    char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
    char method[8], target[256], version[16];
    if (!line || sscanf(line, "%7s %255s %15s", method, target, version) != 3 ||
        strncmp(version, "HTTP/1.", 7) != 0) {
        free(line);
        error_answer(bev, 400, "Bad Request");
        return;
    }
    free(line);
    int head = !strcmp(method, "HEAD");
    if (!head && strcmp(method, "GET") != 0) {
        error_answer(bev, 405, "Method Not Allowed");
        return;
    }
    char *query = strchr(target, '?');
    if (query)
        *query = '\0';
    if (strcmp(target, "/metrics") != 0) {
        error_answer(bev, 404, "Not Found (try /metrics)");
        return;
    }
    struct evbuffer *body = evbuffer_new();
    if (!body) {
        error_answer(bev, 500, "Internal Server Error");
        return;
    }
    metrics_render(body);
    answer(bev, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body, head);
    evbuffer_free(body);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    (void)l;
    (void)sa;
    (void)salen;
    (void)arg;
    if (make_room() != 0) {
        close(fd); /* a fresh socket: nothing queued, nothing lingers */
        return;
    }
    struct bufferevent *bev =
        bufferevent_socket_new(loop, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        close(fd);
        return;
    }
    struct timeval tv = {.tv_sec = METRICS_IO_SECONDS};
    bufferevent_set_timeouts(bev, &tv, &tv);
    bufferevent_setwatermark(bev, EV_READ, 0, METRICS_MAX_HEAD + 1);
    bufferevent_setcb(bev, on_read, NULL, on_event, NULL);
    bufferevent_enable(bev, EV_READ);
    conns[nconns].bev = bev;
    conns[nconns].waiting = 1;
    nconns++;
}

static void on_accept_pause(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (listener)
        evconnlistener_enable(listener);
}

/* accept() failed (out of descriptors, say): the pending connection stays and the socket
 * stays readable, so stop watching it for a while instead of spinning (and logging). */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    (void)arg;
    static time_t last_log;
    time_t now = time(NULL);
    if (now - last_log >= 60) {
        meshd_log("metrics: cannot accept: %s; pausing %d s", strerror(errno),
                  METRICS_ACCEPT_PAUSE_SECONDS);
        last_log = now;
    }
    evconnlistener_disable(l);
    struct timeval tv = {.tv_sec = METRICS_ACCEPT_PAUSE_SECONDS};
    evtimer_add(accept_pause, &tv);
}

int metrics_http_listen(struct event_base *base, const char *host, uint16_t port,
                        unsigned *bound)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        len = sizeof *s4;
    } else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        len = sizeof *s6;
    } else {
        errno = EINVAL;
        return -1;
    }
    loop = base;
    accept_pause = evtimer_new(base, on_accept_pause, NULL);
    if (!accept_pause)
        return -1;
    listener = evconnlistener_new_bind(
        base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        METRICS_MAX_CONNS, (struct sockaddr *)&ss, (int)len);
    if (!listener) {
        int e = errno;
        event_free(accept_pause);
        accept_pause = NULL;
        errno = e;
        return -1;
    }
    evconnlistener_set_error_cb(listener, on_accept_error);
    len = sizeof ss;
    *bound = port;
    if (getsockname(evconnlistener_get_fd(listener), (struct sockaddr *)&ss, &len) == 0)
        *bound = ntohs(ss.ss_family == AF_INET6 ? s6->sin6_port : s4->sin_port);
    return 0;
}

void metrics_http_stop(void)
{
    if (listener)
        evconnlistener_free(listener);
    listener = NULL;
    if (accept_pause)
        event_free(accept_pause);
    accept_pause = NULL;
    /* Connections still open are freed with the event base (the process is exiting). */
}
