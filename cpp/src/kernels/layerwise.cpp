// LAMB and LARS, which scale each array by a ratio of norms: their steps for one target (see rule_steps.hpp).
#include "fastoptim/parallel.hpp"
#include "fastoptim/rules/lamb.hpp"
#include "fastoptim/rules/lars.hpp"
#include "rule_steps.hpp"

namespace fastoptim {

FASTOPTIM_DEFINE_RULE_STEP(Lamb)
FASTOPTIM_DEFINE_RULE_STEP(Lars)

}  // namespace fastoptim
