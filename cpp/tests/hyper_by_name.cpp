// A rule's hyper-parameters are set by name and start from its schema's defaults. Built and
// run as a test; built again with one of the macros below, each of which must not compile.
#include <cstdio>
#include <string_view>

#include "fastoptim/rules.hpp"

int main() {
    fastoptim::Adam::Hyper hyper;
    hyper.lr = 0.05;
#if defined(FASTOPTIM_MISSPELLED_NAME)
    hyper.learning_rate = 0.05;  // no such member
#elif defined(FASTOPTIM_POSITIONAL_ROW)
    fastoptim::Adam::Hyper row{0.05, 0.9, 0.999, 1e-8, 0.0, 0, 0, 0};  // not an aggregate
    (void)row;
#endif
    // Every other field holds its schema default.
    for (const fastoptim::Field& field : fastoptim::Adam::fields) {
        const double value = reinterpret_cast<const double*>(&hyper)[field.index];
        const double expected = std::string_view(field.name) == "lr" ? 0.05 : field.default_value;
        if (value != expected) {
            std::printf("%s is %g, expected %g\n", field.name, value, expected);
            return 1;
        }
    }
    std::printf("Adam::Hyper set by name: lr %g, beta2 %g\n", hyper.lr, hyper.beta2);
    return 0;
}
