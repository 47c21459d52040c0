/* test_death.c: bad pointers abort with one clear line on stderr, as glibc does. */
#include "testutil.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

typedef void (*bad_op)(void);

/* Runs op in a child with stderr captured; checks it died of SIGABRT having written a line
 * that contains `expect` and the libmesh prefix. */
static void expect_abort(bad_op op, const char *expect)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        signal(SIGABRT, SIG_DFL);
        op();
        _exit(0); /* not reached when the shim catches the error */
    }
    close(fds[1]);
    char buf[1024];
    size_t len = 0;
    ssize_t r;
    while ((r = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)r;
    buf[len] = '\0';
    close(fds[0]);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d, stderr: %s", status, buf);
    ck_assert_msg(strstr(buf, "libmesh: ") == buf, "stderr: %s", buf);
    ck_assert_msg(strstr(buf, expect) != NULL, "want '%s' in: %s", expect, buf);
    ck_assert_msg(strstr(buf, "0x") != NULL, "no address in: %s", buf);
    ck_assert_int_eq(buf[len - 1], '\n');
}

static void double_free_local(void)
{
    void *p = mesh_malloc(48);
    mesh_free(p);
    mesh_free(p);
}

static void double_free_detached(void)
{
    void *p = mesh_malloc(48);
    void *keep = mesh_malloc(48); /* same span: keeps it alive after p's free */
    mesh_thread_flush();          /* the span is now in the global heap: the remote path */
    mesh_free(p);
    mesh_free(p);
    mesh_free(keep);
}

/* The first free goes through the foreign-free cache into the span (its bit cleared, the
 * cache's mark gone): the second must find the bit clear, not cache p again. */
static void double_free_after_foreign_release(void)
{
    void *p = mesh_malloc(48);
    void *keep = mesh_malloc(48);
    mesh_thread_flush();
    mesh_free(p);
    mesh_thread_flush(); /* the foreign cache frees p into its span */
    mesh_free(p);
    mesh_free(keep);
}

/* Fills more than a span of the class, so that the first span is retired from the
 * vector and kept by the thread (an owned span: thread_heap.h); p lives there. */
static void *in_owned_span(void **spill, unsigned n)
{
    void *p = mesh_malloc(48);
    for (unsigned i = 0; i < n; i++)
        spill[i] = mesh_malloc(48);
    return p;
}

static void double_free_owned(void)
{
    static void *spill[400]; /* class 48: 85 objects a span */
    void *p = in_owned_span(spill, 400);
    mesh_free(p);
    mesh_free(p);
}

/* The owner's free goes on the foreign stack; more frees overflow it, which moves p (the
 * oldest) into its owned span's local free set: the second free must find it there. */
static void double_free_owned_after_release(void)
{
    static void *spill[400];
    void *p = in_owned_span(spill, 400);
    mesh_free(p);
    for (unsigned i = 0; i < 300; i++)
        mesh_free(spill[i]);
    mesh_free(p);
}

/* Freed first by another thread (the bit cleared in the span), then by the owner. */
static void *free_it(void *p)
{
    mesh_free(p);
    mesh_thread_flush();
    return NULL;
}

static void double_free_owned_after_remote(void)
{
    static void *spill[400];
    void *p = in_owned_span(spill, 400);
    pthread_t t;
    pthread_create(&t, NULL, free_it, p);
    pthread_join(t, NULL);
    mesh_free(p);
}

/* The foreign stack (thread_heap.h) holding 40 objects of detached spans, p among them at
 * position foreign_pos: freeing p again is caught wherever it sits in the stack. */
static unsigned foreign_pos;

static void double_free_in_foreign_stack(void)
{
    enum { N = 40 };
    void *objs[N], *keep = mesh_malloc(48); /* keeps the spans from emptying */
    for (unsigned i = 0; i < N; i++)
        objs[i] = mesh_malloc(48);
    mesh_thread_flush(); /* the spans go to the global heap: the frees below are foreign */
    for (unsigned i = 0; i < N; i++)
        mesh_free(objs[i]);
    mesh_free(objs[foreign_pos]);
    mesh_free(keep);
}

