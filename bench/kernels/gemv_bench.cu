// Matrix-vector kernel variants of src/SpecDecode.Tree/Kernels/decode_step.cu on Llama-3.1-8B shapes, timed alone
// (CUDA events, median of 40, rotating over enough weight copies that L2 holds none): which batch size (U), way of
// reading x (XM) and block size stream the weights fastest. Issue 6, goal 1; run on the GPU machine:
//   nvcc -O3 -std=c++17 -arch=sm_90 -o /tmp/gemv_bench bench/kernels/gemv_bench.cu && /tmp/gemv_bench
#include "../../src/SpecDecode.Tree/Kernels/decode_step.cu"
#include <cstdio>
#include <vector>
#include <algorithm>

#define CHECK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e_)); exit(1); } } while (0)

template <int MODE, int U, int XM> __global__ void __launch_bounds__(512) bench_gemv(GemvParams p) { gemv<MODE, U, XM>(p); }

__global__ void fill(bf16* p, size_t n, unsigned seed)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    {
        unsigned h = (unsigned)i * 2654435761u ^ seed;
        h ^= h >> 13; h *= 0x5bd1e995u; h ^= h >> 15;
        p[i] = __float2bfloat16_rn(((h & 0xffff) / 65536.0f - 0.5f) * 0.04f);
    }
}

struct Shape { const char* name; int rows, k, mode; };

