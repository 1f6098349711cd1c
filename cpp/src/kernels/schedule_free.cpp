// Schedule-Free AdamW and SGD, and their switch between y and x: their steps for one target
// (see rule_steps.hpp).
#include "fastoptim/parallel.hpp"
#include "fastoptim/rules/schedule_free.hpp"
#include "rule_steps.hpp"

namespace fastoptim {

FASTOPTIM_DEFINE_RULE_STEP(ScheduleFreeAdamw)
FASTOPTIM_DEFINE_RULE_STEP(ScheduleFreeSgd)
FASTOPTIM_DEFINE_RULE_STEP(ScheduleFreeSwitch)

}  // namespace fastoptim
