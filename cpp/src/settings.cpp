#include "fastoptim/runtime/settings.hpp"

#include <atomic>
#include <stdexcept>

#include "fastoptim/runtime/cache.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define FASTOPTIM_HAS_FORK 1
#endif

namespace fastoptim {
namespace {

std::atomic<const Target*>& target_slot() {
    static std::atomic<const Target*> slot{&initial_target()};
    return slot;
}

int default_threads() {
#if defined(_OPENMP)
    return omp_get_max_threads();  // honours OMP_NUM_THREADS
#else
    return 1;
#endif
}

std::atomic<int> threads{default_threads()};

std::atomic<std::int64_t> prefetch_bytes{default_prefetch_above()};

// GNU OpenMP's thread pool does not survive fork(): a child whose parent already ran a
// parallel region hangs in its first one. A forked child therefore steps on one thread.
std::atomic<bool> forked_child{false};

#if defined(FASTOPTIM_HAS_FORK)
void on_fork_child() { forked_child.store(true); }
const bool fork_handler_installed = pthread_atfork(nullptr, nullptr, &on_fork_child) == 0;
#endif

}  // namespace

const Target& current_target() { return *target_slot().load(std::memory_order_relaxed); }

void set_target(const std::string& name) {
    for (const Target& t : built_targets()) {
        if (name != t.name) continue;
        if (!t.supported) throw std::invalid_argument("target '" + name + "' is not supported by this CPU");
        target_slot().store(&t);
        return;
    }
    throw std::invalid_argument("unknown target '" + name + "'");
}

int num_threads() { return forked_child.load(std::memory_order_relaxed) ? 1 : threads.load(std::memory_order_relaxed); }

void set_num_threads(int n) {
    if (n < 1) throw std::invalid_argument("num_threads must be >= 1, got " + std::to_string(n));
    threads.store(n);
}

std::int64_t prefetch_above() { return prefetch_bytes.load(std::memory_order_relaxed); }

void set_prefetch_above(std::int64_t nbytes) {
    if (nbytes < 0) throw std::invalid_argument("nbytes must be >= 0, got " + std::to_string(nbytes));
    prefetch_bytes.store(nbytes);
}

bool has_openmp() {
#if defined(_OPENMP)
    return true;
#else
    return false;
#endif
}

}  // namespace fastoptim
