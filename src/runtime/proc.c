/*
 * proc — child processes, and this process's own limits.
 *
 * Waiting with a limit polls waitpid(WNOHANG) every few milliseconds: the
 * callers (demo, tests) wait for seconds at most, and a pidfd or SIGCHLD
 * handler would reach into their signal setup for no gain.
 */
#include "convoy/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

pid_t proc_spawn(char *const argv[], const char *log_path)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc != 0)
        return -rc;
    if ((rc = posix_spawnattr_init(&attr)) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return -rc;
    }
    /* The child starts with no blocked signals, whatever the parent blocks. */
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    if (log_path) {
        rc = posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, log_path,
                                              O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (rc == 0)
            rc = posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);
    }
    pid_t pid = -1;
    if (rc == 0)
        rc = posix_spawn(&pid, argv[0], &fa, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    return rc == 0 ? pid : -rc;
}

int proc_wait(pid_t pid, uint32_t timeout_ms, int *status)
{
    struct timespec step = {0, 5 * 1000000};
    for (uint32_t waited = 0;; waited += 5) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
        if (waited >= timeout_ms)
            return -ETIMEDOUT;
        nanosleep(&step, NULL);
    }
}

int proc_stop(pid_t pid, uint32_t grace_ms)
{
    int status;
    if (kill(pid, SIGTERM) < 0 && errno != ESRCH)
        return -errno;
    int rc = proc_wait(pid, grace_ms, &status);
    if (rc == -ETIMEDOUT) {
        kill(pid, SIGKILL);
        rc = proc_wait(pid, 5000, &status);
    }
    return rc < 0 ? rc : status;
}

long proc_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -errno;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            return -errno;
    }
    return rl.rlim_cur == RLIM_INFINITY ? LONG_MAX : (long)rl.rlim_cur;
}

int proc_keep_freed(size_t keep)
{
    /* the largest threshold malloc takes on 64 bits; bigger buffers are
     * mapped and unmapped each time, as before */
    if (mallopt(M_MMAP_THRESHOLD, 32 << 20) != 1 ||
        mallopt(M_TRIM_THRESHOLD, keep > INT_MAX ? INT_MAX : (int)keep) != 1)
        return -EINVAL;
    return 0;
}

const char *proc_self_exe(void)
{
    static char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0)
        return NULL;
    path[n] = '\0';
    return path;
}

int proc_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int rc = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        rc = -errno;
    close(fd);
    return rc < 0 ? rc : ntohs(a.sin_port);
}
