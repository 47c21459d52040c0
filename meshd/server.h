/*
 * server.h: meshd's listening socket and its connections.
 *
 * Every connection is read with a raw event and recvmsg (a bufferevent would drop the
 * span-table descriptor a shim passes with SCM_RIGHTS) into a buffer that holds at most
 * one maximal frame; whole frames go to dispatch_message().  Replies are sent at once
 * and the rest queued for an EV_WRITE event.  A peer that breaks the protocol loses its
 * own connection and nothing else.
 *
 * Connections are never freed under a caller: conn_fail() and conn_finish() only mark
 * the connection and let its write event close it from the loop.
 *
 * No peer can take meshd from the others:
 *  - a connection that is not a registered shim gets one request answered, then meshd
 *    reads nothing more from it and closes it once the answer is sent (PROTOCOL.md: one
 *    request, one answer, then close); a shim's frames are handled at most
 *    FRAMES_PER_EVENT at a time before the loop serves others;
 *  - a connection that neither registers nor sends a request within IDLE_SECONDS is
 *    closed (one that sent a request gets until its answer is due);
 *  - a non-root uid may hold at most UID_MAX_UNREGISTERED connections that are not
 *    registered shims, and at most server_uid_share() connections in all (registered
 *    shims, which have no idle timeout, included; so are its descriptors still being
 *    closed, closer.h); the last CONN_RESERVE slots are for root; when every slot is
 *    taken a new peer replaces the oldest connection that has sent nothing yet;
 *  - input buffers grow to the frame being received and are freed when empty; the
 *    buffers of one non-root uid's connections together stay under UID_MAX_BUFFERED;
 *  - the connection limit follows RLIMIT_NOFILE (its soft limit raised to the hard one),
 *    and running out of descriptors pauses accepting for a moment instead of spinning.
 */
#ifndef MESHD_SERVER_H
#define MESHD_SERVER_H

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "frame.h"

struct process;

struct conn {
    uint64_t id; /* never reused: how others refer to a connection that may be gone */
    int fd;
    pid_t pid; /* SO_PEERCRED at connect time */
    uid_t uid;
    struct event *rev, *wev;
    struct event *more; /* zero-delay timer: frames left after a FRAMES_PER_EVENT batch */
    struct event *idle; /* closes a connection that is not a shim once it overstays */
    uint8_t *in;
    size_t in_len, in_cap;
    uint8_t *out;
    size_t out_len, out_cap;
    int passed_fd;         /* SCM_RIGHTS descriptor not yet claimed by a Register, or -1 */
    unsigned frames;       /* frames handled so far */
    int broken, finishing; /* close now / close once the output is flushed */
    int served;            /* not a shim and sent its one request: reads nothing more, and
                            * finishes with its first answer */
    unsigned sent;         /* frames queued for this peer so far */
    struct process *proc;  /* set when the peer registered as a shim process */
    struct conn *prev, *next;
};

int server_listen(struct event_base *base, const char *path);
/* Listens on fd, a listening socket someone else bound (systemd socket activation): it is
 * not removed at shutdown, systemd owns it. */
int server_listen_fd(struct event_base *base, int fd);
/* Closes every connection and removes the socket (if meshd bound it). */
void server_shutdown(void);

/* Queues one frame; on failure the connection is failed and -1 returned. */
int conn_send(struct conn *c, Mesh__Envelope *env);
/* Sends Error{code, message}. */
void conn_send_error(struct conn *c, uint32_t code, const char *message);
/* The SCM_RIGHTS descriptor received with this connection's data, now the caller's; -1 if none. */
int conn_take_fd(struct conn *c);
void conn_fail(struct conn *c);
void conn_finish(struct conn *c);
struct conn *conn_by_id(uint64_t id);
/* The most connection slots one non-root uid may hold, and so the most processes it may
 * register: a quarter of the connection limit. */
size_t server_uid_share(void);

#endif
