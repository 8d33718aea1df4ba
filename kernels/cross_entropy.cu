// Softmax cross-entropy with integer targets (CrossEntropyKernels) over
// row-major logits [N, C]: L = mean_n (lse_n − scale·logits[n, t_n]) with
// lse_n = log Σ_c exp(scale·logits[n, c]). One warp per row (8 rows per
// 256-thread block), looping over the classes so any C ≥ 1 works.
//
// Forward: cross_entropy_fwd_f32 (row losses and LSEs), then reduce.cu's
// sum_scale_f32(row_loss, N, 1/N, loss) for the mean (deterministic).
// Backward: cross_entropy_bwd_f32 from the saved LSEs.
//
// Targets are f32-encoded class indices (the trait's targets buffer). A
// target that is not an index in 0..C flags its row in status[0] (the
// first such row: flag_first in common.cuh) and the row is skipped (its row loss and LSE set to 0, its
// gradient left alone); the host reads `status` (zeroed before the launch)
// and reports the row, as the CPU backend does.
#include "common.cuh"

// row_loss[n] = lse[n] − scale·logits[n, t_n] and lse[n] (overwritten).
// Grid: ceil(N/8) blocks of 256 threads.
KERNEL void __launch_bounds__(256) cross_entropy_fwd_f32(Buf<const float> logits, Buf<const float> targets, int rows, int classes, float scale, Buf<float> row_loss, Buf<float> lse, Buf<int> status) {
    int lane = threadIdx.x % 32;
    long long r = (long long)blockIdx.x * 8 + threadIdx.x / 32;
    if (r >= rows) return;  // whole warp; no block barrier
    int t = decode_label(targets[r], classes);
    if (t < 0) {
        if (lane == 0) {
            atomicMax(&status[0], flag_first(r));
            row_loss[r] = 0.0f;
            lse[r] = 0.0f;
        }
        return;
    }
    Buf<const float> xr = logits + r * classes;
    float m = neg_inf();
    for (int j = lane; j < classes; j += 32) m = fmaxf(m, scale * xr[j]);
    m = warp_max(m);
    float s = 0.0f;
    for (int j = lane; j < classes; j += 32) s += expf(scale * xr[j] - m);
    float l = m + logf(warp_sum(s));
    if (lane == 0) {
        lse[r] = l;
        row_loss[r] = l - scale * xr[t];
    }
}

// dlogits[n, c] += coef·(softmax(scale·logits_n)[c] − [c = t_n]) with
// coef = grad_loss[0]·scale/N (accumulated).
// Grid: ceil(N/8) blocks of 256 threads.
KERNEL void __launch_bounds__(256) cross_entropy_bwd_f32(Buf<const float> logits, Buf<const float> targets, Buf<const float> lse, Buf<const float> grad_loss, int rows, int classes, float scale, Buf<float> dlogits, Buf<int> status) {
    int lane = threadIdx.x % 32;
    long long r = (long long)blockIdx.x * 8 + threadIdx.x / 32;
    if (r >= rows) return;  // whole warp; no block barrier
    int t = decode_label(targets[r], classes);
    if (t < 0) {
        if (lane == 0) atomicMax(&status[0], flag_first(r));
        return;
    }
    float coef = grad_loss[0] * scale / (float)rows;
    float l = lse[r];
    Buf<const float> xr = logits + r * classes;
    Buf<float> dr = dlogits + r * classes;
    for (int j = lane; j < classes; j += 32) {
        float g = dr[j] + coef * expf(scale * xr[j] - l);
        if (j == t) g -= coef;
        dr[j] = g;
    }
}
