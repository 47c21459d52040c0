/*
 * page_install.h: puts pages into a shared memory file only where it has none yet.
 *
 * Through a mapping of the file registered (missing mode) with a userfaultfd of its own,
 * UFFDIO_COPY adds each page to the file only if the file holds none at that offset
 * (EEXIST otherwise), atomically with respect to anyone else adding pages to the same file,
 * another process through its own mapping included.  That is what lets a fork child and
 * its parent both fill the child's file in a copy-on-write fork (fork_cow.h): whoever
 * comes first for a page wins, and both would have put the same bytes there.  Nobody ever faults on the
 * mapping, so a user-mode-only userfaultfd, which needs no privilege, is enough.
 */
#ifndef MESH_PAGE_INSTALL_H
#define MESH_PAGE_INSTALL_H

#include <stddef.h>
#include <stdint.h>

struct mesh_page_installer {
    int uffd;      /* -1: closed */
    uint8_t *view; /* the file's pages [0, bytes) */
    size_t bytes;
};

/* Maps fd (bytes long) and registers the mapping; 0, or -1 with nothing left open. */
int mesh_installer_open(struct mesh_page_installer *in, int fd, size_t bytes);
/* Pages [page, page+n) of the file from src (n pages), skipping those the file holds.
 * 0, or -1 (ENOMEM, say): some pages may have been put. */
int mesh_installer_put(struct mesh_page_installer *in, uint32_t page, uint32_t n, const void *src);
/* Drops the mapping's entries for pages [page, page+n) (the file keeps them): installing
 * maps each page, and pages installed for another process should not count in this one's
 * RSS. */
void mesh_installer_unmap(struct mesh_page_installer *in, uint32_t page, uint32_t n);
void mesh_installer_close(struct mesh_page_installer *in);

#endif