/* A use after free wrote over the object's first words before it was freed again: the
 * foreign stack's check must not depend on what the object holds. */
static void double_free_after_write(void)
{
    void *p = mesh_malloc(48), *keep = mesh_malloc(48);
    mesh_thread_flush(); /* p's span is detached: the free below is foreign */
    mesh_free(p);
    memset(p, 0x5a, 48);
    mesh_free(p);
    mesh_free(keep);
}

/* The span empties and is kept for its class's next refill (global_heap.c): the page map
 * still names it, and the second free finds the slot's bit clear in a record not FREE. */
static void double_free_into_kept_span(void)
{
    void *p = mesh_malloc(48);
    mesh_free(p);
    mesh_thread_flush(); /* the empty span goes back to the global heap, which keeps it */
    mesh_free(p);
}

static void double_free_large(void)
{
    void *p = mesh_malloc(1 << 20);
    void *keep = mesh_malloc(1 << 20); /* keeps p's pages from merging away */
    mesh_free(p);
    mesh_free(p);
    mesh_free(keep);
}

static void interior_free_small(void)
{
    char *p = mesh_malloc(64);
    mesh_free(p + 8);
}

static void interior_free_large(void)
{
    char *p = mesh_malloc(100000);
    mesh_free(p + 4096);
}

static void foreign_free(void)
{
    static char not_heap[64];
    mesh_free(not_heap + 16);
}

static void foreign_realloc(void)
{
    static char not_heap[64];
    mesh_realloc(not_heap, 100);
}

static void unused_arena_page(void)
{
    char *p = mesh_malloc(64);
    mesh_free(p + (64u << 20)); /* inside the arena, in no span */
}

START_TEST(double_free_is_caught) { expect_abort(double_free_local, "free(): double free"); }
END_TEST
START_TEST(remote_double_free_is_caught)
{
    expect_abort(double_free_detached, "free(): double free");
    expect_abort(double_free_after_foreign_release, "free(): double free");
}
END_TEST
START_TEST(owned_span_double_free_is_caught)
{
    expect_abort(double_free_owned, "free(): double free");
    expect_abort(double_free_owned_after_remote, "free(): double free");
    expect_abort(double_free_owned_after_release, "free(): double free");
}
END_TEST
START_TEST(foreign_stack_double_free_is_caught)
{
    static const unsigned positions[] = {0, 1, 19, 38, 39};
    for (unsigned i = 0; i < sizeof positions / sizeof positions[0]; i++) {
        foreign_pos = positions[i];
        expect_abort(double_free_in_foreign_stack, "free(): double free");
    }
    expect_abort(double_free_after_write, "free(): double free");
}
END_TEST
START_TEST(kept_span_double_free_is_caught) { expect_abort(double_free_into_kept_span, "free(): double free"); }
END_TEST
START_TEST(large_double_free_is_caught) { expect_abort(double_free_large, "free(): "); }
END_TEST
START_TEST(interior_pointers_are_caught)
{
    expect_abort(interior_free_small, "free(): invalid pointer");
    expect_abort(interior_free_large, "free(): invalid pointer");
}
END_TEST
START_TEST(foreign_pointers_are_caught)
{
    expect_abort(foreign_free, "free(): invalid pointer");
    expect_abort(foreign_realloc, "realloc(): invalid pointer");
    expect_abort(unused_arena_page, "free(): invalid pointer");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("death");
    add_case(s, double_free_is_caught, NULL);
    add_case(s, remote_double_free_is_caught, NULL);
    add_case(s, owned_span_double_free_is_caught, NULL);
    add_case(s, foreign_stack_double_free_is_caught, NULL);
    add_case(s, kept_span_double_free_is_caught, NULL);
    add_case(s, large_double_free_is_caught, NULL);
    add_case(s, interior_pointers_are_caught, NULL);
    add_case(s, foreign_pointers_are_caught, NULL);
    return run_suite(s);
}
