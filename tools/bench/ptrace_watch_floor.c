/*
 * The ptrace floor of tools/bench/watch.py: the least any ptrace write watch does per
 * write, with nothing else (no protocol, no records kept, no symbolization). Not a tool.
 *
 *   ptrace_watch_floor PID WATCHED_ADDRESS PHASE_DONE_ADDRESS
 *
 * It seizes every thread of PID (and, through PTRACE_O_TRACECLONE, every thread created
 * later) and sets on each, with PTRACE_POKEUSER:
 *   DR0 = WATCHED_ADDRESS, a write watch of 8 bytes (the watch measured);
 *   DR1 = PHASE_DONE_ADDRESS, an execute breakpoint (the end of the timed rounds: the
 *         target calls phase_done() after it stopped its clock, so this costs the
 *         figure nothing).
 * Then it prints "ready" and, per write of the watched bytes, does only what any ptrace
 * write watch must: waitpid, PEEKUSER + POKEUSER of DR6 (which slot fired; cleared so the
 * next trap says only its own), PTRACE_GETREGS, one process_vm_readv of the new value
 * and 1 KiB of stack (plus the 128-byte red zone), PTRACE_CONT. Once a thread reaches
 * phase_done it clears DR7 on every thread, detaches them all, prints "writes N" and
 * exits 0. Any failure: a line on stderr and exit 1 (after clearing what it can).
 *
 * Built by watch.py with gcc -O2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <dirent.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>

#define MAX_THREADS 1024
#define STACK_BYTES 1024
#define RED_ZONE 128

/* DR7: L0 with RW0 = 01 (write), LEN0 = 10 (8 bytes); L1 with RW1 = LEN1 = 00 (execute). */
#define DR7_WATCH ((1UL << 0) | (0x1UL << 16) | (0x2UL << 18))
#define DR7_BOTH (DR7_WATCH | (1UL << 2))

static pid_t threads[MAX_THREADS];
static int thread_count;
static unsigned long watched, phase_done;

static long debugreg_offset(int n)
{
    return (long)(offsetof(struct user, u_debugreg) + (size_t)n * sizeof(long));
}

static int poke_dr(pid_t tid, int n, unsigned long value)
{
    return (int)ptrace(PTRACE_POKEUSER, tid, (void *)debugreg_offset(n), (void *)value);
}

static void add_thread(pid_t tid)
{
    if (thread_count == MAX_THREADS) {
        fprintf(stderr, "ptrace_watch_floor: more than %d threads\n", MAX_THREADS);
        exit(1);
    }
    threads[thread_count++] = tid;
}

static void forget_thread(pid_t tid)
{
    for (int i = 0; i < thread_count; i++) {
        if (threads[i] == tid) {
            threads[i] = threads[--thread_count];
            return;
        }
    }
}

/* Sets both slots on a thread in a ptrace stop. */
static int arm(pid_t tid)
{
    if (poke_dr(tid, 0, watched) != 0 || poke_dr(tid, 1, phase_done) != 0 || poke_dr(tid, 7, DR7_BOTH) != 0) {
        fprintf(stderr, "ptrace_watch_floor: arming thread %d: %s\n", tid, strerror(errno));
        return -1;
    }
    return 0;
}

/* Waits for `tid`'s next stop; a signal other than our interrupt's is re-sent after the
 * detach (returned in *signal). */
static int wait_stop(pid_t tid, int *signal)
{
    int status;
    *signal = 0;
    if (waitpid(tid, &status, __WALL) != tid) {
        return -1;
    }
    if (!WIFSTOPPED(status)) {
        return -1; /* exited */
    }
    if ((status >> 16) == 0 && WSTOPSIG(status) != SIGTRAP) {
        *signal = WSTOPSIG(status);
    }
    return 0;
}

