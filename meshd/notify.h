/*
 * notify.h: the two pieces of systemd's protocol meshd speaks, without libsystemd.
 *
 * sd_notify: a datagram with "READY=1", "RELOADING=1", "STOPPING=1"... to $NOTIFY_SOCKET
 * (a path, or an abstract name when it starts with '@').  Nothing happens without it.
 *
 * Socket activation: when $LISTEN_PID is our pid and $LISTEN_FDS >= 1, descriptor 3 is
 * the listening socket systemd (or systemd-socket-activate) bound for us.
 *
 * Watchdog: with WatchdogSec= systemd sets $WATCHDOG_USEC and kills the service when no
 * "WATCHDOG=1" arrives within it; main.c sends one from the event loop every half interval.
 */
#ifndef MESHD_NOTIFY_H
#define MESHD_NOTIFY_H

/* Sends state (e.g. "READY=1\nSTATUS=...") if $NOTIFY_SOCKET is set; 0, or -1 if it is set
 * but the message could not be sent. */
int notify_send(const char *state);
/* fd 3 if this process was socket-activated with a listening AF_UNIX stream socket, else -1.
 * Clears LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES either way. */
int notify_listen_fd(void);
/* The interval at which systemd wants WATCHDOG=1 ($WATCHDOG_USEC, for this process when
 * $WATCHDOG_PID is set), in microseconds, or 0 when no watchdog is asked for. */
unsigned long long notify_watchdog_usec(void);

#endif