template <int MODE, int U, int XM>
float run(const Shape& s, int threads, bool finisher, std::vector<bf16*>& w, bf16* x, bf16* y, bf16* res, bf16* norm, bf16* normed, unsigned* counter, unsigned long long* amax)
{
    GemvParams p = {};
    p.x = x; p.k = s.k; p.items = MODE == 2 ? s.rows / 2 : s.rows; p.y = y; p.residual = MODE == 0 ? res : nullptr;
    p.norm_w = norm; p.normed = finisher ? normed : nullptr; p.eps = 1e-5f; p.counter = counter; p.argmax = amax;
    int warps = threads / WARP, blocks = (p.items + warps - 1) / warps;
    size_t smem = XM == 1 ? (size_t)s.k * 2 : 0;
    if (smem > 48 * 1024) CHECK(cudaFuncSetAttribute(bench_gemv<MODE, U, XM>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    std::vector<float> t;
    cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
    for (int r = 0; r < 45; r++)
    {
        p.w0 = w[r % w.size()];
        p.w1 = p.w0 + (size_t)(s.rows / 2) * s.k;
        cudaEventRecord(a);
        bench_gemv<MODE, U, XM><<<blocks, threads, smem>>>(p);
        cudaEventRecord(b);
        CHECK(cudaEventSynchronize(b));
        float ms; cudaEventElapsedTime(&ms, a, b);
        if (r >= 5) t.push_back(ms * 1000);
    }
    CHECK(cudaGetLastError());
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

int main()
{
    Shape shapes[] = {{"wo 4096x4096", 4096, 4096, 0}, {"down 4096x14336", 4096, 14336, 0}, {"gate/up 28672x4096", 28672, 4096, 2},
                      {"head 128256x4096", 128256, 4096, 3}};
    bf16 *x, *y, *res, *norm, *normed; unsigned* counter; unsigned long long* amax;
    CHECK(cudaMalloc(&x, 32768 * 2)); CHECK(cudaMalloc(&y, 200000 * 2)); CHECK(cudaMalloc(&res, 32768 * 2));
    CHECK(cudaMalloc(&norm, 32768 * 2)); CHECK(cudaMalloc(&normed, 32768 * 2)); CHECK(cudaMalloc(&counter, 4)); CHECK(cudaMalloc(&amax, 8));
    CHECK(cudaMemset(counter, 0, 4));
    fill<<<64, 256>>>(x, 32768, 1); fill<<<64, 256>>>(res, 32768, 2); fill<<<64, 256>>>(norm, 32768, 3);
    // copy bandwidth as the yardstick
    bf16 *ca, *cb; size_t cn = (size_t)1 << 30; CHECK(cudaMalloc(&ca, cn * 2)); CHECK(cudaMalloc(&cb, cn * 2));
    cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
    cudaMemcpy(cb, ca, cn * 2, cudaMemcpyDeviceToDevice); cudaEventRecord(a);
    for (int i = 0; i < 5; i++) cudaMemcpy(cb, ca, cn * 2, cudaMemcpyDeviceToDevice);
    cudaEventRecord(b); cudaEventSynchronize(b); float cms; cudaEventElapsedTime(&cms, a, b);
    double copy = 2.0 * cn * 2 * 5 / (cms / 1e3) / 1e9;
    cudaFree(ca); cudaFree(cb);
    printf("copy %.0f GB/s\n", copy);
    for (const Shape& s : shapes)
    {
        size_t bytes = (size_t)s.rows * s.k * 2;
        int copies = (int)std::max<size_t>(2, (200ull << 20) / bytes + 1);
        std::vector<bf16*> w(copies);
        for (auto& p : w) { CHECK(cudaMalloc(&p, bytes)); fill<<<1024, 256>>>(p, bytes / 2, 7); }
        CHECK(cudaDeviceSynchronize());
        auto report = [&](const char* v, float us) { printf("%-20s %-34s %8.2f us %6.0f GB/s (%.0f%% of copy)\n", s.name, v, us, bytes / us / 1e3, 100.0 * bytes / us / 1e3 / copy); };
        if (s.mode == 0)
        {
            report("U8 ldcg 128t fin", run<0, 8, 0>(s, 128, true, w, x, y, res, norm, normed, counter, amax));
            report("U8 ldcg 128t", run<0, 8, 0>(s, 128, false, w, x, y, res, norm, normed, counter, amax));
            report("U8 ldg 128t", run<0, 8, 2>(s, 128, false, w, x, y, res, norm, normed, counter, amax));
            report("U8 smem 128t", run<0, 8, 1>(s, 128, false, w, x, y, res, norm, normed, counter, amax));
            report("U8 smem 256t", run<0, 8, 1>(s, 256, false, w, x, y, res, norm, normed, counter, amax));
            report("U16 ldcg 128t", run<0, 16, 0>(s, 128, false, w, x, y, res, norm, normed, counter, amax));
            report("U16 smem 256t", run<0, 16, 1>(s, 256, false, w, x, y, res, norm, normed, counter, amax));
            report("U4 ldcg 64t", run<0, 4, 0>(s, 64, false, w, x, y, res, norm, normed, counter, amax));
            report("U4 smem 512t", run<0, 4, 1>(s, 512, false, w, x, y, res, norm, normed, counter, amax));
            report("U8 ldcg 32t", run<0, 8, 0>(s, 32, false, w, x, y, res, norm, normed, counter, amax));
        }
        else if (s.mode == 2)
        {
            report("U4 ldcg 128t", run<2, 4, 0>(s, 128, false, w, x, y, res, norm, normed, counter, amax));
            report("U4 smem 128t", run<2, 4, 1>(s, 128, false, w, x, y, res, norm, normed, counter, amax));
            report("U8 ldcg 128t", run<2, 8, 0>(s, 128, false, w, x, y, res, norm, normed, counter, amax));
            report("U4 ldg 128t", run<2, 4, 2>(s, 128, false, w, x, y, res, norm, normed, counter, amax));
        }
        else
        {
            report("U8 ldcg 128t", run<3, 8, 0>(s, 128, false, w, x, y, res, norm, normed, counter, amax));
            report("U8 smem 128t", run<3, 8, 1>(s, 128, false, w, x, y, res, norm, normed, counter, amax));
            report("U8 ldg 128t", run<3, 8, 2>(s, 128, false, w, x, y, res, norm, normed, counter, amax));
            report("U8 smem 256t", run<3, 8, 1>(s, 256, false, w, x, y, res, norm, normed, counter, amax));
        }
        for (auto p : w) cudaFree(p);
    }
    return 0;
}
