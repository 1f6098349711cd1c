// L-BFGS's vector algebra (vector_algebra.hpp) for one target.
#include "fastoptim/vector_algebra.hpp"

#include "fastoptim/runtime/targets.hpp"

#define FASTOPTIM_CONCAT_(a, b) a##_##b
#define FASTOPTIM_CONCAT(a, b) FASTOPTIM_CONCAT_(a, b)

namespace fastoptim {

CombineSums FASTOPTIM_CONCAT(combine, FASTOPTIM_TARGET_NS)(const CombineRequest& r) {
    if (r.is_double) return combine(*static_cast<const Combine<double>*>(r.arrays), r.threads);
    return combine(*static_cast<const Combine<float>*>(r.arrays), r.threads);
}

}  // namespace fastoptim
