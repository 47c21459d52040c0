/* log.h: meshd's log, one line per event on stderr (journald adds the time). */
#ifndef MESHD_LOG_H
#define MESHD_LOG_H

void meshd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
