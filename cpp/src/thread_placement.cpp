#include "thread_placement.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#if defined(__linux__) && defined(_OPENMP)
#include <omp.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>
#define FASTOPTIM_PLACES_THREADS 1
#endif

namespace fastoptim {
namespace {

bool is_set(const char* name) {
    const char* value = std::getenv(name);
    return value != nullptr && *value != '\0';
}

// The user, or a launcher, already says where OpenMP's threads run.
bool user_places_threads() {
    const char* bind = std::getenv("OMP_PROC_BIND");
    if (bind != nullptr && *bind != '\0' && std::strcmp(bind, "false") != 0 && std::strcmp(bind, "FALSE") != 0)
        return true;
    return is_set("OMP_PLACES") || is_set("GOMP_CPU_AFFINITY") || is_set("KMP_AFFINITY");
}

bool supported() {
#if defined(FASTOPTIM_PLACES_THREADS)
    static const bool ours = !user_places_threads();
    return ours;
#else
    return false;
#endif
}

bool on_by_default() {
    const char* value = std::getenv("FASTOPTIM_THREAD_PLACEMENT");
    return supported() && !(value != nullptr && std::strcmp(value, "0") == 0);
}

std::atomic<bool> enabled{on_by_default()};

#if defined(FASTOPTIM_PLACES_THREADS)
// Each calling thread has its own OpenMP pool, so its own workers.
struct Caller {
    std::vector<pid_t> workers;  // team members 1.. of the last team size collected
    int threads = 0;             // the thread count they were collected for; 0: collect again
    int excluded_cpu = -1;       // -1: the workers have every CPU the caller may use
    long placements = 0;
};

Caller& caller() {
    thread_local Caller state;
    return state;
}

// GNU OpenMP and LLVM's runtime keep a pool per calling thread and give team member i the
// same pool thread in every region of one size, so their ids hold from step to step.
void collect(Caller& c, int threads) {
    std::vector<pid_t> ids(std::size_t(threads), 0);
    int team = 1;
#pragma omp parallel num_threads(threads)
    {
        ids[std::size_t(omp_get_thread_num())] = pid_t(syscall(SYS_gettid));
        if (omp_get_thread_num() == 0) team = omp_get_num_threads();
    }
    c.workers.assign(ids.begin() + 1, ids.begin() + team);
    c.threads = threads;
    c.excluded_cpu = -1;
}

// Sets every worker's CPUs to `mask`. A worker that is no longer a thread of this process (its
// pool was shut down) has the workers collected again at the next step; a mask the system
// refuses (a cpuset that changed) is not tried again until the caller moves.
void set_affinity(Caller& c, const cpu_set_t& mask) {
    const pid_t process = getpid();
    for (pid_t id : c.workers) {
        if (syscall(SYS_tgkill, process, id, 0) != 0) {
            c.threads = 0;
            return;
        }
        if (sched_setaffinity(id, sizeof mask, &mask) != 0) return;
    }
}

void give_back_every_cpu(Caller& c) {
    cpu_set_t mask;
    CPU_ZERO(&mask);
    if (sched_getaffinity(0, sizeof mask, &mask) == 0) set_affinity(c, mask);
    c.excluded_cpu = -1;
}
#endif

}  // namespace

bool thread_placement_supported() { return supported(); }

bool thread_placement() { return enabled.load(std::memory_order_relaxed); }

void set_thread_placement(bool on) {
    if (on && !supported())
        throw std::invalid_argument(
            "thread placement needs Linux and OpenMP, and is left to the user under OMP_PROC_BIND, "
            "OMP_PLACES, GOMP_CPU_AFFINITY or KMP_AFFINITY");
    enabled.store(on);
}

void place_workers(int threads) {
#if defined(FASTOPTIM_PLACES_THREADS)
    Caller& c = caller();
    if (!enabled.load(std::memory_order_relaxed)) {
        if (c.excluded_cpu >= 0) give_back_every_cpu(c);
        return;
    }
    if (threads < 2 || omp_in_parallel()) return;
    if (c.threads != threads) collect(c, threads);
    const int cpu = sched_getcpu();
    if (cpu < 0 || cpu == c.excluded_cpu) return;
    cpu_set_t mask;
    CPU_ZERO(&mask);
    if (sched_getaffinity(0, sizeof mask, &mask) != 0) return;
    CPU_CLR(cpu, &mask);
    if (CPU_COUNT(&mask) == 0) return;  // the caller may use one CPU: nowhere else to go
    set_affinity(c, mask);
    c.excluded_cpu = cpu;
    ++c.placements;
#else
    (void)threads;
#endif
}

PlacedWorkers placed_workers() {
    PlacedWorkers placed;
#if defined(FASTOPTIM_PLACES_THREADS)
    const Caller& c = caller();
    placed.excluded_cpu = c.excluded_cpu;
    placed.threads.assign(c.workers.begin(), c.workers.end());
    placed.placements = c.placements;
#endif
    return placed;
}

}  // namespace fastoptim
