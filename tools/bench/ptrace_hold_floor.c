// The floor under any ptrace hit that copies (issue 10's held-time figure).
//
// Not a tool: the least a ptrace tracer must do for an int3 hit whose capture
// is a copy, timed the way liveprobe's `held_us` is (the stop seen by
// waitpid -> the thread resumed): PTRACE_GETREGS, one process_vm_readv of a
// few hundred bytes of stack, PTRACE_POKEUSER of rip (the step past the
// int3), PTRACE_CONT. Nothing is decided, allocated or recorded.
//
// It forks a child that calls `floor_site` N times; the first instruction of
// `floor_site` is a one-byte nop with the int3 on it, so stepping past it is
// only rip += 1. Prints one line of JSON: the hits and the medians (ns) of the
// whole hold and of each call, and the p99 of the hold.
//
//   gcc -O2 -o ptrace_hold_floor ptrace_hold_floor.c && ./ptrace_hold_floor 20000
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void floor_site(void);
__asm__(".text\n.globl floor_site\n.type floor_site,@function\nfloor_site:\n nop\n ret\n");

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int by_value(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, int n) {
    qsort(v, (size_t)n, sizeof *v, by_value);
    return v[n / 2];
}

int main(int argc, char **argv) {
    int hits = argc > 1 ? atoi(argv[1]) : 20000;
    if (hits <= 0) {
        fprintf(stderr, "usage: %s HITS\n", argv[0]);
        return 2;
    }
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        raise(SIGSTOP);
        for (int i = 0; i < hits; i++) floor_site();
        _exit(0);
    }
    int status;
    if (ptrace(PTRACE_SEIZE, child, 0, 0) != 0 || waitpid(child, &status, __WALL) != child) {
        perror("seize");
        kill(child, SIGKILL);
        return 1;
    }
    errno = 0;
    long word = ptrace(PTRACE_PEEKTEXT, child, (void *)floor_site, 0);
    long patched = (word & ~0xffL) | 0xcc;
    if (ptrace(PTRACE_POKETEXT, child, (void *)floor_site, (void *)patched) != 0 ||
        ptrace(PTRACE_CONT, child, 0, 0) != 0) {
        perror("arm");
        kill(child, SIGKILL);
        return 1;
    }
    uint64_t *hold = calloc((size_t)hits, 8), *getregs = calloc((size_t)hits, 8),
             *readv = calloc((size_t)hits, 8), *poke = calloc((size_t)hits, 8),
             *cont = calloc((size_t)hits, 8);
    char stack[512];
    int seen = 0;
    for (;;) {
        pid_t tid = waitpid(-1, &status, __WALL);
        if (tid < 0 || WIFEXITED(status) || WIFSIGNALED(status)) break;
        if (!WIFSTOPPED(status)) continue;
        if (WSTOPSIG(status) != SIGTRAP) {
            ptrace(PTRACE_CONT, tid, 0, WSTOPSIG(status));
            continue;
        }
        uint64_t t0 = now_ns();
        struct user_regs_struct regs;
        ptrace(PTRACE_GETREGS, tid, 0, &regs);
        uint64_t t1 = now_ns();
        struct iovec local = {stack, sizeof stack};
        struct iovec remote = {(void *)(regs.rsp - 128), sizeof stack};
        process_vm_readv(tid, &local, 1, &remote, 1, 0);
        uint64_t t2 = now_ns();
        ptrace(PTRACE_POKEUSER, tid, (void *)offsetof(struct user_regs_struct, rip),
               (void *)((uint64_t)floor_site + 1));
        uint64_t t3 = now_ns();
        ptrace(PTRACE_CONT, tid, 0, 0);
        uint64_t t4 = now_ns();
        if (seen < hits) {
            hold[seen] = t4 - t0;
            getregs[seen] = t1 - t0;
            readv[seen] = t2 - t1;
            poke[seen] = t3 - t2;
            cont[seen] = t4 - t3;
            seen++;
        }
    }
    if (seen == 0) {
        fprintf(stderr, "no hit seen\n");
        return 1;
    }
    uint64_t hold_median = median(hold, seen);
    uint64_t hold_p99 = hold[(seen * 99) / 100];
    printf("{\"hits\": %d, \"hold_median_ns\": %llu, \"hold_p99_ns\": %llu, \"getregs_ns\": %llu, "
           "\"process_vm_readv_ns\": %llu, \"pokeuser_rip_ns\": %llu, \"cont_ns\": %llu}\n",
           seen, (unsigned long long)hold_median, (unsigned long long)hold_p99,
           (unsigned long long)median(getregs, seen), (unsigned long long)median(readv, seen),
           (unsigned long long)median(poke, seen), (unsigned long long)median(cont, seen));
    return 0;
}
