// The rules by name, without their headers: what a dispatch table needs. Adding a rule: one
// line here, its header under rules/ (listed in rules.hpp), and its family's kernels file
// (cpp/src/kernels/).
#pragma once

// X(Type) for each rule; the runtime library builds its dispatch table from this list.
#define FASTOPTIM_FOR_EACH_RULE(X) \
    X(Sgd)                         \
    X(Sgdw)                        \
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
    X(LookaheadSync)               \
    X(Asgd)                        \
    X(Adopt)                       \
    X(Adan)                        \
    X(Ademamix)                    \
    X(ScheduleFreeAdamw)           \
    X(ScheduleFreeSgd)             \
    X(ScheduleFreeSwitch)          \
    X(AdamCautious)                \
    X(LionCautious)                \
    X(SgdCautious)                 \
    X(SgdwCautious)                \
    X(AdemamixCautious)
