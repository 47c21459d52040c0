/*
 * dispatch.h: what meshd does with each message, and who may ask for it.
 *
 * A connection whose first frame is a Register (with the span-table descriptor passed
 * alongside) is a shim process; everything else is a meshctl-style client.  Requests about
 * a process are answered only for root or the process's own uid, as SO_PEERCRED says.
 */
#ifndef MESHD_DISPATCH_H
#define MESHD_DISPATCH_H

#include "server.h"

void dispatch_init(struct event_base *base);
void dispatch_message(struct conn *c, Mesh__Envelope *env);
/* c is going away: forget the process it registered, if any. */
void dispatch_closed(struct conn *c);

#endif
