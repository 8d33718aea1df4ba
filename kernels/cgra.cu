// Co-correlation guided alignment loss (METHOD.md §4, docs/METHOD-NOTES.md).
// ha [B,Ta,d], hv [B,Tv,d]; per clip S = â·v̂ᵀ/τ (rows normalised by
// max(‖x‖, ε)), P = softmax_row(S), Q = softmax_col(S); the guided features
// only enter pooled, through w_j = mean_i P_ij and u_i = mean_j Q_ij.
// S exists only as 32×32 tiles in shared memory (grid: row tiles × clips).
//
// The kernels are written for an "own" side (the rows a block owns) and an
// "other" side (the rows it streams past); each is launched once with
// (own, other) = (ha, hv) and once with (hv, ha), since Sᵀ = v̂·âᵀ/τ.
//
// Forward:  sq_norms_f32 (reduce.cu) on ha and hv → sq_a, sq_v;
//           cgra_lse_f32 (ha,hv) → row_lse, (hv,ha) → col_lse;
//           cgra_mean_prob_f32 (ha,hv,col_lse) → u, (hv,ha,row_lse) → w;
//           cgra_pool_f32 → pooled [B,4,d] = [ā, v̄, ã, ṽ] and clip_loss [B];
//           sum_scale_f32 (reduce.cu) (clip_loss, B, 1/B) → loss.
// Backward: cgra_bwd_coef_f32 → coef [B,4,d] = [g_ā, g_v̄, g_ã, g_ṽ],
//           alpha_j = V_j·g_ã [B,Tv], beta_i = A_i·g_ṽ [B,Ta];
//           cgra_prob_dot_f32 (ha,hv,row_lse,alpha) → rho, (hv,ha,col_lse,beta) → kappa;
//           cgra_bwd_f32 for each side (see its comment) adds into dha / dhv.
#include "common.cuh"

// 1 / max(sqrt(sq), eps).
__device__ __forceinline__ float cgra_inv_norm(float sq, float eps) { return 1.0f / fmaxf(sqrtf(sq), eps); }

// One 32×32 tile of logits of clip blockIdx.y: acc[j] = S(r0 + warp + 8j, c0 + lane)
// = own_r·other_c · inv_own[j] · inv_other · inv_tau, where own / other already
// point at the clip's rows. Every thread of the block must call it.
__device__ __forceinline__ void cgra_logit_tile(Buf<const float> own, int t_own, int r0, Buf<const float> other,
                                                int t_other, int c0, int d, const float inv_own[4], float inv_other,
                                                float inv_tau, Buf<float> own_s, Buf<float> other_s, float acc[4]) {
    dot_tile_32x32(own, t_own, r0, other, t_other, c0, d, own_s, other_s, acc);
    for (int j = 0; j < 4; ++j) acc[j] *= inv_own[j] * inv_other * inv_tau;
}

// Inverse norms of the 4 rows warp + 8j of the tile at r0 (1 past the end).
__device__ __forceinline__ void cgra_own_inv(Buf<const float> own_sq, int t_own, int r0, float eps, float inv[4]) {
    int warp = threadIdx.x / 32;
    for (int j = 0; j < 4; ++j) {
        int r = r0 + warp + 8 * j;
        inv[j] = r < t_own ? cgra_inv_norm(own_sq[r], eps) : 1.0f;
    }
}

// lse[b·t_own + r] = log Σ_c exp(S_rc) over the clip's other rows.
// Grid: (ceil(t_own/32), B) blocks of 256 threads; no dynamic shared memory.
KERNEL void __launch_bounds__(256) cgra_lse_f32(Buf<const float> own_all, Buf<const float> other_all, Buf<const float> own_sq_all, Buf<const float> other_sq_all, int t_own, int t_other, int d, float inv_tau, float eps, Buf<float> lse) {
    SHARED_ARRAY(float, own_s, TILE * TILE_LD);
    SHARED_ARRAY(float, other_s, TILE * TILE_LD);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, r0 = blockIdx.x * TILE, b = blockIdx.y;
    Buf<const float> own = own_all + (long long)b * t_own * d;
    Buf<const float> other = other_all + (long long)b * t_other * d;
    Buf<const float> own_sq = own_sq_all + (long long)b * t_own;
    Buf<const float> other_sq = other_sq_all + (long long)b * t_other;
    float inv_own[4], m[4], s[4], acc[4];
    cgra_own_inv(own_sq, t_own, r0, eps, inv_own);
    for (int j = 0; j < 4; ++j) {
        m[j] = neg_inf();
        s[j] = 0.0f;
    }
    for (int c0 = 0; c0 < t_other; c0 += TILE) {
        int c = c0 + lane;
        float inv_c = c < t_other ? cgra_inv_norm(other_sq[c], eps) : 0.0f;
        cgra_logit_tile(own, t_own, r0, other, t_other, c0, d, inv_own, inv_c, inv_tau, own_s, other_s, acc);
        for (int j = 0; j < 4; ++j) lse_merge(m[j], s[j], warp_lse(c < t_other ? acc[j] : neg_inf()), 1.0f);
    }
    for (int j = 0; j < 4; ++j) {
        int r = r0 + warp + 8 * j;
        if (lane == 0 && r < t_own) lse[(long long)b * t_own + r] = m[j] + logf(s[j]);
    }
}

