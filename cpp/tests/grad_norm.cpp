// The header-only gradient norm (fastoptim/grad_norm.hpp) against a scalar reference of its
// definition (blocks of 4096, 16 lanes by element index, lanes added pairwise in double,
// blocks in order), on one and two threads; and ArrayRef::grad_mult, which a rule reads every
// gradient element through.
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "fastoptim/fastoptim.hpp"
#include "fastoptim/grad_norm.hpp"

namespace fo = fastoptim;

namespace {

double reference_sum_of_squares(const std::vector<std::vector<float>>& arrays) {
    double total = 0;
    for (const auto& a : arrays)
        for (std::size_t first = 0; first < a.size(); first += fo::kBlock) {
            float lanes[fo::kLanes] = {};
            for (std::size_t i = first; i < a.size() && i < first + fo::kBlock; ++i)
                lanes[(i - first) % fo::kLanes] += a[i] * a[i];
            double sum[fo::kLanes];
            for (int l = 0; l < fo::kLanes; ++l) sum[l] = lanes[l];
            for (int half = fo::kLanes / 2; half >= 1; half /= 2)
                for (int l = 0; l < half; ++l) sum[l] += sum[l + half];
            total += sum[0];
        }
    return total;
}

fo::GradMeasure measure(std::vector<std::vector<float>>& arrays, int threads) {
    std::vector<fo::ArrayRef<float>> refs;
    std::vector<fo::index_t> blocks{0};
    for (auto& a : arrays) {
        fo::ArrayRef<float> ref;
        ref.grad = a.data();
        ref.size = fo::index_t(a.size());
        refs.push_back(ref);
        blocks.push_back(blocks.back() + (ref.size + fo::kBlock - 1) / fo::kBlock);
    }
    std::vector<double> partials(2 * std::size_t(blocks.back()));
    const fo::GradBlocks<float> f32{refs.data(), fo::index_t(refs.size()), blocks.data(), partials.data(), 1.0f};
    return fo::measure_grads(fo::NormOptions{fo::NormKind::l2, true}, f32, fo::GradBlocks<double>{}, threads);
}

int failures = 0;

void expect(bool ok, const char* what) {
    if (!ok) {
        std::printf("FAILED: %s\n", what);
        ++failures;
    }
}

}  // namespace

int main() {
    std::vector<std::vector<float>> arrays;
    for (std::size_t n : {5u, 4096u, 4096u * 5 + 3u, 70000u, 64u}) {
        std::vector<float> a(n);
        for (std::size_t i = 0; i < n; ++i) a[i] = std::sin(0.37f * float(i) + float(n)) * 3.0f;
        arrays.push_back(a);
    }
    const double want = reference_sum_of_squares(arrays);
    for (int threads : {1, 2}) {
        const fo::GradMeasure m = measure(arrays, threads);
        expect(m.value == want, "the sum of squares has the reference's bits");
        expect(m.finite, "finite gradients are finite");
    }
    arrays[3][12345] = std::numeric_limits<float>::infinity();
    expect(!measure(arrays, 2).finite, "an infinity is found");

    // grad_mult: a step reading g·0.5 is the step on g·0.5 (exact in binary), bit for bit.
    std::vector<float> p1(1000, 1.0f), p2(1000, 1.0f), m1(1000), v1(1000), m2(1000), v2(1000), g(1000), half(1000);
    for (int i = 0; i < 1000; ++i) {
        g[std::size_t(i)] = std::cos(0.1f * float(i));
        half[std::size_t(i)] = g[std::size_t(i)] * 0.5f;
    }
    fo::Adam::Hyper hyper;
    const auto coeffs = fo::Adam::fold<float>(hyper, fo::Clock{});
    fo::ArrayRef<float> a1, a2;
    a1.param = p1.data(), a1.grad = g.data(), a1.state[0] = m1.data(), a1.state[1] = v1.data(), a1.size = 1000;
    a1.grad_mult = 0.5f;
    a2.param = p2.data(), a2.grad = half.data(), a2.state[0] = m2.data(), a2.state[1] = v2.data(), a2.size = 1000;
    fo::apply<fo::Adam, float>(coeffs, a1);
    fo::apply<fo::Adam, float>(coeffs, a2);
    expect(p1 == p2 && m1 == m2 && v1 == v2, "grad_mult scales the gradient as it is read");
    if (failures == 0) std::printf("gradient norm: %.17g, the reference's bits on 1 and 2 threads\n", want);
    return failures == 0 ? 0 : 1;
}