/* Clears DR7 on every thread and detaches them; `stopped` is in a stop already. */
static void clear_and_detach(pid_t stopped)
{
    for (int i = 0; i < thread_count; i++) {
        pid_t tid = threads[i];
        int signal = 0;
        if (tid != stopped) {
            if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) != 0 || wait_stop(tid, &signal) != 0) {
                continue; /* gone */
            }
        }
        poke_dr(tid, 7, 0);
        ptrace(PTRACE_DETACH, tid, 0, (void *)(long)signal);
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: ptrace_watch_floor PID WATCHED_ADDRESS PHASE_DONE_ADDRESS\n");
        return 2;
    }
    pid_t pid = (pid_t)strtol(argv[1], NULL, 0);
    watched = strtoul(argv[2], NULL, 0);
    phase_done = strtoul(argv[3], NULL, 0);

    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *tasks = opendir(path);
    if (tasks == NULL) {
        fprintf(stderr, "ptrace_watch_floor: %s: %s\n", path, strerror(errno));
        return 1;
    }
    struct dirent *entry;
    while ((entry = readdir(tasks)) != NULL) {
        if (entry->d_name[0] == '.') {
            continue;
        }
        pid_t tid = (pid_t)atoi(entry->d_name);
        if (ptrace(PTRACE_SEIZE, tid, 0, (void *)(long)PTRACE_O_TRACECLONE) != 0) {
            fprintf(stderr, "ptrace_watch_floor: seizing %d: %s\n", tid, strerror(errno));
            return 1;
        }
        add_thread(tid);
        int signal;
        if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) != 0 || wait_stop(tid, &signal) != 0 || arm(tid) != 0) {
            clear_and_detach(-1);
            return 1;
        }
        ptrace(PTRACE_CONT, tid, 0, (void *)(long)signal);
    }
    closedir(tasks);
    printf("ready\n");
    fflush(stdout);

    unsigned long writes = 0;
    char value[8];
    static char stack[STACK_BYTES + RED_ZONE];
    for (;;) {
        int status;
        pid_t tid = waitpid(-1, &status, __WALL);
        if (tid < 0) {
            if (errno == EINTR) {
                continue;
            }
            fprintf(stderr, "ptrace_watch_floor: waitpid: %s\n", strerror(errno));
            return 1;
        }
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            forget_thread(tid);
            if (thread_count == 0) {
                fprintf(stderr, "ptrace_watch_floor: the target ended\n");
                return 1;
            }
            continue;
        }
        if (!WIFSTOPPED(status)) {
            continue;
        }
        int event = status >> 16;
        int signal = WSTOPSIG(status);
        if (event == PTRACE_EVENT_CLONE) {
            unsigned long child = 0;
            ptrace(PTRACE_GETEVENTMSG, tid, 0, &child);
            /* The new thread starts in a stop of its own (reported later, or already). */
            int child_signal;
            add_thread((pid_t)child);
            if (wait_stop((pid_t)child, &child_signal) != 0 || arm((pid_t)child) != 0) {
                clear_and_detach(tid);
                return 1;
            }
            ptrace(PTRACE_CONT, (pid_t)child, 0, (void *)(long)child_signal);
            ptrace(PTRACE_CONT, tid, 0, 0);
            continue;
        }
        if (event != 0) {
            /* A group stop or our own interrupt's stop: nothing to deliver. */
            ptrace(PTRACE_CONT, tid, 0, 0);
            continue;
        }
        if (signal != SIGTRAP) {
            ptrace(PTRACE_CONT, tid, 0, (void *)(long)signal);
            continue;
        }
        errno = 0;
        unsigned long dr6 = (unsigned long)ptrace(PTRACE_PEEKUSER, tid, (void *)debugreg_offset(6), 0);
        if (errno != 0 || (dr6 & 3) == 0) {
            /* Not ours: deliver it. */
            ptrace(PTRACE_CONT, tid, 0, (void *)(long)signal);
            continue;
        }
        poke_dr(tid, 6, 0);
        if (dr6 & 2) {
            /* phase_done: the timed rounds are over. */
            clear_and_detach(tid);
            printf("writes %lu\n", writes);
            return 0;
        }
        struct user_regs_struct regs;
        if (ptrace(PTRACE_GETREGS, tid, 0, &regs) != 0) {
            fprintf(stderr, "ptrace_watch_floor: GETREGS %d: %s\n", tid, strerror(errno));
            clear_and_detach(tid);
            return 1;
        }
        struct iovec local[2] = {{value, sizeof value}, {stack, sizeof stack}};
        struct iovec remote[2] = {{(void *)watched, sizeof value}, {(void *)(regs.rsp - RED_ZONE), sizeof stack}};
        if (process_vm_readv(tid, local, 2, remote, 2, 0) < 0) {
            fprintf(stderr, "ptrace_watch_floor: process_vm_readv %d: %s\n", tid, strerror(errno));
            clear_and_detach(tid);
            return 1;
        }
        writes++;
        ptrace(PTRACE_CONT, tid, 0, 0);
    }
}
