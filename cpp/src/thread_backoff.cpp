#include "thread_backoff.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>

namespace fastoptim {
namespace {

using Clock = std::chrono::steady_clock;

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

std::atomic<std::int64_t> last_step_end_ns{0};  // 0: none yet, so the first step is cold

}  // namespace

int ThreadBackoff::threads_for_step(int requested, bool cold) {
    if (requested <= 1 || !cold || alone_left_ == 0) return requested;
    --alone_left_;
    return 1;
}

void ThreadBackoff::record(bool cold, const PieceCounts& counts) {
    if (!cold || !counts.parallel) return;  // warm steps say nothing of waking threads
    if (5 * counts.busiest <= 4 * counts.pieces) {
        unshared_in_row_ = 0;
        next_run_ = kFirstRun;
    } else if (++unshared_in_row_ >= 2) {
        alone_left_ = next_run_;
        next_run_ = std::min(2 * next_run_, kLongestRun);
    }
}

void note_step_end() { last_step_end_ns.store(now_ns(), std::memory_order_relaxed); }

bool step_is_cold() {
    const std::int64_t last = last_step_end_ns.load(std::memory_order_relaxed);
    return last == 0 || double(now_ns() - last) * 1e-9 > kWarmSeconds;
}

}  // namespace fastoptim
