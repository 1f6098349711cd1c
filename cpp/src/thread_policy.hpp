// How many threads a step runs on, and what is done around its kernels for them: the one
// place where the plan meets the thread mechanisms (the backoff, thread placement and the step
// clock, each in its own file, with its constants named and explained there). A speed setting:
// the bits do not depend on it.
#pragma once

#include <cstdint>

#include "fastoptim/parallel.hpp"
#include "thread_backoff.hpp"

namespace fastoptim {

class ThreadPolicy {
public:
    struct Decision {
        int requested;  // the threads fastoptim is set to use
        int threads;    // the threads this step runs on
        bool cold;      // the caller did other work since the last step ended
    };

    // Before a step, with the GIL held.
    Decision decide();
    // Just before the kernels, with the GIL released.
    void enter(const Decision& decision);
    // Just after them, still without the GIL: what the step's update did and how long it took.
    void leave(const Decision& decision, const PieceCounts& counts, double seconds);

    int last_threads() const { return last_threads_; }          // threads the last update ran on
    std::int64_t steps_alone() const { return steps_alone_; }   // steps the backoff kept to one thread

private:
    ThreadBackoff backoff_;
    int last_threads_ = 0;
    std::int64_t steps_alone_ = 0;
};

}  // namespace fastoptim
