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
//
// Sharing the pieces is not enough when waking the threads costs more than they save: a short
// step, or a worker that shares its CPU with another program's busy thread. So when steps are
// timed and a cold step on one thread takes under kShortSeconds, a cold step on several threads
// that did not save a tenth of its time fails too (a smaller gain is not worth two busy CPUs,
// and is within noise). Longer steps are not judged by time: waking costs them little, and one
// step's time is too noisy to overrule what their pieces say. The lone step is taken as a
// reference at the second timed cold step (the first also touches new state pages) when the
// first took under kShortSeconds, and again after every kReferenceEvery such steps on several
// threads; the lone runs refresh it as well.
//
// Beside a busy program one thing costs more than all the rest: a worker woken on the busy CPU
// may wait a time slice (milliseconds) before it joins, and the step waits for it at the end of
// its parallel region. Such stalls strike a few steps in a hundred, never two in a row, so the
// rules above miss them; yet one costs more than many steps alone lose. So a timed cold step
// that took over kStallLoneSteps lone steps' time sends the next kLongestRun cold steps to the
// calling thread at once (bench/README.md, "Threads that share the machine": the demo's steps
// beside a busy process, 50 us each but 4 ms at the 99th percentile).
#pragma once

#include "fastoptim/parallel.hpp"

namespace fastoptim {

inline constexpr double kWarmSeconds = 50e-6;
inline constexpr double kShortSeconds = 200e-6;   // steps that waking threads may cost more than they save
inline constexpr double kThreadsMustTake = 0.9;  // at most this share of the lone step's time
inline constexpr double kStallLoneSteps = 8;     // a shared step this many lone steps long waited for a CPU

class ThreadBackoff {
public:
    static constexpr int kFirstRun = 4, kLongestRun = 64, kReferenceEvery = 256;

    // Threads for the next step: `requested`, or 1 while a run of lone cold steps lasts or for
    // a reference step.
    int threads_for_step(int requested, bool cold);
    // What the step that threads_for_step() planned did, and how long it took (0: not timed).
    void record(bool cold, const PieceCounts& counts, double seconds = 0);

private:
    bool needs_reference() const;

    int alone_left_ = 0;
    int next_run_ = kFirstRun;
    int failed_in_row_ = 0;        // cold steps; one late thread may be chance, two are a pattern
    double lone_seconds_ = 0;      // the latest timed cold step on one thread; 0: none yet
    double shared_seconds_ = 0;    // the latest timed cold step on several threads; 0: none yet
    int timed_shared_steps_ = 0;   // timed cold steps on several threads since the lone one (capped)
};

// Whether steps may back off to the calling thread (process-wide; FASTOPTIM_THREAD_BACKOFF=0
// turns it off at load). Off, every step runs on the threads it is set to use.
bool thread_backoff();
void set_thread_backoff(bool on);

// The process-wide clock of the steps (one OpenMP pool serves every optimizer).
void note_step_end();
bool step_is_cold();

}  // namespace fastoptim
