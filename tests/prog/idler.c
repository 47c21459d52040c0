/*
 * idler: allocates a little (a few size classes and one large object), touches it, and
 * sleeps; a registered process whose heap does not change while it sleeps.  The shim
 * starts its control thread (and so registers with meshd) at an allocation slow path a
 * second after start-up: so two seconds in, the idler allocates a few objects of a size it
 * had not used yet, which takes that path, and then does not allocate again.
 *
 *   idler [seconds=20]
 *
 * Exits 0 if its data is intact when it wakes up.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OBJECTS 256

int main(int argc, char **argv)
{
    unsigned seconds = argc > 1 ? (unsigned)atoi(argv[1]) : 20;
    static uint8_t *objs[OBJECTS];
    for (size_t i = 0; i < OBJECTS; i++) {
        size_t n = i == 0 ? 1 << 20 : 16 + (i % 8) * 48;
        objs[i] = malloc(n);
        if (!objs[i])
            return 2;
        memset(objs[i], (int)(uint8_t)i, i == 0 ? 4096 : n);
    }
    static uint8_t *late[8];
    unsigned wake = seconds < 2 ? seconds : 2;
    sleep(wake);
    for (size_t i = 0; i < 8; i++)
        if ((late[i] = malloc(3000)))
            memset(late[i], 0x3c, 3000);
    sleep(seconds - wake);
    int bad = 0;
    for (size_t i = 0; i < OBJECTS; i++) {
        bad |= objs[i][0] != (uint8_t)i;
        free(objs[i]);
    }
    for (size_t i = 0; i < 8; i++) {
        bad |= !late[i] || late[i][2999] != 0x3c;
        free(late[i]);
    }
    return bad;
}
