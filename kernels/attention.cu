// Fused multi-head self-attention, flash-style (METHOD.md §6.4).
// qkv [B,S,3·H·Dh] (per token: all heads' queries, keys, values), out
// [B,S,H·Dh], lse [B,H,S]; head_dim Dh ≤ 128 (each lane owns ≤ 4 dims).
//
// Forward: one warp per query, 8 queries per block; 32-key tiles of K and V
// in shared memory; online softmax (running max m, sum l, rescaled output)
// and the saved lse = m + log l. No S×S scores in memory.
// Backward (FlashAttention-2 style, no atomics): attention_bwd_dot_f32
// gives D_i = dO_i·O_i; attention_bwd_dq_f32 (warp per query, key tiles)
// and attention_bwd_dkdv_f32 (warp per key, query tiles) recompute
// P = exp(S − lse) and dS = P∘(dP − D) tile by tile and add into grad_qkv.
#include "common.cuh"

#define ATT_MAXD 128
#define ATT_DPL (ATT_MAXD / 32)
#define ATT_ROWS 8
#define ATT_KT 32

// Offset of head h's query (which = 0), key (1) or value (2) of token s in batch b.
__device__ __forceinline__ long long qkv_at(int b, int s, int h, int which, int S, int H, int Dh) {
    long long w = (long long)H * Dh;
    return ((long long)b * S + s) * 3 * w + which * w + (long long)h * Dh;
}

// Loads `rows` rows (from token t0) of part `which` of head h into a shared
// tile with row stride `ld`; rows past S become zeros. All threads call it.
__device__ __forceinline__ void load_rows(Buf<const float> src, bool is_qkv, int which, int b, int t0, int rows, int h,
                                          int S, int H, int Dh, Buf<float> dst, int ld) {
    for (int e = threadIdx.x; e < rows * Dh; e += blockDim.x) {
        int r = e / Dh, c = e % Dh, s = t0 + r;
        float v = 0.0f;
        if (s < S) {
            long long at = is_qkv ? qkv_at(b, s, h, which, S, H, Dh) : ((long long)b * S + s) * H * Dh + (long long)h * Dh;
            v = src[at + c];
        }
        dst[r * ld + c] = v;
    }
}

// Grid (ceil(S/8), H, B) blocks of 256 threads; dynamic shared memory
// (8·Dh + 32·(Dh+1) + 32·Dh)·4 bytes.
KERNEL void __launch_bounds__(256) attention_fwd_f32(Buf<const float> qkv, int S, int H, int Dh, float scale, Buf<float> out, Buf<float> lse) {
    EXTERN_SHARED(float, smem);
    Buf<float> q_s = smem;                              // [8][Dh]
    Buf<float> k_s = q_s + ATT_ROWS * Dh;                 // [32][Dh+1]
    Buf<float> v_s = k_s + ATT_KT * (Dh + 1);             // [32][Dh]
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int h = blockIdx.y, b = blockIdx.z, q0 = blockIdx.x * ATT_ROWS, qi = q0 + warp;
    load_rows(qkv, true, 0, b, q0, ATT_ROWS, h, S, H, Dh, q_s, Dh);
    float m = neg_inf(), l = 0.0f, o[ATT_DPL];
    for (int t = 0; t < ATT_DPL; ++t) o[t] = 0.0f;
    for (int k0 = 0; k0 < S; k0 += ATT_KT) {
        __syncthreads();  // previous tile consumed (and q_s loaded)
        load_rows(qkv, true, 1, b, k0, ATT_KT, h, S, H, Dh, k_s, Dh + 1);
        load_rows(qkv, true, 2, b, k0, ATT_KT, h, S, H, Dh, v_s, Dh);
        __syncthreads();
        float s = neg_inf();
        if (k0 + lane < S) {
            float dot = 0.0f;
            for (int e = 0; e < Dh; ++e) dot += q_s[warp * Dh + e] * k_s[lane * (Dh + 1) + e];
            s = dot * scale;
        }
        float m_new = fmaxf(m, warp_max(s));
        float p = s == neg_inf() ? 0.0f : expf(s - m_new);
        float corr = m == neg_inf() ? 0.0f : expf(m - m_new);
        l = l * corr + warp_sum(p);
        for (int t = 0; t < ATT_DPL; ++t) o[t] *= corr;
        int keys = S - k0 < ATT_KT ? S - k0 : ATT_KT;
        for (int j = 0; j < keys; ++j) {
            float pj = __shfl_sync(FULL_MASK, p, j);
            for (int t = 0; t < ATT_DPL; ++t) {
                int e = lane + 32 * t;
                if (e < Dh) o[t] += pj * v_s[j * Dh + e];
            }
        }
        m = m_new;
    }
    if (qi < S) {
        long long at = ((long long)b * S + qi) * H * Dh + (long long)h * Dh;
        float inv = 1.0f / l;
        for (int t = 0; t < ATT_DPL; ++t) {
            int e = lane + 32 * t;
            if (e < Dh) out[at + e] = o[t] * inv;
        }
        if (lane == 0) lse[((long long)b * H + h) * S + qi] = m + logf(l);
    }
}

