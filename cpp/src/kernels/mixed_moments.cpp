// ADOPT, Adan and AdEMAMix, Adam's descendants that mix their moments otherwise: their steps
// for one target (see rule_steps.hpp).
#include "fastoptim/parallel.hpp"
#include "fastoptim/rules/adopt.hpp"
#include "fastoptim/rules/adan.hpp"
#include "fastoptim/rules/ademamix.hpp"
#include "rule_steps.hpp"

namespace fastoptim {

FASTOPTIM_DEFINE_RULE_STEP(Adopt)
FASTOPTIM_DEFINE_RULE_STEP(Adan)
FASTOPTIM_DEFINE_RULE_STEP(Ademamix)
FASTOPTIM_DEFINE_RULE_STEP(AdemamixCautious)

}  // namespace fastoptim
