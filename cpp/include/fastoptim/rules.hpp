// Every update rule, for the header-only C++ interface. The list by name is rule_list.hpp.
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
#include "rules/sgdw.hpp"

#include "rule_list.hpp"
