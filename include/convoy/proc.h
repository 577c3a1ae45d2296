/*
 * proc — child processes for the demo, the load generator and the system
 * tests: start one with its stderr in a log file, signal it, wait for it
 * with a time limit. Only processes started here are ever signalled. And
 * the daemon's own descriptor limit.
 */
#ifndef CONVOY_PROC_H
#define CONVOY_PROC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Starts argv[0] (a path) with argv; stdout and stderr go to log_path
 * (appended; NULL keeps the parent's). Returns the pid or -errno. */
pid_t proc_spawn(char *const argv[], const char *log_path);

/*
 * Waits up to timeout_ms for pid to exit. Returns 0 with *status set
 * (the waitpid status), -ETIMEDOUT if it still runs, or -errno.
 */
int proc_wait(pid_t pid, uint32_t timeout_ms, int *status);

/* SIGTERM, then SIGKILL after grace_ms; reaps it. Returns the waitpid
 * status, or -errno. */
int proc_stop(pid_t pid, uint32_t grace_ms);

/* Raises this process's RLIMIT_NOFILE soft limit to its hard limit, so a
 * daemon takes as many connections as its operator allows. Returns the
 * limit now in force, or -errno. */
long proc_raise_nofile(void);

/* Buffers under 32 MiB freed by this process stay in its heap for the
 * next ones, up to keep bytes free: a big buffer handed back to the
 * kernel and taken again costs a page fault and a zeroed page per 4 KiB
 * touched (5-7 % of a compute server's CPU with half-MiB matrices). For daemons whose big buffers
 * come and go; 0, or -EINVAL when malloc refuses. */
int proc_keep_freed(size_t keep);
/* The path of the running executable (for spawning convoy itself). */
const char *proc_self_exe(void);

/* A TCP port on 127.0.0.1 free at the time of the call (bind to port 0). */
int proc_free_port(void);

#endif
