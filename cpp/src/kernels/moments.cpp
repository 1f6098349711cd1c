// Adam and its relatives: Adamax, NAdam, RAdam, AdaBound: their steps for one target (see rule_steps.hpp).
#include "fastoptim/parallel.hpp"
#include "fastoptim/rules/adam.hpp"
#include "fastoptim/rules/adamax.hpp"
#include "fastoptim/rules/nadam.hpp"
#include "fastoptim/rules/radam.hpp"
#include "fastoptim/rules/adabound.hpp"
#include "rule_steps.hpp"

namespace fastoptim {

FASTOPTIM_DEFINE_RULE_STEP(Adam)
FASTOPTIM_DEFINE_RULE_STEP(Adamax)
FASTOPTIM_DEFINE_RULE_STEP(Nadam)
FASTOPTIM_DEFINE_RULE_STEP(Radam)
FASTOPTIM_DEFINE_RULE_STEP(Adabound)
FASTOPTIM_DEFINE_RULE_STEP(AdamCautious)

}  // namespace fastoptim