// out[b·t_own + r] = (1/t_other)·Σ_c exp(S_rc − other_lse_c): the mean over
// the other side of the softmax taken along the own side (u from (ha, hv,
// col_lse), w from (hv, ha, row_lse)).
// Grid: (ceil(t_own/32), B) blocks of 256 threads; no dynamic shared memory.
KERNEL void __launch_bounds__(256) cgra_mean_prob_f32(Buf<const float> own_all, Buf<const float> other_all, Buf<const float> own_sq_all, Buf<const float> other_sq_all, Buf<const float> other_lse_all, int t_own, int t_other, int d, float inv_tau, float eps, Buf<float> out) {
    SHARED_ARRAY(float, own_s, TILE * TILE_LD);
    SHARED_ARRAY(float, other_s, TILE * TILE_LD);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, r0 = blockIdx.x * TILE, b = blockIdx.y;
    Buf<const float> own = own_all + (long long)b * t_own * d;
    Buf<const float> other = other_all + (long long)b * t_other * d;
    Buf<const float> own_sq = own_sq_all + (long long)b * t_own;
    Buf<const float> other_sq = other_sq_all + (long long)b * t_other;
    Buf<const float> other_lse = other_lse_all + (long long)b * t_other;
    float inv_own[4], sum[4] = {0.0f, 0.0f, 0.0f, 0.0f}, acc[4];
    cgra_own_inv(own_sq, t_own, r0, eps, inv_own);
    for (int c0 = 0; c0 < t_other; c0 += TILE) {
        int c = c0 + lane;
        bool ok = c < t_other;
        float inv_c = ok ? cgra_inv_norm(other_sq[c], eps) : 0.0f;
        float l_c = ok ? other_lse[c] : 0.0f;
        cgra_logit_tile(own, t_own, r0, other, t_other, c0, d, inv_own, inv_c, inv_tau, own_s, other_s, acc);
        for (int j = 0; j < 4; ++j) sum[j] += warp_sum(ok ? expf(acc[j] - l_c) : 0.0f);
    }
    for (int j = 0; j < 4; ++j) {
        int r = r0 + warp + 8 * j;
        if (lane == 0 && r < t_own) out[(long long)b * t_own + r] = sum[j] / (float)t_other;
    }
}

// out[b·t_own + r] = Σ_c exp(S_rc − own_lse_r)·val_c: the softmax along the
// other side applied to a vector (rho from (ha, hv, row_lse, alpha), kappa
// from (hv, ha, col_lse, beta)).
// Grid: (ceil(t_own/32), B) blocks of 256 threads; no dynamic shared memory.
KERNEL void __launch_bounds__(256) cgra_prob_dot_f32(Buf<const float> own_all, Buf<const float> other_all, Buf<const float> own_sq_all, Buf<const float> other_sq_all, Buf<const float> own_lse_all, Buf<const float> val_all, int t_own, int t_other, int d, float inv_tau, float eps, Buf<float> out) {
    SHARED_ARRAY(float, own_s, TILE * TILE_LD);
    SHARED_ARRAY(float, other_s, TILE * TILE_LD);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, r0 = blockIdx.x * TILE, b = blockIdx.y;
    Buf<const float> own = own_all + (long long)b * t_own * d;
    Buf<const float> other = other_all + (long long)b * t_other * d;
    Buf<const float> own_sq = own_sq_all + (long long)b * t_own;
    Buf<const float> other_sq = other_sq_all + (long long)b * t_other;
    Buf<const float> val = val_all + (long long)b * t_other;
    float inv_own[4], own_lse[4], sum[4] = {0.0f, 0.0f, 0.0f, 0.0f}, acc[4];
    cgra_own_inv(own_sq, t_own, r0, eps, inv_own);
    for (int j = 0; j < 4; ++j) {
        int r = r0 + warp + 8 * j;
        own_lse[j] = r < t_own ? own_lse_all[(long long)b * t_own + r] : 0.0f;
    }
    for (int c0 = 0; c0 < t_other; c0 += TILE) {
        int c = c0 + lane;
        bool ok = c < t_other;
        float inv_c = ok ? cgra_inv_norm(other_sq[c], eps) : 0.0f;
        float v_c = ok ? val[c] : 0.0f;
        cgra_logit_tile(own, t_own, r0, other, t_other, c0, d, inv_own, inv_c, inv_tau, own_s, other_s, acc);
        for (int j = 0; j < 4; ++j) sum[j] += warp_sum(ok ? expf(acc[j] - own_lse[j]) * v_c : 0.0f);
    }
    for (int j = 0; j < 4; ++j) {
        int r = r0 + warp + 8 * j;
        if (lane == 0 && r < t_own) out[(long long)b * t_own + r] = sum[j];
    }
}

