/* ctl_policy.h: `meshctl policy [KEY=VALUE...]`: read meshd's policy, or set some of it
 * (root only; all or nothing), then print every setting as KEY=VALUE, one per line. */
#ifndef MESHD_CTL_POLICY_H
#define MESHD_CTL_POLICY_H

#include <stddef.h>

#include "frame.h"

/* call: meshctl's request/answer function (exits with a message on an Error answer). */
int ctl_policy(Mesh__Envelope *(*call)(Mesh__Envelope *), size_t nset, const char *const *set);

#endif
