// Google Benchmark timing of each rule's step on each supported instruction-set target, in
// float32 and float64, reporting bytes per second (the bytes a step must move). Beside each,
// `<rule>/<target>/<dtype>/probe` runs the bandwidth probe over the same bytes: the most a step
// that moves them can reach. (`python -m fastoptim bench --peers fastoptim,probe` holds them
// side by side from Python, alternating.)
//
//   fastoptim_microbench --benchmark_filter='adam/avx2' --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include <fastoptim/runtime.hpp>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

using namespace fastoptim;

// Every rule that steps with gradients is benchmarked at its schema's defaults, except for the
// hyper-parameters a setting below names (say, to give SGD its momentum buffer). What a step
// reads and writes, and so what the bandwidth probe sweeps beside it, comes from the rule's
// schema (step_passes), as in the Python benchmark.
struct Setting {
    const char* rule;
    std::vector<std::pair<std::string, double>> hyper;
};

const std::vector<Setting>& settings() {
    static const std::vector<Setting> table = {
        {"sgd", {{"momentum", 0.9}}},
        {"sgdw", {{"momentum", 0.9}, {"weight_decay", 1e-2}}},
    };
    return table;
}

// A setting made concrete: its row, the state slots it uses and the sweeps of one step.
struct Workload {
    const RuleInfo* rule;
    std::vector<double> row;
    std::vector<bool> used;
    std::vector<Pass> passes;

    Workload(const RuleInfo& r, const std::vector<std::pair<std::string, double>>& hyper)
        : rule(&r), row(hyper_row(r, hyper)), used(slots_used(r, row)),
          passes(step_passes(r, int(std::count(used.begin(), used.end(), true)))) {}

    int accesses() const {
        int n = 0;
        for (const Pass& p : passes) n += p.reads + p.writes;
        return n;
    }
};

template <class T>
struct Arrays {
    std::vector<std::vector<T>> storage;
    std::vector<ArrayRef<T>> refs;
    std::vector<index_t> offsets{0}, block_offsets{0};
    std::vector<int> group{0};
    std::vector<double> partials;
    std::vector<T> ratios{T(1)};

    // p, g and one array per used state slot, at the slot's place in ArrayRef::state.
    Arrays(index_t n, const std::vector<bool>& used) : storage(2, std::vector<T>(std::size_t(n), T(0.5))) {
        for (bool u : used)
            if (u) storage.emplace_back(std::size_t(n), T(0.5));
        ArrayRef<T> ref;
        ref.param = storage[0].data();
        ref.grad = storage[1].data();
        std::size_t next = 2;
        for (std::size_t s = 0; s < used.size(); ++s)
            if (used[s]) ref.state[s] = storage[next++].data();
        ref.size = n;
        ref.ratio = ratios.data();
        refs.push_back(ref);
        offsets.push_back(n);
        block_offsets.push_back((n + 4095) / 4096);
        partials.assign(std::size_t(block_offsets.back()) * 2, 0.0);
    }

    Work<T> work(const void* coeffs) {
        Work<T> w;
        w.arrays = refs.data();
        w.offsets = offsets.data();
        w.group = group.data();
        w.coeffs = coeffs;
        w.count = 1;
        w.block_offsets = block_offsets.data();
        w.partials = partials.data();
        w.ratios = ratios.data();
        return w;
    }
};

template <class T>
void run_step(benchmark::State& state, const Target* target, const Workload* setting, int threads) {
    const RuleInfo* rule = setting->rule;
    const index_t n = state.range(0);
    const index_t prefetch_above = default_prefetch_above();  // as the extension's default
    Arrays<T> arrays(n, setting->used);
    std::vector<double> coeffs32(rule->coeffs_f32_size / sizeof(double) + 1), coeffs64(rule->coeffs_f64_size / sizeof(double) + 1);
    std::vector<double> scalars(rule->scalar_init);
    std::int64_t step = 0;
    for (auto _ : state) {
        const Clock clock{++step, step == 1, scalars.data()};
        rule->advance(setting->row.data(), clock, scalars.data());
        rule->fold(setting->row.data(), clock, coeffs32.data(), coeffs64.data());
        StepRequest request{rule->id, {}, {}, threads, prefetch_above};
        if constexpr (sizeof(T) == 4) {
            request.f32 = arrays.work(coeffs32.data());
        } else {
            request.f64 = arrays.work(coeffs64.data());
        }
        target->step(request);
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(state.iterations() * n);
    state.SetBytesProcessed(state.iterations() * n * index_t(sizeof(T)) * setting->accesses());
}

// The bandwidth probe over the same bytes as a step of `setting`: each of its sweeps reads and
// writes as many arrays of n elements, on the same threads. A rule's bytes per second over the
// probe's is its share of what the machine gives a step (CPU-bound rules fall short in cache).
template <class T>
void run_probe(benchmark::State& state, const Target* target, const Workload* setting, int threads) {
    const index_t n = state.range(0);
    int most = 0;
    for (const Pass& p : setting->passes) most = std::max(most, p.reads);
    std::vector<std::vector<T>> storage(std::size_t(most), std::vector<T>(std::size_t(n), T(0.5)));
    std::vector<void*> arrays;
    for (auto& a : storage) arrays.push_back(a.data());
    const index_t prefetch_above = default_prefetch_above();
    for (auto _ : state) {
        for (const Pass& p : setting->passes) {
            const ProbeRequest request{arrays.data(), sizeof(T) == 8, p.reads, p.writes, 0, n, threads, prefetch_above};
            if (!target->probe(request)) {
                state.SkipWithError("the probe does not take this many arrays");
                return;
            }
        }
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(state.iterations() * n);
    state.SetBytesProcessed(state.iterations() * n * index_t(sizeof(T)) * setting->accesses());
}

int default_threads() {
#if defined(_OPENMP)
    return omp_get_max_threads();
#else
    return 1;
#endif
}

}  // namespace

int main(int argc, char** argv) {
    const int threads = default_threads();
    std::vector<Workload> workloads;
    for (const RuleInfo& rule : rule_table()) {
        if (!rule.needs_grad) continue;  // Lookahead's sync: it runs inside another rule's steps
        std::vector<std::pair<std::string, double>> hyper;
        for (const Setting& setting : settings())
            if (rule.name == setting.rule) hyper = setting.hyper;
        workloads.emplace_back(rule, hyper);
    }
    for (const Target& target : built_targets()) {
        if (!target.supported) continue;
        for (const Workload& workload : workloads) {
            for (const char* dtype : {"f32", "f64"}) {
                const bool f32 = std::string(dtype) == "f32";
                const std::string name = workload.rule->name + "/" + target.name + "/" + dtype;
                auto* step = f32 ? benchmark::RegisterBenchmark(name.c_str(), run_step<float>, &target, &workload, threads)
                                 : benchmark::RegisterBenchmark(name.c_str(), run_step<double>, &target, &workload, threads);
                const std::string probe_name = name + "/probe";
                auto* probe = f32 ? benchmark::RegisterBenchmark(probe_name.c_str(), run_probe<float>, &target, &workload, threads)
                                  : benchmark::RegisterBenchmark(probe_name.c_str(), run_probe<double>, &target, &workload, threads);
                for (auto* b : {step, probe})
                    b->Arg(10000)->Arg(1000000)->Arg(10000000)->UseRealTime()->Unit(benchmark::kMicrosecond);
            }
        }
    }
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
