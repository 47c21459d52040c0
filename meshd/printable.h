/* printable.h: the one rule for bytes that meshd and meshctl show to people (logs,
 * terminals, metric labels) but did not write themselves: printable ASCII stays, anything
 * else (control bytes, DEL, every byte >= 0x80) becomes '?', so it cannot drive a terminal. */
#ifndef MESHD_PRINTABLE_H
#define MESHD_PRINTABLE_H

static inline int printable_ascii(char c)
{
    return (unsigned char)c >= 0x20 && (unsigned char)c < 0x7f;
}

static inline char printable_or_mark(char c) { return printable_ascii(c) ? c : '?'; }

#endif
