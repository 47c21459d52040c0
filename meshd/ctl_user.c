/* ctl_user.c: see ctl_user.h. */
#include "ctl_user.h"

#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

const char *ctl_user_name(uint32_t uid)
{
    /* ps lists many processes of few users: remember the last answer. */
    static char name[64];
    static uint32_t last_uid;
    static int have;
    if (have && last_uid == uid)
        return name;
    struct passwd pw, *found = NULL;
    char buf[4096];
    name[0] = '\0';
    if (getpwuid_r((uid_t)uid, &pw, buf, sizeof buf, &found) == 0 && found)
        snprintf(name, sizeof name, "%s", found->pw_name);
    last_uid = uid;
    have = 1;
    return name;
}
