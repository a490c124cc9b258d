// Speed testbench of N independent PEs (bench/bench_pe.py): each PE gets its own stream of
// random tagged groups at full throughput (the next pair exactly cycles_per_group after the last,
// as in the array), payloads held between loads, `last` on about one group pair in four.
// Prints cycles, CPU and wall seconds, and a hash of every (cycle, PE, result) so that two RTL
// variants can be compared bit for bit and cycle for cycle on the same stimulus.
// Usage: Vpe_n CYCLES [SEED]
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>

#include "Vpe_n.h"
#include "verilated.h"

#ifndef NPE
#error "NPE must be defined"
#endif

static uint64_t rng_state;
static inline uint64_t next_rand() {  // xorshift64*
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

// One operand: 146 bits in 5 words of a 160-bit slot (bits 0..143 the word, 144 the tag, 145 last).
static void random_operand(uint32_t *w, int tag, int last) {
    for (int i = 0; i < 5; ++i) w[i] = (uint32_t)next_rand();
    w[4] &= 0xFFFF;  // bits 128..143 of the word
    w[4] |= (uint32_t)tag << 16;
    w[4] |= (uint32_t)last << 17;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s CYCLES [SEED]\n", argv[0]);
        return 2;
    }
    const long cycles = atol(argv[1]);
    rng_state = argc > 2 ? strtoull(argv[2], nullptr, 0) : 0x9E3779B97F4A7C15ULL;
    if (rng_state == 0) rng_state = 1;
    auto ctx = std::make_unique<VerilatedContext>();
    auto top = std::make_unique<Vpe_n>(ctx.get());
    int wait[NPE] = {0};
    uint64_t hash = 1469598103934665603ULL, results = 0;
    top->clear = 0;
    top->rst = 1;
    for (int c = 0; c < 2; ++c) {
        top->clk = 0; top->eval(); top->clk = 1; top->eval();
    }
    top->rst = 0;
    auto w0 = std::chrono::steady_clock::now();
    std::clock_t c0 = std::clock();
    for (long cyc = 0; cyc < cycles; ++cyc) {
        uint32_t valid = 0;
        for (int p = 0; p < NPE; ++p) {
            if (wait[p] == 0) {
                uint64_t r = next_rand();
                int ta = r & 1, tb = (r >> 1) & 1, last = ((r >> 2) & 3) == 0;
                random_operand(&top->a_i[p * 5], ta, last);
                random_operand(&top->b_i[p * 5], tb, 0);
                wait[p] = ta && tb ? 16 : (ta || tb ? 8 : 4);
                valid |= 1u << p;
            }
            --wait[p];
        }
        top->valid_i = valid;
        top->clk = 0;
        top->eval();
        top->clk = 1;
        top->eval();
        uint32_t rv = top->result_valid;
        if (rv) {
            for (int p = 0; p < NPE; ++p) {
                if (rv >> p & 1) {
                    uint64_t x = ((uint64_t)cyc << 40) ^ ((uint64_t)p << 32) ^ top->result[p];
                    hash = (hash ^ x) * 1099511628211ULL;
                    ++results;
                }
            }
        }
    }
    double cpu = (double)(std::clock() - c0) / CLOCKS_PER_SEC;
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
    top->final();
    printf("PEBENCH npe=%d cycles=%ld cpu_s=%.4f wall_s=%.4f results=%llu hash=%016llx\n", NPE,
           cycles, cpu, wall, (unsigned long long)results, (unsigned long long)hash);
    return 0;
}
