// SGD with momentum, SGDW, Lion, and Lookahead's synchronisation: their steps for one target (see rule_steps.hpp).
#include "fastoptim/parallel.hpp"
#include "fastoptim/rules/sgd.hpp"
#include "fastoptim/rules/sgdw.hpp"
#include "fastoptim/rules/lion.hpp"
#include "fastoptim/rules/lookahead.hpp"
#include "rule_steps.hpp"

namespace fastoptim {

FASTOPTIM_DEFINE_RULE_STEP(Sgd)
FASTOPTIM_DEFINE_RULE_STEP(Sgdw)
FASTOPTIM_DEFINE_RULE_STEP(Lion)
FASTOPTIM_DEFINE_RULE_STEP(LookaheadSync)

}  // namespace fastoptim
