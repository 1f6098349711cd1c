"""Where 8-bit state's step spends its time: float32 AdamW at 1e7 with float32 and with 8-bit
state, on the AVX2 and AVX-512 targets (those of them this CPU runs), best of 12 steps
alternated in one process.

    python bench/int8_threads.py THREADS           # best ms of each variant
    perf record python bench/int8_threads.py 1 --loop   # 43 single-thread 8-bit steps to profile
"""

import sys
import time

import numpy as np

import fastoptim as fo


def main() -> None:
    fo.set_num_threads(int(sys.argv[1]))
    n = 10_000_000
    rng = np.random.default_rng(0)
    p = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32)
    if "--loop" in sys.argv:
        opt = fo.AdamW([p], state_dtype="int8")
        start = time.perf_counter()
        for _ in range(43):
            opt.step([g])
        print(f"{(time.perf_counter() - start) / 43 * 1e3:.2f} ms a step")
        return
    opts = {"float32 state": fo.AdamW([p.copy()]), "int8 state": fo.AdamW([p.copy()], state_dtype="int8")}
    targets = [t for t in ("avx2", "avx512") if t in fo.available_targets()]  # an EPYC before Zen 4 has no AVX-512
    best: dict[str, float] = {}
    for _ in range(12):
        for target in targets:
            fo.set_target(target)
            for name, opt in opts.items():
                start = time.perf_counter()
                opt.step([g])
                key = f"{name}, {target}"
                best[key] = min(best.get(key, np.inf), time.perf_counter() - start)
    print({k: round(v * 1e3, 2) for k, v in best.items()})


if __name__ == "__main__":
    main()
