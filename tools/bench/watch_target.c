/*
 * The target of tools/bench/watch.py: a loop that writes one global, `watched`, once per
 * round, N rounds whenever the driver asks, so the driver decides when a watch or a
 * debugger is in place and the target measures its own loop time.
 *
 * It prints "ready", then reads commands on stdin, one per line:
 *   run N          N rounds: a little work, then one store to `watched` (a new value
 *                  every round, so a debugger that compares old and new always reports)
 *   quit           exits (so does end of input)
 * and answers each with one line "done ELAPSED_NS CHECKSUM N". ELAPSED_NS is the
 * monotonic time of the rounds alone; CHECKSUM depends only on N, so a watched run must
 * print the same one as an unwatched run. Nothing else writes `watched`, so a watch sees
 * exactly N writes per run. After timing it calls phase_done(), where a
 * gdb driven by the benchmark stops and detaches, and then prints the answer.
 *
 * Built with gcc -g -O0: the one store to `watched` per round is the only write to it
 * (the work's locals live on the stack, never in `watched`). WORK_ROUNDS sets the cost of
 * one round.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#ifndef WORK_ROUNDS
#define WORK_ROUNDS 16
#endif

/* The watched global: 8 bytes, aligned, one debug register. */
volatile long watched = 0;

/* Where gdb runs by the benchmark stop after a timed phase, to detach. */
__attribute__((noinline)) void phase_done(long long elapsed_ns)
{
    __asm__ volatile("" : : "r"(elapsed_ns) : "memory");
}

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* N rounds of work, each ending with one write of `watched`. */
__attribute__((noinline)) static uint64_t write_rounds(long rounds)
{
    uint64_t checksum = 0;
    unsigned int mix = 2654435761u;
    for (long i = 0; i < rounds; i++) {
        for (int r = 0; r < WORK_ROUNDS; r++) {
            mix = (mix ^ (mix >> 13)) * 0x5bd1e995u + (unsigned int)r;
        }
        watched = (long)(i + 1) * 2 + (long)(mix & 1);
        checksum = checksum * 1099511628211ULL + (uint64_t)watched;
    }
    return checksum;
}

int main(void)
{
    char line[256];
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready\n");
    while (fgets(line, sizeof line, stdin) != NULL) {
        long rounds = 0;
        if (sscanf(line, "run %ld", &rounds) == 1 && rounds > 0) {
            long long started = now_ns();
            uint64_t checksum = write_rounds(rounds);
            long long elapsed = now_ns() - started;
            phase_done(elapsed);
            printf("done %lld %llu %ld\n", elapsed, (unsigned long long)checksum, rounds);
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        } else {
            printf("error: unknown command: %s", line);
        }
    }
    return 0;
}
