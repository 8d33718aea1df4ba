// A stand-in for cuBLAS (libcublas.so) over the emulated driver: handles,
// streams, and the two products diccae-engine calls (cublasSgemm_v2 and
// cublasSgemmStridedBatched), column-major as cuBLAS defines them. It checks
// what cuBLAS checks (sizes, leading dimensions, the operation) and, beyond
// that, that every matrix lies inside a live allocation of the emulated
// driver, so a wrong stride or leading dimension in the engine is an error
// here instead of a silent read of a neighbouring buffer. Products accumulate
// in double; with beta = 0, C is written without being read (as cuBLAS does).
#include <cstdint>
#include <string>

// Exported by the stand-in driver (driver_api.cpp), which this library links.
extern "C" int diccae_emu_device_extent(uint64_t ptr, uint64_t* bytes);

namespace {

using Status = int;
constexpr Status OK = 0;
constexpr Status NOT_INITIALIZED = 1;
constexpr Status INVALID_VALUE = 7;

struct Handle {
    void* stream = nullptr;
};

/// Whether a `rows` × `cols` column-major matrix with leading dimension `ld`
/// at `p` lies inside one live allocation.
bool inside(const float* p, long long rows, long long cols, long long ld) {
    if (rows == 0 || cols == 0) return true;
    uint64_t room = 0;
    if (!diccae_emu_device_extent(reinterpret_cast<uintptr_t>(p), &room)) return false;
    uint64_t need = ((uint64_t)(cols - 1) * (uint64_t)ld + (uint64_t)rows) * sizeof(float);
    return need <= room;
}

Status gemm_one(int ta, int tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
                float beta, float* c, int ldc) {
    bool a_t = ta != 0, b_t = tb != 0;
    long long a_rows = a_t ? k : m, a_cols = a_t ? m : k;
    long long b_rows = b_t ? n : k, b_cols = b_t ? k : n;
    if (!inside(a, a_rows, a_cols, lda) || !inside(b, b_rows, b_cols, ldb) || !inside(c, m, n, ldc)) {
        return INVALID_VALUE;
    }
    for (long long j = 0; j < n; ++j) {
        for (long long i = 0; i < m; ++i) {
            double acc = 0.0;
            for (long long l = 0; l < k; ++l) {
                double av = a_t ? a[l + i * lda] : a[i + l * lda];
                double bv = b_t ? b[j + l * ldb] : b[l + j * ldb];
                acc += av * bv;
            }
            float& out = c[i + j * ldc];
            double prior = beta == 0.0f ? 0.0 : (double)beta * out;
            out = (float)((double)alpha * acc + prior);
        }
    }
    return OK;
}

Status check(void* h, int ta, int tb, int m, int n, int k, const float* alpha, int lda, int ldb, const float* beta,
             int ldc) {
    if (!h) return NOT_INITIALIZED;
    if (ta < 0 || ta > 2 || tb < 0 || tb > 2 || m < 0 || n < 0 || k < 0 || !alpha || !beta) return INVALID_VALUE;
    auto at_least = [](int v) { return v < 1 ? 1 : v; };
    if (lda < at_least(ta ? k : m) || ldb < at_least(tb ? n : k) || ldc < at_least(m)) return INVALID_VALUE;
    return OK;
}

}  // namespace

#define API extern "C" __attribute__((visibility("default")))

API Status cublasCreate_v2(void** handle) {
    if (!handle) return INVALID_VALUE;
    *handle = new Handle();
    return OK;
}

API Status cublasDestroy_v2(void* handle) {
    if (!handle) return NOT_INITIALIZED;
    delete static_cast<Handle*>(handle);
    return OK;
}

API Status cublasSetStream_v2(void* handle, void* stream) {
    if (!handle) return NOT_INITIALIZED;
    static_cast<Handle*>(handle)->stream = stream;
    return OK;
}

API Status cublasGetStream_v2(void* handle, void** stream) {
    if (!handle) return NOT_INITIALIZED;
    if (!stream) return INVALID_VALUE;
    *stream = static_cast<Handle*>(handle)->stream;
    return OK;
}

API Status cublasSgemm_v2(void* handle, int ta, int tb, int m, int n, int k, const float* alpha, const float* a,
                          int lda, const float* b, int ldb, const float* beta, float* c, int ldc) {
    if (Status s = check(handle, ta, tb, m, n, k, alpha, lda, ldb, beta, ldc)) return s;
    return gemm_one(ta, tb, m, n, k, *alpha, a, lda, b, ldb, *beta, c, ldc);
}

API Status cublasSgemmStridedBatched(void* handle, int ta, int tb, int m, int n, int k, const float* alpha,
                                     const float* a, int lda, long long stride_a, const float* b, int ldb,
                                     long long stride_b, const float* beta, float* c, int ldc, long long stride_c,
                                     int batches) {
    if (Status s = check(handle, ta, tb, m, n, k, alpha, lda, ldb, beta, ldc)) return s;
    if (batches < 0) return INVALID_VALUE;
    for (int i = 0; i < batches; ++i) {
        Status s = gemm_one(ta, tb, m, n, k, *alpha, a + (long long)i * stride_a, lda, b + (long long)i * stride_b,
                            ldb, *beta, c + (long long)i * stride_c, ldc);
        if (s != OK) return s;
    }
    return OK;
}
