// Confusion-weighted class alignment (METHOD.md §3.4–3.7, §6.3): the
// prototype softmax with W-weighted negatives, its backward, and the soft
// confusion accumulation in the forward pass. One warp per row; the row's
// k logits a_l = z·μ_l/τ live in dynamic shared memory (4 rows per block).
//
// Labels are f32-encoded class indices. A label that is not an index in
// 0..k flags its row in status[0] and the row is skipped; a weight that is
// not finite and positive flags its index y·k + l in status[1] (each word
// names the first such index: flag_first in common.cuh). The host reads
// `status` once per step.
#include "common.cuh"

// Logits of row i into row_s[0..k) (lanes over prototypes), then the row's max.
__device__ __forceinline__ float row_logits(Buf<const float> z, Buf<const float> protos, int i, int k, int d,
                                            float inv_tau, Buf<float> row_s) {
    int lane = threadIdx.x % 32;
    float m = neg_inf();
    for (int l = lane; l < k; l += 32) {
        float dot = 0.0f;
        for (int e = 0; e < d; ++e) dot += z[(long long)i * d + e] * protos[(long long)l * d + e];
        float a = dot * inv_tau;
        row_s[l] = a;
        m = fmaxf(m, a);
    }
    __syncwarp();
    return warp_max(m);
}

// Weight W[y,l] (W[y,y] and "no weights" read as 1), flagging bad values.
__device__ __forceinline__ float weight(Buf<const float> weights, int has_w, int y, int l, int k, Buf<int> status) {
    if (!has_w || l == y) return 1.0f;
    float w = weights[(long long)y * k + l];
    if (!(w > 0.0f && w < pos_inf())) atomicMax(&status[1], flag_first((long long)y * k + l));
    return w;
}

// Forward: row_loss[i] = lse_i − a_iy with lse_i = log Σ_l W[y,l]·e^{a_il};
// the mean loss is sum_scale_f32(row_loss, n, 1/n). With has_conf, adds
// softmax_l(a_il) into confusion[y,:] (float atomics: the order of the
// additions, and so the last bits, may vary between runs).
// Grid ceil(n/4) blocks of 128 threads; dynamic shared memory 4·k·4 bytes.
KERNEL void __launch_bounds__(128) class_align_fwd_f32(Buf<const float> z, Buf<const float> protos, Buf<const float> labels, Buf<const float> weights, int has_w, int n, int k, int d, float inv_tau, int has_conf, Buf<float> row_loss, Buf<float> lse, Buf<float> confusion, Buf<int> status) {
    EXTERN_SHARED(float, smem);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, i = blockIdx.x * 4 + warp;
    if (i >= n) return;  // whole warp; the kernel has no block barrier
    int y = decode_label(labels[i], k);
    if (y < 0) {
        if (lane == 0) {
            atomicMax(&status[0], flag_first(i));
            row_loss[i] = 0.0f;
            lse[i] = 0.0f;
        }
        return;
    }
    Buf<float> row_s = smem + (long long)warp * k;
    float m = row_logits(z, protos, i, k, d, inv_tau, row_s);
    float sw = 0.0f, s = 0.0f;
    for (int l = lane; l < k; l += 32) {
        float e = expf(row_s[l] - m);
        s += e;
        sw += weight(weights, has_w, y, l, k, status) * e;
    }
    s = warp_sum(s);
    sw = warp_sum(sw);
    float l_i = m + logf(sw);
    if (lane == 0) {
        lse[i] = l_i;
        row_loss[i] = l_i - row_s[y];
    }
    if (has_conf) {
        float inv = 1.0f / s;
        for (int l = lane; l < k; l += 32) atomicAdd(&confusion[(long long)y * k + l], expf(row_s[l] - m) * inv);
    }
}

// Backward: dz_i += (g/n)·Σ_l (w̃_il − 1[l=y])·μ_l/τ, w̃_il = W[y,l]·e^{a_il − lse_i}.
// Grid ceil(n/4) blocks of 128 threads; dynamic shared memory 4·k·4 bytes.
KERNEL void __launch_bounds__(128) class_align_bwd_f32(Buf<const float> z, Buf<const float> protos, Buf<const float> labels, Buf<const float> weights, int has_w, Buf<const float> lse, Buf<const float> grad_loss, int n, int k, int d, float inv_tau, Buf<float> dz, Buf<int> status) {
    EXTERN_SHARED(float, smem);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, i = blockIdx.x * 4 + warp;
    if (i >= n) return;  // whole warp; the kernel has no block barrier
    int y = decode_label(labels[i], k);
    if (y < 0) {
        if (lane == 0) atomicMax(&status[0], flag_first(i));
        return;
    }
    Buf<float> row_s = smem + (long long)warp * k;
    row_logits(z, protos, i, k, d, inv_tau, row_s);
    float scale = grad_loss[0] * inv_tau / (float)n;
    float l_i = lse[i];
    for (int l = lane; l < k; l += 32) {
        float e = expf(row_s[l] - l_i);
        row_s[l] = scale * (l == y ? e - 1.0f : weight(weights, has_w, y, l, k, status) * e);
    }
    __syncwarp();
    for (int e = lane; e < d; e += 32) {
        float acc = 0.0f;
        for (int l = 0; l < k; ++l) acc += row_s[l] * protos[(long long)l * d + e];
        dz[(long long)i * d + e] += acc;
    }
}
