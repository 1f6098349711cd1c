#include "thread_policy.hpp"

#include "fastoptim/runtime/settings.hpp"
#include "thread_placement.hpp"

namespace fastoptim {

ThreadPolicy::Decision ThreadPolicy::decide() {
    const bool cold = step_is_cold();
    const int requested = num_threads();
    const int threads = thread_backoff() ? backoff_.threads_for_step(requested, cold) : requested;
    steps_alone_ += threads < requested;
    return {requested, threads, cold};
}

void ThreadPolicy::enter(const Decision& decision) { place_workers(decision.threads); }

void ThreadPolicy::leave(const Decision& decision, const PieceCounts& counts, double seconds) {
    note_step_end();
    if (thread_backoff()) backoff_.record(decision.cold, counts, seconds);
    last_threads_ = counts.parallel ? decision.threads : 1;
}

}  // namespace fastoptim
