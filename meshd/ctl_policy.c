/* ctl_policy.c: see ctl_policy.h. */
#include "ctl_policy.h"

#include <stdio.h>
#include <string.h>

#include "printable.h"

int ctl_policy(Mesh__Envelope *(*call)(Mesh__Envelope *), size_t nset, const char *const *set)
{
    for (size_t i = 0; i < nset; i++) {
        if (!strchr(set[i], '=')) {
            fprintf(stderr, "meshctl: policy: expected KEY=VALUE, got %s\n", set[i]);
            return 2;
        }
    }
    Mesh__PolicyRequest pr = MESH__POLICY_REQUEST__INIT;
    Mesh__Envelope req = MESH__ENVELOPE__INIT;
    pr.n_set = nset;
    pr.set = (char **)set; /* only read while packing */
    req.body_case = MESH__ENVELOPE__BODY_POLICY_REQUEST;
    req.policy_request = &pr;
    Mesh__Envelope *env = call(&req);
    if (env->body_case != MESH__ENVELOPE__BODY_POLICY_REPLY) {
        fprintf(stderr, "meshctl: unexpected reply %d from meshd\n", (int)env->body_case);
        mesh__envelope__free_unpacked(env, NULL);
        return 1;
    }
    const Mesh__PolicyReply *r = env->policy_reply;
    for (size_t i = 0; i < r->n_settings; i++) {
        /* Printable only: meshd's answer is not trusted to drive the terminal. */
        for (const char *s = r->settings[i]; *s; s++)
            putchar(printable_or_mark(*s));
        putchar('\n');
    }
    mesh__envelope__free_unpacked(env, NULL);
    return 0;
}
