// Keeps the OpenMP worker threads off the CPU of the thread that calls a step.
//
// Between two steps of a training loop the forward and backward passes run, and the OpenMP
// workers go to sleep. Linux often wakes a sleeping thread on the CPU of the thread that wakes
// it, here the step's caller, which is busy with its own share: the worker then waits there
// for a CPU of its own, and the step gains nothing from it (bench/training_loop.py: 2 threads
// ran at one thread's speed after other work, before this). So before a step on several
// threads, the workers may run on the CPUs the caller may use, less the one it runs on; woken,
// a worker starts at once on another CPU. Their affinity is set again only when the caller
// moves. Under the user's own placement (OMP_PROC_BIND, OMP_PLACES, GOMP_CPU_AFFINITY,
// KMP_AFFINITY) or with one CPU to use it does nothing. Linux only. A speed setting: the bits
// do not depend on it.
#pragma once

#include <vector>

namespace fastoptim {

struct PlacedWorkers {
    int excluded_cpu = -1;      // the caller's CPU when the workers were last placed; -1 if none
    std::vector<long> threads;  // the workers' kernel thread ids
    long placements = 0;        // times the calling thread has placed its workers
};

// Whether this build and system can place threads (Linux with OpenMP), and whether the
// environment leaves placement to us.
bool thread_placement_supported();
bool thread_placement();       // on by default where supported; FASTOPTIM_THREAD_PLACEMENT=0 turns it off
void set_thread_placement(bool on);

// Before a step on `threads` threads from the calling thread. When placement has been turned
// off, the first call gives this caller's workers back every CPU the caller may use.
void place_workers(int threads);

// What place_workers last did for the calling thread's workers (tests).
PlacedWorkers placed_workers();

}  // namespace fastoptim