// Per clip b: pooled[b] = [ā, v̄, ã, ṽ] (ā = mean_i A_i, v̄ = mean_j V_j,
// ã = Σ_j w_j V_j, ṽ = Σ_i u_i A_i) and clip_loss[b] = 2 − cos(ā, ṽ) − cos(v̄, ã).
// Grid: B blocks of 256 threads; no dynamic shared memory.
KERNEL void __launch_bounds__(256) cgra_pool_f32(Buf<const float> ha, Buf<const float> hv, Buf<const float> u_all, Buf<const float> w_all, int ta, int tv, int d, float eps, Buf<float> pooled, Buf<float> clip_loss) {
    SHARED_ARRAY(float, scratch, 33);
    int b = blockIdx.x;
    Buf<const float> a = ha + (long long)b * ta * d;
    Buf<const float> v = hv + (long long)b * tv * d;
    Buf<const float> u = u_all + (long long)b * ta;
    Buf<const float> w = w_all + (long long)b * tv;
    Buf<float> out = pooled + (long long)b * 4 * d;
    // Partial dot products: ā·ṽ, ā·ā, ṽ·ṽ, v̄·ã, v̄·v̄, ã·ã.
    float part[6] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    for (int k = threadIdx.x; k < d; k += blockDim.x) {
        float abar = 0.0f, vtil = 0.0f, vbar = 0.0f, atil = 0.0f;
        for (int i = 0; i < ta; ++i) {
            float x = a[(long long)i * d + k];
            abar += x;
            vtil += u[i] * x;
        }
        for (int j = 0; j < tv; ++j) {
            float x = v[(long long)j * d + k];
            vbar += x;
            atil += w[j] * x;
        }
        abar /= (float)ta;
        vbar /= (float)tv;
        out[k] = abar;
        out[d + k] = vbar;
        out[2 * d + k] = atil;
        out[3 * d + k] = vtil;
        part[0] += abar * vtil;
        part[1] += abar * abar;
        part[2] += vtil * vtil;
        part[3] += vbar * atil;
        part[4] += vbar * vbar;
        part[5] += atil * atil;
    }
    float t[6];
    for (int q = 0; q < 6; ++q) t[q] = block_sum(part[q], scratch);
    if (threadIdx.x == 0) {
        float c1 = t[0] / (fmaxf(sqrtf(t[1]), eps) * fmaxf(sqrtf(t[2]), eps));
        float c2 = t[3] / (fmaxf(sqrtf(t[4]), eps) * fmaxf(sqrtf(t[5]), eps));
        clip_loss[b] = 2.0f - c1 - c2;
    }
}

// k·∂cos(x, y)/∂x at one coordinate: k·(y/(max(‖x‖,ε)·max(‖y‖,ε)) − [‖x‖>ε]·cos·x/‖x‖²).
__device__ __forceinline__ float cgra_cos_grad(float x, float y, float nx, float ny, float c, float k, float eps) {
    float g = y / (fmaxf(nx, eps) * fmaxf(ny, eps));
    if (nx > eps) g -= c * x / (nx * nx);
    return k * g;
}

