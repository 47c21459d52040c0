/* page_install.c: see page_install.h. */
#include "page_install.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"
#include "fdutil.h"

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

static int open_uffd(void)
{
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
    if (fd < 0 && errno == EINVAL) /* before Linux 5.11: no such flag */
        fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
    return fd < 0 ? -1 : mesh_fd_move_high(fd);
}

int mesh_installer_open(struct mesh_page_installer *in, int fd, size_t bytes)
{
    int saved = errno;
    in->uffd = open_uffd();
    in->view = NULL;
    in->bytes = bytes;
    struct uffdio_api api = {.api = UFFD_API};
    if (in->uffd < 0 || ioctl(in->uffd, UFFDIO_API, &api) != 0)
        goto fail;
    void *view = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (view == MAP_FAILED)
        goto fail;
    in->view = view;
    struct uffdio_register reg = {.range = {(uintptr_t)view, bytes}, .mode = UFFDIO_REGISTER_MODE_MISSING};
    if (ioctl(in->uffd, UFFDIO_REGISTER, &reg) != 0)
        goto fail;
    errno = saved;
    return 0;
fail:
    mesh_installer_close(in);
    errno = saved;
    return -1;
}

int mesh_installer_put(struct mesh_page_installer *in, uint32_t page, uint32_t n, const void *src)
{
    size_t done = 0, len = (size_t)n << MESH_PAGE_SHIFT;
    uintptr_t dst = (uintptr_t)in->view + ((size_t)page << MESH_PAGE_SHIFT);
    while (done < len) {
        struct uffdio_copy copy = {.dst = dst + done, .src = (uintptr_t)src + done, .len = len - done,
                                   .mode = UFFDIO_COPY_MODE_DONTWAKE};
        if (ioctl(in->uffd, UFFDIO_COPY, &copy) == 0)
            return 0;
        if (copy.copy > 0) /* partly done (EAGAIN): the rest from where it stopped */
            done += (size_t)copy.copy;
        else if (errno == EEXIST) /* the file holds the first page: keep it */
            done += MESH_PAGE_SIZE;
        else if (errno != EINTR && errno != EAGAIN)
            return -1;
    }
    return 0;
}

void mesh_installer_unmap(struct mesh_page_installer *in, uint32_t page, uint32_t n)
{
    int saved = errno;
    madvise(in->view + ((size_t)page << MESH_PAGE_SHIFT), (size_t)n << MESH_PAGE_SHIFT, MADV_DONTNEED);
    errno = saved;
}

void mesh_installer_close(struct mesh_page_installer *in)
{
    if (in->view)
        munmap(in->view, in->bytes);
    if (in->uffd >= 0)
        close(in->uffd);
    in->view = NULL;
    in->uffd = -1;
}
