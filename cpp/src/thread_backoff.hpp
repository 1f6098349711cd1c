// When a step's other threads do not share its work, the next steps run on the calling thread.
//
// In a training loop the forward and backward passes run between two steps, and by the next
// step the OpenMP threads have gone to sleep. Woken, a thread may arrive tens of microseconds
// late (a VM's idle virtual CPU), or be placed on the calling thread's own core and run the
// step there while the caller waits: the step then costs more than on one thread. So when two
// "cold" steps in a row (no step ended in the last kWarmSeconds: the caller did other work
// first) had one thread take more than 4/5 of the pieces, the next cold steps run on the
// calling thread alone: 4 of them, then one tries the threads again; each try that fails
// doubles the run, up to 64, and a cold step the threads share starts it all over. Warm steps,
// back to back, always get every thread, and keep them awake for the next. The bits do not
// depend on it: every thread count gives the same.
#pragma once

#include "fastoptim/parallel.hpp"

namespace fastoptim {

inline constexpr double kWarmSeconds = 50e-6;

class ThreadBackoff {
public:
    static constexpr int kFirstRun = 4, kLongestRun = 64;

    // Threads for the next step: `requested`, or 1 while a run of lone cold steps lasts.
    int threads_for_step(int requested, bool cold);
    // What the step that threads_for_step() planned did.
    void record(bool cold, const PieceCounts& counts);

private:
    int alone_left_ = 0;
    int next_run_ = kFirstRun;
    int unshared_in_row_ = 0;  // cold steps; one late thread may be chance, two are a pattern
};

// The process-wide clock of the steps (one OpenMP pool serves every optimizer).
void note_step_end();
bool step_is_cold();

}  // namespace fastoptim
