// Every update rule. Adding one: its header under rules/, and one line in the list below.
#pragma once

#include "rules/adabound.hpp"
#include "rules/adadelta.hpp"
#include "rules/adagrad.hpp"
#include "rules/adam.hpp"
#include "rules/adamax.hpp"
#include "rules/lamb.hpp"
#include "rules/lars.hpp"
#include "rules/lion.hpp"
#include "rules/lookahead.hpp"
#include "rules/nadam.hpp"
#include "rules/radam.hpp"
#include "rules/rmsprop.hpp"
#include "rules/rprop.hpp"
#include "rules/sgd.hpp"

// X(Type) for each rule; the extension builds its dispatch table from this list.
#define FASTOPTIM_FOR_EACH_RULE(X) \
    X(Sgd)                         \
    X(Adam)                        \
    X(Adagrad)                     \
    X(Adadelta)                    \
    X(Rmsprop)                     \
    X(Rprop)                       \
    X(Adamax)                      \
    X(Nadam)                       \
    X(Radam)                       \
    X(Adabound)                    \
    X(Lamb)                        \
    X(Lars)                        \
    X(Lion)                        \
    X(LookaheadSync)