// delta[b,h,s] = Σ_e grad_out[b,s,h,e]·out[b,s,h,e]: one warp per (b,s,h).
// Grid ceil(B·S·H/8) blocks of 256 threads.
KERNEL void __launch_bounds__(256) attention_bwd_dot_f32(Buf<const float> out, Buf<const float> grad_out, int B, int S, int H, int Dh, Buf<float> delta) {
    int lane = threadIdx.x % 32;
    long long row = (long long)blockIdx.x * 8 + threadIdx.x / 32;
    if (row >= (long long)B * S * H) return;  // whole warp
    float acc = 0.0f;
    for (int e = lane; e < Dh; e += 32) acc += out[row * Dh + e] * grad_out[row * Dh + e];
    acc = warp_sum(acc);
    long long bs = row / H;
    int h = (int)(row % H);
    int b = (int)(bs / S), s = (int)(bs % S);
    if (lane == 0) delta[((long long)b * H + h) * S + s] = acc;
}

// dQ: warp per query, 32-key tiles. Grid (ceil(S/8), H, B) blocks of 256
// threads; dynamic shared memory (2·8·Dh + 2·32·(Dh+1))·4 bytes.
KERNEL void __launch_bounds__(256) attention_bwd_dq_f32(Buf<const float> qkv, Buf<const float> grad_out, Buf<const float> lse, Buf<const float> delta, int S, int H, int Dh, float scale, Buf<float> grad_qkv) {
    EXTERN_SHARED(float, smem);
    Buf<float> q_s = smem;                   // [8][Dh]
    Buf<float> do_s = q_s + ATT_ROWS * Dh;     // [8][Dh]
    Buf<float> k_s = do_s + ATT_ROWS * Dh;     // [32][Dh+1]
    Buf<float> v_s = k_s + ATT_KT * (Dh + 1);  // [32][Dh+1]
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int h = blockIdx.y, b = blockIdx.z, q0 = blockIdx.x * ATT_ROWS, qi = q0 + warp;
    load_rows(qkv, true, 0, b, q0, ATT_ROWS, h, S, H, Dh, q_s, Dh);
    load_rows(grad_out, false, 0, b, q0, ATT_ROWS, h, S, H, Dh, do_s, Dh);
    long long li = ((long long)b * H + h) * S + qi;
    float lse_i = qi < S ? lse[li] : 0.0f, d_i = qi < S ? delta[li] : 0.0f;
    float dq[ATT_DPL];
    for (int t = 0; t < ATT_DPL; ++t) dq[t] = 0.0f;
    for (int k0 = 0; k0 < S; k0 += ATT_KT) {
        __syncthreads();
        load_rows(qkv, true, 1, b, k0, ATT_KT, h, S, H, Dh, k_s, Dh + 1);
        load_rows(qkv, true, 2, b, k0, ATT_KT, h, S, H, Dh, v_s, Dh + 1);
        __syncthreads();
        float ds = 0.0f;
        if (k0 + lane < S && qi < S) {
            float sc = 0.0f, dp = 0.0f;
            for (int e = 0; e < Dh; ++e) {
                sc += q_s[warp * Dh + e] * k_s[lane * (Dh + 1) + e];
                dp += do_s[warp * Dh + e] * v_s[lane * (Dh + 1) + e];
            }
            float p = expf(sc * scale - lse_i);
            ds = p * (dp - d_i);
        }
        int keys = S - k0 < ATT_KT ? S - k0 : ATT_KT;
        for (int j = 0; j < keys; ++j) {
            float dsj = __shfl_sync(FULL_MASK, ds, j);
            for (int t = 0; t < ATT_DPL; ++t) {
                int e = lane + 32 * t;
                if (e < Dh) dq[t] += dsj * k_s[j * (Dh + 1) + e];
            }
        }
    }
    if (qi < S) {
        long long at = qkv_at(b, qi, h, 0, S, H, Dh);
        for (int t = 0; t < ATT_DPL; ++t) {
            int e = lane + 32 * t;
            if (e < Dh) grad_qkv[at + e] += dq[t] * scale;
        }
    }
}

