/* runner: runs one benchmark command and reports what it cost.
 *
 * usage: runner [-p PRELOAD] [-o RESULT_FILE] [-t TIMEOUT_S] [NAME=VALUE...] COMMAND [ARG...]
 *
 * LD_PRELOAD is set to PRELOAD in the child only (and removed from it when -p is
 * absent or empty), so neither the runner nor bench/run.sh ever runs on the
 * allocator under test.  NAME=VALUE words set further variables in the child,
 * as env(1) does.  After the child ends, one line of key=value fields goes to
 * RESULT_FILE (default stdout):
 *
 *   exit=0 signal=0 timeout=0 wall_s=1.234567 user_s=... sys_s=... maxrss_kib=... minflt=... majflt=...
 *
 * Wall time is CLOCK_MONOTONIC around fork..wait4; the rest is wait4's rusage
 * of the child.  A child still running after TIMEOUT_S seconds is killed.
 * Exit status: 0 if the child exited 0, 1 if it failed or timed out, 2 if the
 * runner itself could not do its job. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct options {
    const char *preload; /* NULL or "" for none */
    const char *result_path;
    unsigned timeout_s; /* 0 for none */
    char **env_and_argv;
};

static volatile sig_atomic_t child_pid;
static volatile sig_atomic_t timed_out;

static void usage_exit(void)
{
    fputs("usage: runner [-p PRELOAD] [-o RESULT_FILE] [-t TIMEOUT_S] [NAME=VALUE...] "
          "COMMAND [ARG...]\n", stderr);
    exit(2);
}

static unsigned parse_seconds(const char *s)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v > 86400)
        usage_exit();
    return (unsigned)v;
}

static struct options parse_options(int argc, char **argv)
{
    struct options o = { 0 };
    int c;
    /* '+': stop at the command, whose own options are not ours */
    while ((c = getopt(argc, argv, "+p:o:t:")) != -1) {
        switch (c) {
        case 'p': o.preload = optarg; break;
        case 'o': o.result_path = optarg; break;
        case 't': o.timeout_s = parse_seconds(optarg); break;
        default: usage_exit();
        }
    }
    if (optind >= argc)
        usage_exit();
    o.env_and_argv = argv + optind;
    return o;
}

/* In the child: set up the environment, then become the command. */
static _Noreturn void exec_child(const struct options *o)
{
    if (o->preload && *o->preload)
        setenv("LD_PRELOAD", o->preload, 1);
    else
        unsetenv("LD_PRELOAD");
    char **argv = o->env_and_argv;
    for (; *argv && strchr(*argv, '=') && **argv != '='; argv++)
        putenv(*argv);
    if (!*argv) {
        fputs("runner: no command after the NAME=VALUE words\n", stderr);
        _exit(127);
    }
    execvp(argv[0], argv);
    fprintf(stderr, "runner: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static void on_alarm(int sig)
{
    (void)sig;
    timed_out = 1;
    kill((pid_t)child_pid, SIGKILL);
}

static void arm_timeout(unsigned seconds)
{
    if (!seconds)
        return;
    struct sigaction sa = { .sa_handler = on_alarm };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    alarm(seconds);
}

static double seconds(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

static double elapsed_since(const struct timespec *start)
{
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    return (double)(end.tv_sec - start->tv_sec) + (double)(end.tv_nsec - start->tv_nsec) * 1e-9;
}

static void write_result(const char *path, int status, double wall, const struct rusage *ru)
{
    FILE *f = path ? fopen(path, "w") : stdout;
    if (!f) {
        fprintf(stderr, "runner: cannot write %s: %s\n", path, strerror(errno));
        exit(2);
    }
    fprintf(f, "exit=%d signal=%d timeout=%d wall_s=%.6f user_s=%.6f sys_s=%.6f "
               "maxrss_kib=%ld minflt=%ld majflt=%ld\n",
            WIFEXITED(status) ? WEXITSTATUS(status) : -1,
            WIFSIGNALED(status) ? WTERMSIG(status) : 0, (int)timed_out, wall,
            seconds(ru->ru_utime), seconds(ru->ru_stime), ru->ru_maxrss, ru->ru_minflt,
            ru->ru_majflt);
    if (fclose(f) != 0) {
        fprintf(stderr, "runner: cannot write %s: %s\n", path ? path : "stdout", strerror(errno));
        exit(2);
    }
}

int main(int argc, char **argv)
{
    struct options o = parse_options(argc, argv);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    pid_t pid = fork();
    if (pid < 0) {
        perror("runner: fork");
        return 2;
    }
    if (pid == 0)
        exec_child(&o);
    child_pid = pid;
    arm_timeout(o.timeout_s);

    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR) {
            perror("runner: wait4");
            return 2;
        }
    }
    double wall = elapsed_since(&start);
    write_result(o.result_path, status, wall, &ru);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 && !timed_out ? 0 : 1;
}
