/*
 * credentials.h: the shim's threads out of the way of a call that must not meet them:
 * glibc's set*id broadcast and the namespace calls (credentials.c), a seccomp filter for
 * every thread (kernel_calls.c).
 */
#ifndef MESH_CREDENTIALS_H
#define MESH_CREDENTIALS_H

#include <sys/types.h>

struct mesh_threads_paused {
    uid_t owner; /* the real uid before the call */
    int paused;  /* mesh_control_pause's answer: 1 if a resume is owed */
};

/* Finishes a fork child's lazy copy (fork_lazy.h), stops sharing (fork_share.h) and
 * pauses the control thread (control.h: stopped and joined if always_stop or if its
 * capabilities differ from the caller's). */
struct mesh_threads_paused mesh_threads_pause(int always_stop);
/* Resumes what the pause paused (the control thread registers anew if the real uid
 * changed meanwhile); errno is kept. */
void mesh_threads_resume(struct mesh_threads_paused p);

#endif
