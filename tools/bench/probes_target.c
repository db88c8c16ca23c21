/*
 * The target of tools/bench/probes.py: a hot function (probe_work, noinline, two int
 * arguments, a few locals, about 0.5 µs per call) called in a loop the driver starts
 * on demand, so that it decides when a probe or a debugger is in place.
 *
 * It prints "ready", then reads commands on stdin, one per line:
 *   run N          calls probe_work N times on this thread
 *   threads T N    starts T threads that each call probe_work N times, and joins them
 *   quit           exits (so does end of input)
 * and answers each with one line "done ELAPSED_NS CHECKSUM CALLS". ELAPSED_NS is the
 * monotonic time of the calls alone (thread start and join included for `threads`);
 * CHECKSUM depends only on the command, so a probed run must print the same one as an
 * unprobed run (a probe that changed a result would show here). After timing it calls
 * phase_done(), where a gdb driven by the benchmark stops and detaches, and then
 * prints the answer.
 *
 * Built with gcc -g -O0 (every local lives on the stack, as both gdb and liveprobe see
 * it); WORK_ROUNDS sets the cost of one call.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef WORK_ROUNDS
#define WORK_ROUNDS 128
#endif

#define MAX_THREADS 64

/* The probed function: a few locals, deterministic, no memory traffic besides its frame. */
__attribute__((noinline)) int probe_work(int a, int b)
{
    unsigned int mix = (unsigned int)a * 2654435761u;
    unsigned int other = (unsigned int)b ^ 0x9e3779b9u;
    int rounds = WORK_ROUNDS;
    int i;
    for (i = 0; i < rounds; i++) {
        mix = (mix ^ (mix >> 13)) * 0x5bd1e995u + other;
        other = other * 33u + (unsigned int)i;
    }
    int result = (int)(mix ^ other);
    return result;
}

/* Where gdb runs by the benchmark stops after a timed phase, to detach. */
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

static uint64_t run_calls(long calls, int seed)
{
    uint64_t checksum = 0;
    for (long i = 0; i < calls; i++) {
        int r = probe_work((int)(i & 0x7fffffff), seed + (int)(i % 1000));
        checksum = checksum * 1099511628211ULL + (uint32_t)r;
    }
    return checksum;
}

struct worker {
    pthread_t thread;
    long calls;
    int seed;
    uint64_t checksum;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    w->checksum = run_calls(w->calls, w->seed);
    return NULL;
}

int main(void)
{
    char line[256];
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready\n");
    while (fgets(line, sizeof line, stdin) != NULL) {
        long calls = 0;
        int threads = 0;
        uint64_t checksum = 0;
        long long started, elapsed;
        if (sscanf(line, "run %ld", &calls) == 1 && calls > 0) {
            started = now_ns();
            checksum = run_calls(calls, 0);
            elapsed = now_ns() - started;
        } else if (sscanf(line, "threads %d %ld", &threads, &calls) == 2 && threads > 0 &&
                   threads <= MAX_THREADS && calls > 0) {
            struct worker workers[MAX_THREADS];
            memset(workers, 0, sizeof workers);
            started = now_ns();
            for (int t = 0; t < threads; t++) {
                workers[t].calls = calls;
                workers[t].seed = 7919 * (t + 1);
                if (pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]) != 0) {
                    fprintf(stderr, "pthread_create failed\n");
                    return 2;
                }
            }
            for (int t = 0; t < threads; t++) {
                pthread_join(workers[t].thread, NULL);
                checksum = checksum * 31 + workers[t].checksum;
            }
            elapsed = now_ns() - started;
            calls *= threads;
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        } else {
            printf("error: unknown command: %s", line);
            continue;
        }
        phase_done(elapsed);
        printf("done %lld %llu %ld\n", elapsed, (unsigned long long)checksum, calls);
    }
    return 0;
}
