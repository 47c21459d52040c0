/* ctl_json.h: meshctl's JSON output.  Strings are escaped and made valid UTF-8 whatever
 * meshd sent, so the output always parses. */
#ifndef MESHD_CTL_JSON_H
#define MESHD_CTL_JSON_H

#include <stdio.h>

#include "frame.h"

/* One object: pid, uid, user, name, exe, heap_bytes, live_bytes, meshes, released_bytes, and
 * "classes" when with_classes. */
void json_process(FILE *f, const Mesh__ProcessStats *ps, int with_classes);

#endif
