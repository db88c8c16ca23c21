/*
 * The target of tools/bench/locals.py: a C program stopped (blocked in read() on
 * stdin) inside handle_order, a function with three arguments and ten locals: integers,
 * a struct, two char arrays, a string, a double, and pointers to a struct that nests
 * structs two deep (order -> detail -> origin). It prints "ready" once it is about
 * to block, and exits when stdin is closed. Built with gcc -g -O0.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct point {
    int x;
    int y;
};

struct detail {
    double weight;
    struct point origin;
    const char *label;
};

struct order {
    long id;
    int quantity;
    struct detail detail;
    struct order *next;
};

static struct order second_order = {
    .id = 1002, .quantity = 1, .detail = {.weight = 2.5, .origin = {7, 8}, .label = "backorder"}, .next = NULL};

__attribute__((noinline)) static long handle_order(struct order *order, int attempt, const char *customer)
{
    int count = 3;
    long total_cents = 129900;
    struct point where = {10, -20};
    char name[16] = "alice";
    struct order *head = order;
    struct detail *detail = &order->detail;
    double ratio = 0.75;
    const char *status = "pending";
    char line[64] = {0};

    printf("ready\n");
    fflush(stdout);
    /* The benchmark reads the locals while this thread is blocked here. */
    ssize_t got = read(0, line, sizeof line - 1);

    return got + count + total_cents + where.x + name[0] + head->id + detail->origin.y + (long)ratio +
           status[0] + attempt + customer[0];
}

int main(void)
{
    struct order first_order = {
        .id = 1001, .quantity = 2, .detail = {.weight = 1.25, .origin = {3, 4}, .label = "express"},
        .next = &second_order};
    long result = handle_order(&first_order, 1, "bob");
    return (int)(result & 1);
}
