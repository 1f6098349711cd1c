// Every update rule. Adding one: its header under rules/, and one line in the list below.
#pragma once

#include "rules/adam.hpp"
#include "rules/sgd.hpp"

// X(Type) for each rule; the extension builds its dispatch table from this list.
#define FASTOPTIM_FOR_EACH_RULE(X) \
    X(Sgd)                         \
    X(Adam)
