// SGD with momentum, SGDW, averaged SGD, Lion, and Lookahead's synchronisation, with the cautious
// variants of SGD, SGDW and Lion: their steps for one target (see rule_steps.hpp).
#include "fastoptim/parallel.hpp"
#include "fastoptim/rules/sgd.hpp"
#include "fastoptim/rules/sgdw.hpp"
#include "fastoptim/rules/asgd.hpp"
#include "fastoptim/rules/lion.hpp"
#include "fastoptim/rules/lookahead.hpp"
#include "rule_steps.hpp"

namespace fastoptim {

FASTOPTIM_DEFINE_RULE_STEP(Sgd)
FASTOPTIM_DEFINE_RULE_STEP(Sgdw)
FASTOPTIM_DEFINE_RULE_STEP(Asgd)
FASTOPTIM_DEFINE_RULE_STEP(Lion)
FASTOPTIM_DEFINE_RULE_STEP(LookaheadSync)
FASTOPTIM_DEFINE_RULE_STEP(LionCautious)
FASTOPTIM_DEFINE_RULE_STEP(SgdCautious)
FASTOPTIM_DEFINE_RULE_STEP(SgdwCautious)

}  // namespace fastoptim
