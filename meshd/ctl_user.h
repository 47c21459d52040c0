/* ctl_user.h: the user name meshctl shows for a uid that meshd sends. */
#ifndef MESHD_CTL_USER_H
#define MESHD_CTL_USER_H

#include <stdint.h>

/* The login name of uid from the passwd database (getpwuid_r), or "" if it has none.  The
 * string stays valid until the next call. */
const char *ctl_user_name(uint32_t uid);

#endif