// dK and dV: warp per key, 32-query tiles. Grid (ceil(S/8), H, B) blocks of
// 256 threads; dynamic shared memory (2·8·Dh + 2·32·(Dh+1) + 64)·4 bytes.
KERNEL void __launch_bounds__(256) attention_bwd_dkdv_f32(Buf<const float> qkv, Buf<const float> grad_out, Buf<const float> lse, Buf<const float> delta, int S, int H, int Dh, float scale, Buf<float> grad_qkv) {
    EXTERN_SHARED(float, smem);
    Buf<float> k_s = smem;                     // [8][Dh]
    Buf<float> v_s = k_s + ATT_ROWS * Dh;        // [8][Dh]
    Buf<float> q_s = v_s + ATT_ROWS * Dh;        // [32][Dh+1]
    Buf<float> do_s = q_s + ATT_KT * (Dh + 1);   // [32][Dh+1]
    Buf<float> lse_s = do_s + ATT_KT * (Dh + 1);  // [32]
    Buf<float> d_s = lse_s + ATT_KT;             // [32]
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int h = blockIdx.y, b = blockIdx.z, j0 = blockIdx.x * ATT_ROWS, kj = j0 + warp;
    load_rows(qkv, true, 1, b, j0, ATT_ROWS, h, S, H, Dh, k_s, Dh);
    load_rows(qkv, true, 2, b, j0, ATT_ROWS, h, S, H, Dh, v_s, Dh);
    float dk[ATT_DPL], dv[ATT_DPL];
    for (int t = 0; t < ATT_DPL; ++t) dk[t] = dv[t] = 0.0f;
    for (int i0 = 0; i0 < S; i0 += ATT_KT) {
        __syncthreads();
        load_rows(qkv, true, 0, b, i0, ATT_KT, h, S, H, Dh, q_s, Dh + 1);
        load_rows(grad_out, false, 0, b, i0, ATT_KT, h, S, H, Dh, do_s, Dh + 1);
        if (threadIdx.x < ATT_KT) {
            int i = i0 + threadIdx.x;
            long long li = ((long long)b * H + h) * S + i;
            lse_s[threadIdx.x] = i < S ? lse[li] : 0.0f;
            d_s[threadIdx.x] = i < S ? delta[li] : 0.0f;
        }
        __syncthreads();
        float p = 0.0f, ds = 0.0f;
        if (i0 + lane < S && kj < S) {
            float sc = 0.0f, dp = 0.0f;
            for (int e = 0; e < Dh; ++e) {
                sc += q_s[lane * (Dh + 1) + e] * k_s[warp * Dh + e];
                dp += do_s[lane * (Dh + 1) + e] * v_s[warp * Dh + e];
            }
            p = expf(sc * scale - lse_s[lane]);
            ds = p * (dp - d_s[lane]);
        }
        int queries = S - i0 < ATT_KT ? S - i0 : ATT_KT;
        for (int i = 0; i < queries; ++i) {
            float pi = __shfl_sync(FULL_MASK, p, i);
            float dsi = __shfl_sync(FULL_MASK, ds, i);
            for (int t = 0; t < ATT_DPL; ++t) {
                int e = lane + 32 * t;
                if (e < Dh) {
                    dv[t] += pi * do_s[i * (Dh + 1) + e];
                    dk[t] += dsi * q_s[i * (Dh + 1) + e];
                }
            }
        }
    }
    if (kj < S) {
        long long ak = qkv_at(b, kj, h, 1, S, H, Dh), av = qkv_at(b, kj, h, 2, S, H, Dh);
        for (int t = 0; t < ATT_DPL; ++t) {
            int e = lane + 32 * t;
            if (e < Dh) {
                grad_qkv[ak + e] += dk[t] * scale;
                grad_qkv[av + e] += dv[t];
            }
        }
    }
}
