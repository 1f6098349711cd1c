#include "thread_backoff.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>

namespace fastoptim {
namespace {

using Clock = std::chrono::steady_clock;

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

std::atomic<std::int64_t> last_step_end_ns{0};  // 0: none yet, so the first step is cold

}  // namespace

bool ThreadBackoff::needs_reference() const {
    if (!(shared_seconds_ > 0 && shared_seconds_ < kShortSeconds)) return false;  // long: not judged by time
    return lone_seconds_ == 0 || timed_shared_steps_ >= kReferenceEvery;
}

int ThreadBackoff::threads_for_step(int requested, bool cold) {
    if (requested <= 1 || !cold) return requested;
    if (alone_left_ > 0) {
        --alone_left_;
        return 1;
    }
    return needs_reference() ? 1 : requested;
}

void ThreadBackoff::record(bool cold, const PieceCounts& counts, double seconds) {
    if (!cold) return;  // warm steps say nothing of waking threads
    if (!counts.parallel) {
        if (seconds > 0) {
            lone_seconds_ = seconds;
            timed_shared_steps_ = 0;
        }
        return;
    }
    if (seconds > 0) {
        shared_seconds_ = seconds;
        timed_shared_steps_ = std::min(timed_shared_steps_ + 1, kReferenceEvery);
    }
    const bool unshared = 5 * counts.busiest > 4 * counts.pieces;
    const bool judged_by_time = seconds > 0 && lone_seconds_ > 0 && lone_seconds_ < kShortSeconds;
    const bool slower = judged_by_time && seconds > kThreadsMustTake * lone_seconds_;
    if (judged_by_time && seconds > kStallLoneSteps * lone_seconds_) {
        alone_left_ = kLongestRun;  // a stall: the run it starts costs less than the next one would
        return;
    }
    if (!unshared && !slower) {
        failed_in_row_ = 0;
        next_run_ = kFirstRun;
    } else if (++failed_in_row_ >= 2) {
        alone_left_ = next_run_;
        next_run_ = std::min(2 * next_run_, kLongestRun);
    }
}

namespace {
bool backoff_by_default() {
    const char* value = std::getenv("FASTOPTIM_THREAD_BACKOFF");
    return !(value != nullptr && std::strcmp(value, "0") == 0);
}
std::atomic<bool> backoff_on{backoff_by_default()};
}  // namespace

bool thread_backoff() { return backoff_on.load(std::memory_order_relaxed); }
void set_thread_backoff(bool on) { backoff_on.store(on); }

void note_step_end() { last_step_end_ns.store(now_ns(), std::memory_order_relaxed); }

bool step_is_cold() {
    const std::int64_t last = last_step_end_ns.load(std::memory_order_relaxed);
    return last == 0 || double(now_ns() - last) * 1e-9 > kWarmSeconds;
}

}  // namespace fastoptim
