// Memory-pattern microbenchmark for the tree products (issue 6): how fast can 224 blocks of 128 threads (the gate/up
// product's grid on an H100) stream a 235 MB weight matrix into shared memory through four 16 KB cp.async stages, when
// each stage reads (a) 128 bytes from each of 128 rows 8 KB apart (the products' layout today), (b) the same with the
// L2::256B hint, (c) 256 bytes from each of 64 rows, (d) 512 bytes from each of 32 rows, (e) one contiguous 16 KB run
// (weights packed per tile and stage). No arithmetic: the stages are only waited for.
//   nvcc -O3 -std=c++17 -arch=sm_90 -o /tmp/sp bench/kernels/stream_pattern_bench.cu && /tmp/sp
#include <cstdio>
#include <cstdint>
#include <cuda_runtime.h>

constexpr int THREADS = 128, STAGES = 4, STAGE_BYTES = 16384;
constexpr long long ROW_BYTES = 8192;                  // a weight row: 4096 bf16
constexpr int BLOCKS = 224, ROWS_PER_BLOCK = 128;      // 224 tiles of 128 rows: 28,672 rows, 235 MB

template <bool HINT> __device__ __forceinline__ void copy16(void* s, const void* g)
{
    unsigned a = (unsigned)__cvta_generic_to_shared(s);
    if (HINT) asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16;" ::"r"(a), "l"(g) : "memory");
    else asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(a), "l"(g) : "memory");
}

// SEG: bytes read per row per stage (128, 256, 512) or 0 for one contiguous run per stage
template <int SEG, bool HINT, int XB = 0> __global__ void __launch_bounds__(THREADS) stream(const char* w, int* out, const char* x)
{
    extern __shared__ __align__(16) char smem[];
    int tid = threadIdx.x;
    const char* base = w + (long long)blockIdx.x * ROWS_PER_BLOCK * ROW_BYTES;
    constexpr int steps = ROWS_PER_BLOCK * ROW_BYTES / STAGE_BYTES;   // 64 stages of 16 KB: 1 MB per block
    auto issue = [&](int s)
    {
        char* stage = smem + (s % STAGES) * STAGE_BYTES;
        for (int i = tid; i < STAGE_BYTES / 16; i += THREADS)
        {
            const char* g;
            if constexpr (SEG == 0) g = base + (long long)s * STAGE_BYTES + i * 16;
            else
            {
                // stage s covers rows r0 .. r0 + rows - 1 at byte column col × SEG (rows per stage = STAGE_BYTES / SEG)
                constexpr int rows = STAGE_BYTES / SEG, groups = ROWS_PER_BLOCK / rows;
                int col = s / groups, r0 = (s % groups) * rows;
                int row = r0 + i / (SEG / 16), piece = i % (SEG / 16);
                g = base + (long long)row * ROW_BYTES + (long long)col * SEG + piece * 16;
            }
            copy16<HINT>(stage + i * 16, g);
        }
        // XB bytes of the step's input rows (the same 512 KB for every block, so they come from L2), as the products
        // stage them beside the weights
        for (int i = tid; i < XB / 16; i += THREADS)
            copy16<false>(smem + STAGES * STAGE_BYTES + (s % STAGES) * XB + i * 16, x + (long long)(i / 8) * ROW_BYTES + (long long)(s % 64) * 128 + (i % 8) * 16);
        asm volatile("cp.async.commit_group;" ::: "memory");
    };
    for (int s = 0; s < STAGES - 1; s++) issue(s);
    int sum = 0;
    for (int s = 0; s < steps; s++)
    {
        asm volatile("cp.async.wait_group 2;" ::: "memory");
        __syncthreads();
        sum += smem[(s % STAGES) * STAGE_BYTES + tid];
        __syncthreads();
        if (s + STAGES - 1 < steps) issue(s + STAGES - 1);
        else asm volatile("cp.async.commit_group;" ::: "memory");
    }
    if (sum == 12345) out[0] = sum;
}

template <int SEG, bool HINT, int XB = 0> void run(const char* name, const char* w, int* out, const char* x = nullptr)
{
    int shared = STAGES * (STAGE_BYTES + XB);
    cudaFuncSetAttribute(stream<SEG, HINT, XB>, cudaFuncAttributeMaxDynamicSharedMemorySize, shared);
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    for (int i = 0; i < 3; i++) stream<SEG, HINT, XB><<<BLOCKS, THREADS, shared>>>(w, out, x);
    const int reps = 20;
    cudaEventRecord(a);
    for (int i = 0; i < reps; i++) stream<SEG, HINT, XB><<<BLOCKS, THREADS, shared>>>(w, out, x);
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms;
    cudaEventElapsedTime(&ms, a, b);
    double bytes = (double)BLOCKS * ROWS_PER_BLOCK * ROW_BYTES, us = ms * 1000 / reps;
    printf("%-52s %8.1f us  %6.0f GB/s of weights\n", name, us, bytes / us / 1e3);
}

int main()
{
    size_t bytes = (size_t)BLOCKS * ROWS_PER_BLOCK * ROW_BYTES;
    char* w;
    int* out;
    cudaMalloc(&w, bytes + 4096);
    cudaMalloc(&out, 4);
    cudaMemset(w, 1, bytes);
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    printf("%s, %zu MB per pass, %d blocks x %d threads, %d stages of %d bytes\n", prop.name, bytes >> 20, BLOCKS, THREADS, STAGES, STAGE_BYTES);
    {
        // reference: a device-to-device copy of the same bytes (read + write)
        char* copy;
        cudaMalloc(&copy, bytes);
        cudaEvent_t a, b;
        cudaEventCreate(&a);
        cudaEventCreate(&b);
        cudaMemcpy(copy, w, bytes, cudaMemcpyDeviceToDevice);
        cudaEventRecord(a);
        for (int i = 0; i < 10; i++) cudaMemcpy(copy, w, bytes, cudaMemcpyDeviceToDevice);
        cudaEventRecord(b);
        cudaEventSynchronize(b);
        float ms;
        cudaEventElapsedTime(&ms, a, b);
        printf("%-44s %8.1f us  %6.0f GB/s (read + write)\n", "cudaMemcpy device to device", ms * 100, 2.0 * bytes / (ms * 100) / 1e3);
        cudaFree(copy);
    }
    char* x;
    cudaMalloc(&x, 64 * ROW_BYTES);
    cudaMemset(x, 2, 64 * ROW_BYTES);
    for (int round = 0; round < 2; round++)
    {
        run<128, true, 1024>("today's pattern + 1 KB input rows per stage (8)", w, out, x);
        run<128, true, 4096>("today's pattern + 4 KB input rows per stage (32)", w, out, x);
        run<128, true, 8192>("today's pattern + 8 KB input rows per stage (64)", w, out, x);
        run<0, true, 8192>("packed + 8 KB input rows per stage (64)", w, out, x);
        run<128, false>("128 B per row per stage (today)", w, out);
        run<128, true>("128 B per row per stage, L2::256B (today)", w, out);
        run<256, false>("256 B per row per stage", w, out);
        run<256, true>("256 B per row per stage, L2::256B", w, out);
        run<512, true>("512 B per row per stage, L2::256B", w, out);
        run<0, false>("one contiguous 16 KB run per stage (packed)", w, out);
        run<0, true>("one contiguous 16 KB run per stage, L2::256B", w, out);
    }
    cudaError_t e = cudaGetLastError();
    printf("%s\n", e == cudaSuccess ? "ok" : cudaGetErrorString(e));
    return e == cudaSuccess ? 0 : 1;
}
