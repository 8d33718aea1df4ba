// Token layout (TokenKernels) on row-major [batch, tokens, width] tensors:
// mean pooling over tokens and its backward, copies of token ranges (concat,
// narrow) and the tubelet patchify / unpatchify scatter. Every kernel is a
// grid-stride loop: any 1-D grid of 256-thread blocks covers any size
// (suggested: min(ceil(n/256), 65535) blocks for n output elements).
#include "common.cuh"

// out[b, c] = mean_t x[b, t, c] (overwritten), summed in f64 in token order
// (the CPU backend's order and precision).
// Grid: any number of blocks of 256 threads (grid-stride over batch·width).
KERNEL void __launch_bounds__(256) mean_tokens_f32(Buf<const float> x, int batch, int tokens, int width, Buf<float> out) {
    long long n = (long long)batch * width;
    double inv = 1.0 / (double)tokens;
    for (long long i = grid_first(); i < n; i += grid_step()) {
        long long b = i / width, c = i % width;
        Buf<const float> col = x + b * tokens * width + c;
        double acc = 0.0;
        for (int t = 0; t < tokens; ++t) acc += (double)col[(long long)t * width];
        out[i] = (float)(acc * inv);
    }
}

// grad_x[b, t, c] += grad_out[b, c] / tokens.
// Grid: any number of blocks of 256 threads (grid-stride over batch·tokens·width).
KERNEL void __launch_bounds__(256) mean_tokens_bwd_f32(Buf<const float> grad_out, int batch, int tokens, int width, Buf<float> grad_x) {
    long long n = (long long)batch * tokens * width;
    float inv = 1.0f / (float)tokens;
    for (long long i = grid_first(); i < n; i += grid_step()) {
        long long b = i / ((long long)tokens * width), c = i % width;
        grad_x[i] += grad_out[b * width + c] * inv;
    }
}

// For every batch entry b, tokens src_start..src_start+len of src
// [batch, src_tokens, width] go to tokens dst_start..dst_start+len of dst
// [batch, dst_tokens, width]: copied, or added when accumulate ≠ 0. The
// rest of dst is untouched.
// Grid: any number of blocks of 256 threads (grid-stride over batch·len·width).
KERNEL void __launch_bounds__(256) copy_tokens_f32(Buf<const float> src, int batch, int width, int src_tokens, int src_start, int dst_tokens, int dst_start, int len, int accumulate, Buf<float> dst) {
    long long span = (long long)len * width, n = (long long)batch * span;
    for (long long i = grid_first(); i < n; i += grid_step()) {
        long long b = i / span, k = i % span;
        float v = src[(b * src_tokens + src_start) * width + k];
        long long at = (b * dst_tokens + dst_start) * width + k;
        if (accumulate)
            dst[at] += v;
        else
            dst[at] = v;
    }
}

/// Index in the patches tensor [batch, num_patches, patch_len] of clip
/// element i of [batch, frames, channels, height, width]: patches in grid
/// order (time, row, column), each flattened as (frame, channel, row, column).
__device__ __forceinline__ long long patch_index(long long i, int frames, int channels, int height, int width,
                                                 int tubelet, int patch) {
    int xc = (int)(i % width);
    long long q = i / width;
    int y = (int)(q % height);
    q /= height;
    int c = (int)(q % channels);
    q /= channels;
    int f = (int)(q % frames);
    long long b = q / frames;
    int grid_r = height / patch, grid_c = width / patch;
    long long num_patches = (long long)(frames / tubelet) * grid_r * grid_c;
    int patch_len = tubelet * channels * patch * patch;
    long long p = b * num_patches + ((long long)(f / tubelet) * grid_r + y / patch) * grid_c + xc / patch;
    int off = (((f % tubelet) * channels + c) * patch + y % patch) * patch + xc % patch;
    return p * patch_len + off;
}

// out = patchify(x) (overwritten): clip [batch, frames, channels, height,
// width] to patches [batch, num_patches, patch_len]; every extent a
// multiple of its patch size (PatchSpec::validate). A bijection, so each
// thread reads one clip element and writes its patch slot.
// Grid: any number of blocks of 256 threads (grid-stride over the numel).
KERNEL void __launch_bounds__(256) patchify_f32(Buf<const float> x, int batch, int frames, int channels, int height, int width, int tubelet, int patch, Buf<float> out) {
    long long n = (long long)batch * frames * channels * height * width;
    for (long long i = grid_first(); i < n; i += grid_step())
        out[patch_index(i, frames, channels, height, width, tubelet, patch)] = x[i];
}

// x += unpatchify(patches): the inverse scatter of patchify_f32, added into
// the clip (patchify's backward). Each thread owns one clip element.
// Grid: any number of blocks of 256 threads (grid-stride over the numel).
KERNEL void __launch_bounds__(256) unpatchify_add_f32(Buf<const float> patches, int batch, int frames, int channels, int height, int width, int tubelet, int patch, Buf<float> x) {
    long long n = (long long)batch * frames * channels * height * width;
    for (long long i = grid_first(); i < n; i += grid_step())
        x[i] += patches[patch_index(i, frames, channels, height, width, tubelet, patch)];
}