// Per clip b, with G = grad_loss[0]/B: coef[b] = [g_ā, g_v̄, g_ã, g_ṽ], the
// gradients of −G·(cos(ā, ṽ) + cos(v̄, ã)); alpha[b·tv + j] = V_j·g_ã and
// beta[b·ta + i] = A_i·g_ṽ.
// Grid: B blocks of 256 threads; dynamic shared memory 2·d·4 bytes.
KERNEL void __launch_bounds__(256) cgra_bwd_coef_f32(Buf<const float> ha, Buf<const float> hv, Buf<const float> pooled, Buf<const float> grad_loss, int batch, int ta, int tv, int d, float eps, Buf<float> coef, Buf<float> alpha, Buf<float> beta) {
    SHARED_ARRAY(float, scratch, 33);
    EXTERN_SHARED(float, smem);
    Buf<float> g_atil_s = smem;       // [d]
    Buf<float> g_vtil_s = smem + d;   // [d]
    int b = blockIdx.x, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    Buf<const float> p = pooled + (long long)b * 4 * d;
    float part[6] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    for (int k = threadIdx.x; k < d; k += blockDim.x) {
        float abar = p[k], vbar = p[d + k], atil = p[2 * d + k], vtil = p[3 * d + k];
        part[0] += abar * vtil;
        part[1] += abar * abar;
        part[2] += vtil * vtil;
        part[3] += vbar * atil;
        part[4] += vbar * vbar;
        part[5] += atil * atil;
    }
    float t[6];
    for (int q = 0; q < 6; ++q) t[q] = block_sum(part[q], scratch);
    float n_abar = sqrtf(t[1]), n_vtil = sqrtf(t[2]), n_vbar = sqrtf(t[4]), n_atil = sqrtf(t[5]);
    float c1 = t[0] / (fmaxf(n_abar, eps) * fmaxf(n_vtil, eps));
    float c2 = t[3] / (fmaxf(n_vbar, eps) * fmaxf(n_atil, eps));
    float k = -grad_loss[0] / (float)batch;
    Buf<float> out = coef + (long long)b * 4 * d;
    for (int e = threadIdx.x; e < d; e += blockDim.x) {
        float abar = p[e], vbar = p[d + e], atil = p[2 * d + e], vtil = p[3 * d + e];
        float g_atil = cgra_cos_grad(atil, vbar, n_atil, n_vbar, c2, k, eps);
        float g_vtil = cgra_cos_grad(vtil, abar, n_vtil, n_abar, c1, k, eps);
        out[e] = cgra_cos_grad(abar, vtil, n_abar, n_vtil, c1, k, eps);
        out[d + e] = cgra_cos_grad(vbar, atil, n_vbar, n_atil, c2, k, eps);
        out[2 * d + e] = g_atil;
        out[3 * d + e] = g_vtil;
        g_atil_s[e] = g_atil;
        g_vtil_s[e] = g_vtil;
    }
    __syncthreads();
    for (int j = warp; j < tv; j += 8) {
        float s = 0.0f;
        for (int e = lane; e < d; e += 32) s += hv[((long long)b * tv + j) * d + e] * g_atil_s[e];
        s = warp_sum(s);
        if (lane == 0) alpha[(long long)b * tv + j] = s;
    }
    for (int i = warp; i < ta; i += 8) {
        float s = 0.0f;
        for (int e = lane; e < d; e += 32) s += ha[((long long)b * ta + i) * d + e] * g_vtil_s[e];
        s = warp_sum(s);
        if (lane == 0) beta[(long long)b * ta + i] = s;
    }
}

