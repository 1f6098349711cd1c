// Minimise f(x) = ½ Σ aᵢ (xᵢ − cᵢ)² with fastoptim's Adam kernel from C++, no Python involved:
// fold the step's constants once, then apply the rule to the whole array.
#include <fastoptim/fastoptim.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
    const std::size_t n = 1000;
    std::vector<float> x(n, 0.0f), grad(n), exp_avg(n, 0.0f), exp_avg_sq(n, 0.0f), a(n), c(n);
    for (std::size_t i = 0; i < n; ++i) {
        a[i] = 0.5f + 1.5f * float(i) / float(n);
        c[i] = std::sin(float(i));
    }
    fastoptim::Adam::Hyper hyper;  // torch.optim.Adam's defaults; set what differs by name
    hyper.lr = 0.05;
    fastoptim::ArrayRef<float> arrays;
    arrays.param = x.data();
    arrays.grad = grad.data();
    arrays.state[0] = exp_avg.data();
    arrays.state[1] = exp_avg_sq.data();
    arrays.size = fastoptim::index_t(n);

    for (std::int64_t step = 1; step <= 2000; ++step) {
        for (std::size_t i = 0; i < n; ++i) grad[i] = a[i] * (x[i] - c[i]);
        hyper.lr *= 0.998;  // a simple decay, so Adam settles
        const fastoptim::Clock clock{step, step == 1};
        fastoptim::apply<fastoptim::Adam>(fastoptim::Adam::fold<float>(hyper, clock), arrays);
    }
    double worst = 0.0;
    for (std::size_t i = 0; i < n; ++i) worst = std::fmax(worst, std::fabs(double(x[i]) - double(c[i])));
    std::printf("max |x - c| after 2000 Adam steps: %.2e\n", worst);
    return worst < 1e-2 ? 0 : 1;
}
