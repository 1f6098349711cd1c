// Adagrad, Adadelta, RMSprop and Rprop: their steps for one target (see rule_steps.hpp).
#include "fastoptim/parallel.hpp"
#include "fastoptim/rules/adagrad.hpp"
#include "fastoptim/rules/adadelta.hpp"
#include "fastoptim/rules/rmsprop.hpp"
#include "fastoptim/rules/rprop.hpp"
#include "rule_steps.hpp"

namespace fastoptim {

FASTOPTIM_DEFINE_RULE_STEP(Adagrad)
FASTOPTIM_DEFINE_RULE_STEP(Adadelta)
FASTOPTIM_DEFINE_RULE_STEP(Rmsprop)
FASTOPTIM_DEFINE_RULE_STEP(Rprop)

}  // namespace fastoptim
