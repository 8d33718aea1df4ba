// The AdamW update (OptimKernels::adamw_update), in place, one element per
// thread of a grid-stride loop.
#include "common.cuh"

// m ← β1·m + (1−β1)·g, v ← β2·v + (1−β2)·g²,
// param ← param − lr·(m̂/(√v̂ + eps) + wd·param), m̂ = m/bc1, v̂ = v/bc2,
// for every i < n.
// Grid: any number of blocks of 256 threads (grid-stride), e.g. min(ceil(n/256), 65535).
KERNEL void __launch_bounds__(256) adamw_update_f32(Buf<float> param, Buf<const float> grad, Buf<float> m, Buf<float> v, int n, float lr, float beta1, float beta2, float eps, float weight_decay, float bias_correction1, float bias_correction2) {
    float c1 = 1.0f / bias_correction1, c2 = 1.0f / bias_correction2;
    for (long long i = grid_first(); i < n; i += grid_step()) {
        float g = grad[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float p = param[i];
        float update = (mi * c1) / (sqrtf(vi * c2) + eps) + weight_decay * p;
        param[i] = p - lr * update;
    }
}