// Adds one side's gradient into d_own. With S_rc the own×other logits,
// ∂S_rc = exp(S_rc − own_lse_r)·(oth_y1_c − own_x1_r)·s_own
//       + exp(S_rc − oth_lse_c)·(own_x2_r − oth_y2_c)·s_oth,
// ∂x̂_r = Σ_c ∂S_rc·x̂_other_c/τ, then back through x̂ = x / max(‖x‖, ε) and
// d_own_r += … + own_weight_r·coef[tilde] + coef[bar]/t_own.
//   own = ha: (own_lse, oth_lse) = (row_lse, col_lse), (x1, x2, y1, y2) = (rho, beta, alpha, kappa),
//             (s_own, s_oth) = (1/Ta, 1/Tv), own_weight = u, (bar, tilde) = (0, 3);
//   own = hv: (col_lse, row_lse), (kappa, alpha, beta, rho), (1/Tv, 1/Ta), w, (1, 2).
// Grid: (ceil(t_own/32), B) blocks of 256 threads; dynamic shared memory
// (32·d + 32·33)·4 bytes (a 32×d accumulator and the weight tile).
KERNEL void __launch_bounds__(256) cgra_bwd_f32(Buf<const float> own_all, Buf<const float> other_all, Buf<const float> own_sq_all, Buf<const float> other_sq_all, Buf<const float> own_lse_all, Buf<const float> oth_lse_all, Buf<const float> own_x1_all, Buf<const float> own_x2_all, Buf<const float> oth_y1_all, Buf<const float> oth_y2_all, Buf<const float> own_weight_all, Buf<const float> coef, int bar, int tilde, int t_own, int t_other, int d, float s_own, float s_oth, float inv_tau, float eps, Buf<float> d_own) {
    SHARED_ARRAY(float, own_s, TILE * TILE_LD);
    SHARED_ARRAY(float, other_s, TILE * TILE_LD);
    EXTERN_SHARED(float, smem);
    Buf<float> acc_s = smem;                     // [32][d]
    Buf<float> w_s = smem + (long long)TILE * d;  // [32][TILE_LD]
    int t = threadIdx.x, lane = t % 32, warp = t / 32, r0 = blockIdx.x * TILE, b = blockIdx.y;
    Buf<const float> own = own_all + (long long)b * t_own * d;
    Buf<const float> other = other_all + (long long)b * t_other * d;
    Buf<const float> own_sq = own_sq_all + (long long)b * t_own;
    Buf<const float> other_sq = other_sq_all + (long long)b * t_other;
    Buf<const float> oth_lse = oth_lse_all + (long long)b * t_other;
    Buf<const float> oth_y1 = oth_y1_all + (long long)b * t_other;
    Buf<const float> oth_y2 = oth_y2_all + (long long)b * t_other;
    for (int e = t; e < TILE * d; e += 256) acc_s[e] = 0.0f;
    float inv_own[4], own_lse[4], x1[4], x2[4], acc[4];
    cgra_own_inv(own_sq, t_own, r0, eps, inv_own);
    for (int j = 0; j < 4; ++j) {
        int r = r0 + warp + 8 * j;
        bool ok = r < t_own;
        long long at = (long long)b * t_own + r;
        own_lse[j] = ok ? own_lse_all[at] : 0.0f;
        x1[j] = ok ? own_x1_all[at] : 0.0f;
        x2[j] = ok ? own_x2_all[at] : 0.0f;
    }
    for (int c0 = 0; c0 < t_other; c0 += TILE) {
        int c = c0 + lane;
        bool ok_c = c < t_other;
        float inv_c = ok_c ? cgra_inv_norm(other_sq[c], eps) : 0.0f;
        float l_c = ok_c ? oth_lse[c] : 0.0f;
        float y1 = ok_c ? oth_y1[c] : 0.0f;
        float y2 = ok_c ? oth_y2[c] : 0.0f;
        cgra_logit_tile(own, t_own, r0, other, t_other, c0, d, inv_own, inv_c, inv_tau, own_s, other_s, acc);
        for (int j = 0; j < 4; ++j) {
            int r = r0 + warp + 8 * j;
            float ds = 0.0f;
            if (ok_c && r < t_own) {
                ds = expf(acc[j] - own_lse[j]) * (y1 - x1[j]) * s_own + expf(acc[j] - l_c) * (x2[j] - y2) * s_oth;
            }
            // Weight of the raw other row c: ∂S_rc / τ / max(‖other_c‖, ε).
            w_s[(warp + 8 * j) * TILE_LD + lane] = ds * inv_tau * inv_c;
        }
        __syncthreads();
        int cols = t_other - c0 < TILE ? t_other - c0 : TILE;
        for (int k = lane; k < d; k += 32) {
            float a[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            for (int cc = 0; cc < cols; ++cc) {
                float o = other[(long long)(c0 + cc) * d + k];
                for (int j = 0; j < 4; ++j) a[j] += w_s[(warp + 8 * j) * TILE_LD + cc] * o;
            }
            for (int j = 0; j < 4; ++j) acc_s[(warp + 8 * j) * d + k] += a[j];
        }
        __syncthreads();
    }
    Buf<const float> g_bar = coef + ((long long)b * 4 + bar) * d;
    Buf<const float> g_tilde = coef + ((long long)b * 4 + tilde) * d;
    float mean = 1.0f / (float)t_own;
    for (int j = 0; j < 4; ++j) {
        int r = r0 + warp + 8 * j;
        if (r >= t_own) continue;  // warp-uniform; no barrier follows
        Buf<const float> x = own + (long long)r * d;
        Buf<const float> dn = acc_s + (long long)(warp + 8 * j) * d;
        float norm = sqrtf(own_sq[r]);
        float inv = inv_own[j];
        float proj = 0.0f;
        if (norm > eps) {
            for (int k = lane; k < d; k += 32) proj += x[k] * inv * dn[k];
            proj = warp_sum(proj);
        }
        float wt = own_weight_all[(long long)b * t_own + r];
        Buf<float> out = d_own + ((long long)b * t_own + r) * d;
        for (int k = lane; k < d; k += 32) {
            float n = x[k] * inv;
            out[k] += (dn[k] - n * proj) * inv + wt * g_tilde[k] + mean * g_bar[k];
        }
    }
}
