// The batch-1 decode step of a Llama-family decoder in five kernels per layer, for the CUDA-graph path of
// SpecDecode.Tree (TargetModel.Kernels.cs). Built into decode_step.fatbin by build.sh (needs nvcc), which the assembly
// embeds and loads through the CUDA driver API; see docs/target-model.md, "Decode-step kernels".
//
// Numerics follow what the TorchScript layers compute in bfloat16, op for op, wherever a value is rounded there:
// RMSNorm as h = float(x) * rsqrt(mean(x^2) + eps), bf16(w * bf16(h)); each projection rounded to bf16 before the
// residual add, the bias add, silu and the rotary products; rotary as bf16(bf16(x * cos) + bf16(rotate_half(x) * sin))
// with cos and sin rounded to bf16; the argmax over bf16 logits, lowest index on a tie. What differs: the order of
// the float32 sums (a matrix-vector product here, cuBLAS there), and attention, which is computed here entirely in
// float32 (scores, softmax and the product with V) where SDPA rounds the probabilities to bf16.
// Every reduction has a fixed order, so a step gives the same bits on every run.

#include <cuda_bf16.h>
#include <stdint.h>

typedef __nv_bfloat16 bf16;

#define WARP 32
#define NORM_THREADS 512
#define ATTN_THREADS 256
#define MAX_GROUPS 8       // query heads per key/value head

__device__ __forceinline__ float round_bf16(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }
__device__ __forceinline__ float lo_bf16(uint32_t v) { return __uint_as_float(v << 16); }
__device__ __forceinline__ float hi_bf16(uint32_t v) { return __uint_as_float(v & 0xffff0000u); }

__device__ __forceinline__ float dot8(uint4 w, uint4 x, float acc)
{
    acc = fmaf(lo_bf16(w.x), lo_bf16(x.x), acc); acc = fmaf(hi_bf16(w.x), hi_bf16(x.x), acc);
    acc = fmaf(lo_bf16(w.y), lo_bf16(x.y), acc); acc = fmaf(hi_bf16(w.y), hi_bf16(x.y), acc);
    acc = fmaf(lo_bf16(w.z), lo_bf16(x.z), acc); acc = fmaf(hi_bf16(w.z), hi_bf16(x.z), acc);
    acc = fmaf(lo_bf16(w.w), lo_bf16(x.w), acc); acc = fmaf(hi_bf16(w.w), hi_bf16(x.w), acc);
    return acc;
}

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = WARP / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
    for (int o = WARP / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Programmatic dependent launch (sm_90): a kernel launched with it may start while the previous kernel finishes. Every
// thread calls grid_wait() before it reads what the previous kernels wrote or writes what they read; work that needs
// neither (streaming this kernel's weights) goes before it. grid_trigger() lets the next kernel start launching. Without
// the launch attribute, or below sm_90, both do nothing.
__device__ __forceinline__ void grid_wait()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void grid_trigger()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// HF Llama's RMSNorm of x[k] (k a multiple of 8) into out (bf16), by one block, in a fixed order; 16-byte loads, all
// of a thread's loads issued before their use.
__device__ void rms_norm_block(const bf16* x, const bf16* __restrict__ w, float eps, int k, bf16* out)
{
    __shared__ float partial[NORM_THREADS / WARP];
    __shared__ float scale;
    const uint4* x4 = reinterpret_cast<const uint4*>(x);
    const uint4* w4 = reinterpret_cast<const uint4*>(w);
    uint4* o4 = reinterpret_cast<uint4*>(out);
    int n = k / 8;
    float ss = 0.f;
#pragma unroll 4
    for (int i = threadIdx.x; i < n; i += blockDim.x)
    {
        uint4 v = __ldcg(x4 + i);
        uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int j = 0; j < 4; j++)
        {
            float a = lo_bf16(u[j]), b = hi_bf16(u[j]);
            ss = fmaf(a, a, ss);
            ss = fmaf(b, b, ss);
        }
    }
    ss = warp_sum(ss);
    if ((threadIdx.x & (WARP - 1)) == 0) partial[threadIdx.x / WARP] = ss;
    __syncthreads();
    if (threadIdx.x == 0)
    {
        float total = 0.f;
        for (int i = 0; i < (int)(blockDim.x / WARP); i++) total += partial[i];
        scale = rsqrtf(total / (float)k + eps);
    }
    __syncthreads();
    float r = scale;
#pragma unroll 4
    for (int i = threadIdx.x; i < n; i += blockDim.x)
    {
        uint4 v = __ldcg(x4 + i), g = __ldg(w4 + i);
        uint32_t u[4] = {v.x, v.y, v.z, v.w}, wu[4] = {g.x, g.y, g.z, g.w}, o[4];
#pragma unroll
        for (int j = 0; j < 4; j++)
        {
            bf16 lo = __float2bfloat16_rn(lo_bf16(wu[j]) * round_bf16(lo_bf16(u[j]) * r));
            bf16 hi = __float2bfloat16_rn(hi_bf16(wu[j]) * round_bf16(hi_bf16(u[j]) * r));
            o[j] = (uint32_t)__bfloat16_as_ushort(lo) | ((uint32_t)__bfloat16_as_ushort(hi) << 16);
        }
        o4[i] = make_uint4(o[0], o[1], o[2], o[3]);
    }
}

// The step's first kernel (one block): hidden = embed[token], normed = RMSNorm(hidden), argmax slot cleared.
extern "C" __global__ void embed_norm(const int64_t* __restrict__ state, const bf16* __restrict__ embed, const bf16* __restrict__ norm,
                                      float eps, int k, bf16* hidden, bf16* normed, unsigned long long* argmax)
{
    grid_wait();
    grid_trigger();
    const uint4* row = reinterpret_cast<const uint4*>(embed + state[0] * (int64_t)k);
    for (int i = threadIdx.x; i < k / 8; i += blockDim.x) reinterpret_cast<uint4*>(hidden)[i] = row[i];
    if (threadIdx.x == 0) *argmax = 0ull;
    __syncthreads();
    rms_norm_block(hidden, norm, eps, k, normed);
}

struct GemvParams
{
    const bf16* x;          // input vector [k], already normalised where the layer normalises
    int k;
    int items;              // output items (rows, row pairs)
    const bf16* w0;         // row blocks: q|gate|plain rows
    const bf16* w1;         // k|up rows
    const bf16* w2;         // v rows
    const bf16* b0;         // biases of w0..w2 rows, or null
    const bf16* b1;
    const bf16* b2;
    bf16* y;                // mode 0: output rows; mode 1: rotated q; mode 2: silu(gate) * up; mode 3: logits (or null)
    const bf16* residual;   // mode 0: added to each output row, or null
    // mode 0 finisher: the last block RMS-normalises the finished y into normed with norm_w (null: no finisher)
    const bf16* norm_w;
    bf16* normed;
    float eps;
    unsigned int* counter;  // zero between launches; the finisher resets it
    // mode 1: rotary and the cache write
    const int64_t* state;   // [token, cached length]: the new token's position is state[1]
    const float* cos;       // [positions, head_dim] float32
    const float* sin;
    bf16* k_cache;          // [kv heads, capacity, head_dim] of this layer and slot (head stride below)
    bf16* v_cache;
    int64_t head_stride;
    int heads;
    int kv_heads;
    int head_dim;
    // mode 3
    unsigned long long* argmax;
};

// One kernel, four jobs (mode is a launch constant): 0 plain rows (+ residual, + finisher), 1 q/k/v with rotary and the
// KV-cache write, 2 gate/up with silu(gate) * up, 3 the output head with the argmax. A warp takes one item: one row, or
// two rows read together (a rotary pair of q or k, or gate and up). A warp loads its first weights before grid_wait(),
// x after it, and x always through L2 (ld.global.cg): x changes every layer, and with dependent launch an SM's L1 may
// still hold the previous layer's lines (reading it through the read-only path gave wrong results).
// XM: how a warp reads x: 0 through L2 (ld.global.cg), 1 from shared memory (the block stages x first; launch with
// k * 2 bytes of dynamic shared memory), 2 through the read-only cache (not safe with dependent launch: kernel
// benchmarks only). U: 16-byte weight vectors per row and batch.
template <int XM>
__device__ __forceinline__ uint4 load_x(const uint4* x4, const uint4* sx, int v)
{
    return XM == 0 ? __ldcg(x4 + v) : XM == 1 ? sx[v] : __ldg(x4 + v);
}

template <int MODE, int U = (MODE == 0 || MODE == 3 ? 8 : 4), int XM = 0>
__device__ void gemv(const GemvParams& p)
{
    extern __shared__ uint4 staged_x[];
    int lane = threadIdx.x & (WARP - 1);
    int item = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    bool active = item < p.items;
    int64_t k = p.k;
    int n = p.k / 8;
    const bf16* ra = nullptr;
    const bf16* rb = nullptr;
    // mode 1 bookkeeping
    int half = p.head_dim / 2, pairs = (p.heads + p.kv_heads) * half, head = 0, d = 0;
    if (active)
    {
        if (MODE == 0 || MODE == 3)
        {
            ra = p.w0 + item * k;
        }
        else if (MODE == 2)
        {
            ra = p.w0 + item * k;
            rb = p.w1 + item * k;
        }
        else if (item < pairs)
        {
            head = item / half;
            d = item % half;
            const bf16* w = head < p.heads ? p.w0 + (int64_t)head * p.head_dim * k : p.w1 + (int64_t)(head - p.heads) * p.head_dim * k;
            ra = w + d * k;
            rb = w + (d + half) * k;
        }
        else
        {
            ra = p.w2 + (item - pairs) * k;
        }
    }
    const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
    const uint4* a4 = reinterpret_cast<const uint4*>(ra);
    const uint4* b4 = reinterpret_cast<const uint4*>(rb);
    const uint4* x4 = reinterpret_cast<const uint4*>(p.x);
    uint4 wa[U], wb[U], xv[U];
    if (active)
    {
#pragma unroll
        for (int j = 0; j < U; j++) wa[j] = lane + j * WARP < n ? __ldcs(a4 + lane + j * WARP) : zero;
        if (rb != nullptr)
        {
#pragma unroll
            for (int j = 0; j < U; j++) wb[j] = lane + j * WARP < n ? __ldcs(b4 + lane + j * WARP) : zero;
        }
    }
    grid_wait();
    grid_trigger();
    if (XM == 1)
    {
        for (int v = threadIdx.x; v < n; v += blockDim.x) staged_x[v] = __ldcg(x4 + v);
        __syncthreads();
    }
    float acc_a = 0.f, acc_b = 0.f;
    if (active)
    {
        float sa[U], sb[U];
#pragma unroll
        for (int j = 0; j < U; j++)
        {
            sa[j] = sb[j] = 0.f;
            xv[j] = lane + j * WARP < n ? load_x<XM>(x4, staged_x, lane + j * WARP) : zero;
        }
        for (int base = 0;;)
        {
#pragma unroll
            for (int j = 0; j < U; j++)
            {
                sa[j] = dot8(wa[j], xv[j], sa[j]);
                if (rb != nullptr) sb[j] = dot8(wb[j], xv[j], sb[j]);
            }
            base += U * WARP;
            if (base >= n) break;
#pragma unroll
            for (int j = 0; j < U; j++) wa[j] = base + lane + j * WARP < n ? __ldcs(a4 + base + lane + j * WARP) : zero;
            if (rb != nullptr)
            {
#pragma unroll
                for (int j = 0; j < U; j++) wb[j] = base + lane + j * WARP < n ? __ldcs(b4 + base + lane + j * WARP) : zero;
            }
#pragma unroll
            for (int j = 0; j < U; j++) xv[j] = base + lane + j * WARP < n ? load_x<XM>(x4, staged_x, base + lane + j * WARP) : zero;
        }
#pragma unroll
        for (int j = 0; j < U; j++)
        {
            acc_a += sa[j];
            acc_b += sb[j];
        }
        acc_a = warp_sum(acc_a);
        acc_b = warp_sum(acc_b);
    }
    float out_value = -INFINITY;   // mode 3: the logit
    if (active)
    {
        if (MODE == 0)
        {
            float v = round_bf16(acc_a);
            if (p.b0 != nullptr) v = round_bf16(v + __bfloat162float(p.b0[item]));
            if (p.residual != nullptr) v = round_bf16(__bfloat162float(__ldcg(p.residual + item)) + v);
            if (lane == 0) p.y[item] = __float2bfloat16_rn(v);
        }
        else if (MODE == 3)
        {
            float v = round_bf16(acc_a);
            if (lane == 0 && p.y != nullptr) p.y[item] = __float2bfloat16_rn(v);
            out_value = v;
        }
        else if (MODE == 2)
        {
            float g = round_bf16(acc_a), u = round_bf16(acc_b);
            float s = round_bf16(g / (1.0f + expf(-g)));
            if (lane == 0) p.y[item] = __float2bfloat16_rn(s * u);
        }
        else if (item < pairs)
        {
            int64_t pos = p.state[1];
            bool is_q = head < p.heads;
            const bf16* bias = is_q ? (p.b0 == nullptr ? nullptr : p.b0 + head * p.head_dim)
                                    : (p.b1 == nullptr ? nullptr : p.b1 + (head - p.heads) * p.head_dim);
            float x1 = round_bf16(acc_a), x2 = round_bf16(acc_b);
            if (bias != nullptr)
            {
                x1 = round_bf16(x1 + __bfloat162float(bias[d]));
                x2 = round_bf16(x2 + __bfloat162float(bias[d + half]));
            }
            const float* cr = p.cos + pos * p.head_dim;
            const float* sr = p.sin + pos * p.head_dim;
            float c1 = round_bf16(cr[d]), c2 = round_bf16(cr[d + half]);
            float s1 = round_bf16(sr[d]), s2 = round_bf16(sr[d + half]);
            float o1 = round_bf16(round_bf16(x1 * c1) + round_bf16(-x2 * s1));
            float o2 = round_bf16(round_bf16(x2 * c2) + round_bf16(x1 * s2));
            if (lane == 0)
            {
                bf16* dst = is_q ? p.y + head * p.head_dim : p.k_cache + (head - p.heads) * p.head_stride + pos * p.head_dim;
                dst[d] = __float2bfloat16_rn(o1);
                dst[d + half] = __float2bfloat16_rn(o2);
            }
        }
        else
        {
            int64_t pos = p.state[1];
            int row = item - pairs;   // v row: kv head row / head_dim, dimension row % head_dim
            float v = round_bf16(acc_a);
            if (p.b2 != nullptr) v = round_bf16(v + __bfloat162float(p.b2[row]));
            if (lane == 0) p.v_cache[(row / p.head_dim) * p.head_stride + pos * p.head_dim + row % p.head_dim] = __float2bfloat16_rn(v);
        }
    }
    if (MODE == 3)
    {
        // Block argmax, then one 64-bit atomicMax: (order-preserving bits of the value) << 32 | ~index, so the highest
        // value wins and, among equal values, the lowest index.
        __shared__ unsigned long long best[32];
        unsigned long long key = 0ull;
        if (active)
        {
            uint32_t bits = __float_as_uint(out_value);
            bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
            key = ((unsigned long long)bits << 32) | (unsigned long long)(0xffffffffu - (uint32_t)item);
        }
        if (lane == 0) best[threadIdx.x / WARP] = key;
        __syncthreads();
        if (threadIdx.x == 0)
        {
            unsigned long long m = best[0];
            for (int i = 1; i < (int)(blockDim.x / WARP); i++) m = best[i] > m ? best[i] : m;
            atomicMax(p.argmax, m);
        }
    }
    if (MODE == 0 && p.normed != nullptr)
    {
        __shared__ bool last;
        __syncthreads();
        if (threadIdx.x == 0)
        {
            __threadfence();
            last = atomicAdd(p.counter, 1u) == gridDim.x - 1;
        }
        __syncthreads();
        if (last)
        {
            __threadfence();
            rms_norm_block(p.y, p.norm_w, p.eps, p.items, p.normed);
            if (threadIdx.x == 0) *p.counter = 0u;
        }
    }
}

// The launch shapes the host uses (threads per block; dynamic shared memory k * 2 bytes where x is staged), chosen with
// bench/kernels/gemv_bench.cu on an H100: staging x in shared memory helps the one-row kernels, and the small o
// projection does best with many short batches in big blocks.
extern "C" __global__ void __launch_bounds__(256) gemv_rows(GemvParams p) { gemv<0, 8, 1>(p); }
extern "C" __global__ void __launch_bounds__(512) gemv_rows_wide(GemvParams p) { gemv<0, 4, 1>(p); }
extern "C" __global__ void __launch_bounds__(128) gemv_qkv_rotary(GemvParams p) { gemv<1, 4, 0>(p); }
extern "C" __global__ void __launch_bounds__(128) gemv_gate_up(GemvParams p) { gemv<2, 8, 0>(p); }
extern "C" __global__ void __launch_bounds__(256) gemv_head_argmax(GemvParams p) { gemv<3, 8, 1>(p); }

struct AttentionParams
{
    const bf16* q;            // [heads, head_dim], rotated
    const bf16* k_cache;      // [kv heads, capacity, head_dim] (head stride below)
    const bf16* v_cache;
    int64_t head_stride;
    const int64_t* state;     // keys 0..state[1] inclusive are attended
    float* partial_o;         // [splits, heads, head_dim] float32
    float* partial_ml;        // [splits, heads, 2]: the split's max score and sum of exponentials
    unsigned int* counters;   // [kv heads], zero between launches
    bf16* out;                // [heads, head_dim]
    const char* prefetch;     // weights the next kernel reads, for the blocks to ask L2 for (null: none)
    int64_t prefetch_bytes;   // a multiple of 16
    int heads;
    int kv_heads;
    int head_dim;
    float scale;
};

#define MAX_SPLITS 1024   // attention blocks per kv head at most (the host falls back beyond)

template <int N> struct Lanes;   // N bf16 of one lane as one load
template <> struct Lanes<2> { typedef unsigned int T; __device__ static void unpack(T v, float* f) { f[0] = lo_bf16(v); f[1] = hi_bf16(v); } };
template <> struct Lanes<4> { typedef uint2 T; __device__ static void unpack(T v, float* f) { f[0] = lo_bf16(v.x); f[1] = hi_bf16(v.x); f[2] = lo_bf16(v.y); f[3] = hi_bf16(v.y); } };
template <> struct Lanes<8> { typedef uint4 T; __device__ static void unpack(T v, float* f) {
    f[0] = lo_bf16(v.x); f[1] = hi_bf16(v.x); f[2] = lo_bf16(v.y); f[3] = hi_bf16(v.y);
    f[4] = lo_bf16(v.z); f[5] = hi_bf16(v.z); f[6] = lo_bf16(v.w); f[7] = hi_bf16(v.w); } };

__device__ __forceinline__ void prefetch_l2(const void* p, int bytes)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" :: "l"(p), "r"(bytes) : "memory");
#endif
}

// cp.async (sm_80+): 16 bytes global -> shared without registers, completed by cp_async_wait_all()
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    unsigned int s = (unsigned int)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"(s), "l"(gmem) : "memory");
#else
    *reinterpret_cast<uint4*>(smem) = *reinterpret_cast<const uint4*>(gmem);
#endif
}

__device__ __forceinline__ void cp_async_wait_all()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_all;" ::: "memory");
#endif
}

// Decode attention of one token over the cache, split over keys: block (split, kv head) takes 8192 / HD keys (a 16 KB
// key tile and a 16 KB value tile, copied to shared memory by cp.async before grid_wait(), all but the newest key, which
// is the previous kernel's) for the kv head's query heads, and leaves unnormalised partials; the last block of a kv head
// merges them. Scores: 2 to 8 threads per key, 32 dimensions each; softmax: one warp per query head; values: thread
// t takes dimension t % HD for a run of keys. Everything is float32; the output is rounded to bf16 once.
template <int HD>
__device__ void attention(const AttentionParams& p)
{
    constexpr int CHUNK = 8192 / HD;                          // keys per block
    constexpr int TPK = ATTN_THREADS / CHUNK;                 // threads per key in the score pass (2, 4 or 8)
    constexpr int QD = HD / TPK;                              // dimensions per thread in the score pass (32)
    constexpr int QPAD = QD + 4;                              // q rows padded against bank conflicts
    constexpr int RUNS = ATTN_THREADS / HD;                   // value pass: runs of keys
    constexpr int RUN = CHUNK / RUNS;                         // keys per run
    constexpr int WARPS = ATTN_THREADS / WARP;
    constexpr int ROW16 = HD / 8;                             // 16-byte pieces per cache row
    static_assert(TPK >= 2 && TPK <= 8 && QD % 8 == 0, "2 to 8 threads per key");
    static_assert(RUNS * MAX_GROUPS * HD <= 2 * CHUNK * HD / 2, "value sums fit the tiles");
    __shared__ __align__(16) bf16 tiles[2][CHUNK][HD];        // keys, values; later the value sums and merge weights
    __shared__ float q[MAX_GROUPS][TPK][QPAD];
    __shared__ float e[MAX_GROUPS][CHUNK];
    __shared__ float total[MAX_GROUPS];
    __shared__ bool last;
    int split = blockIdx.x, kvh = blockIdx.y, groups = p.heads / p.kv_heads;
    int tid = threadIdx.x, lane = tid & (WARP - 1), warp = tid / WARP;
    const bf16* kc = p.k_cache + kvh * p.head_stride;
    const bf16* vc = p.v_cache + kvh * p.head_stride;
    int64_t pos = p.state[1];             // written by the host before the graph, not by a kernel
    int n = (int)pos + 1;
    int start = split * CHUNK;
    int count = min(CHUNK, n - start);
    if (p.prefetch != nullptr && tid == 0)
    {
        // this block's share of the next kernel's weights (the o projection), while attention leaves memory idle
        int64_t blocks = (int64_t)gridDim.x * gridDim.y, b = (int64_t)blockIdx.y * gridDim.x + blockIdx.x;
        int64_t share = (p.prefetch_bytes / blocks + 15) / 16 * 16, from = b * share;
        for (int64_t at = from; at < min(from + share, p.prefetch_bytes); at += 65536)
            prefetch_l2(p.prefetch + at, (int)min((int64_t)65536, min(from + share, p.prefetch_bytes) - at));
    }
    for (int i = tid; i < 2 * CHUNK * ROW16; i += ATTN_THREADS)
    {
        int kv = i / (CHUNK * ROW16), row = (i / ROW16) % CHUNK, piece = i % ROW16;
        if (row < count && start + row != pos)
            cp_async16(&tiles[kv][row][piece * 8], (kv == 0 ? kc : vc) + (int64_t)(start + row) * HD + piece * 8);
    }
    grid_wait();
    grid_trigger();
    float* ml = p.partial_ml + ((int64_t)split * p.heads + kvh * groups) * 2;
    if (count > 0)
    {
        if (pos >= start && pos < start + count)
        {
            for (int i = tid; i < 2 * ROW16; i += ATTN_THREADS)
                cp_async16(&tiles[i / ROW16][pos - start][(i % ROW16) * 8], (i < ROW16 ? kc : vc) + pos * HD + (i % ROW16) * 8);
        }
        for (int i = tid; i < groups * HD; i += ATTN_THREADS)
        {
            int g = i / HD, dd = i % HD;
            q[g][dd / QD][dd % QD] = __bfloat162float(__ldcg(p.q + (kvh * groups + g) * HD + dd));
        }
        cp_async_wait_all();
        __syncthreads();
        int key = tid / TPK, quarter = tid % TPK;
        float sc[MAX_GROUPS];
#pragma unroll
        for (int g = 0; g < MAX_GROUPS; g++) sc[g] = 0.f;
        if (key < count)
        {
            const uint4* kr = reinterpret_cast<const uint4*>(&tiles[0][key][quarter * QD]);
#pragma unroll
            for (int j = 0; j < QD / 8; j++)
            {
                float kf[8];
                Lanes<8>::unpack(kr[j], kf);
#pragma unroll
                for (int g = 0; g < MAX_GROUPS; g++)
                {
                    if (g < groups)
                    {
#pragma unroll
                        for (int t = 0; t < 8; t++) sc[g] = fmaf(q[g][quarter][j * 8 + t], kf[t], sc[g]);
                    }
                }
            }
        }
#pragma unroll
        for (int g = 0; g < MAX_GROUPS; g++)
        {
#pragma unroll
            for (int o = 1; o < TPK; o <<= 1) sc[g] += __shfl_xor_sync(0xffffffffu, sc[g], o);
        }
        if (quarter == 0)
        {
#pragma unroll
            for (int g = 0; g < MAX_GROUPS; g++)
                if (g < groups) e[g][key] = key < count ? sc[g] * p.scale : -INFINITY;
        }
        __syncthreads();
        for (int g = warp; g < groups; g += WARPS)
        {
            float m = -INFINITY;
            for (int j = lane; j < CHUNK; j += WARP) m = fmaxf(m, e[g][j]);
            m = warp_max(m);
            float l = 0.f;
            for (int j = lane; j < CHUNK; j += WARP)
            {
                float v = e[g][j];
                float x = v == -INFINITY ? 0.f : expf(v - m);
                e[g][j] = x;
                l += x;
            }
            l = warp_sum(l);
            if (lane == 0)
            {
                ml[g * 2] = m;
                ml[g * 2 + 1] = l;
            }
        }
        __syncthreads();
        int d = tid % HD, run = (tid / HD) * RUN;
        float acc[MAX_GROUPS];
#pragma unroll
        for (int g = 0; g < MAX_GROUPS; g++) acc[g] = 0.f;
#pragma unroll 8
        for (int j = 0; j < RUN; j++)
        {
            if (run + j < count)
            {
                float v = __bfloat162float(tiles[1][run + j][d]);
#pragma unroll
                for (int g = 0; g < MAX_GROUPS; g++)
                    if (g < groups) acc[g] = fmaf(e[g][run + j], v, acc[g]);
            }
        }
        __syncthreads();   // the tiles are free: the runs' sums go there
        float* acc_s = reinterpret_cast<float*>(&tiles[0][0][0]);
#pragma unroll
        for (int g = 0; g < MAX_GROUPS; g++)
            if (g < groups) acc_s[((tid / HD) * MAX_GROUPS + g) * HD + d] = acc[g];
        __syncthreads();
        for (int i = tid; i < groups * HD; i += ATTN_THREADS)
        {
            int g = i / HD, dd = i % HD;
            float o = 0.f;
#pragma unroll
            for (int r = 0; r < RUNS; r++) o += acc_s[(r * MAX_GROUPS + g) * HD + dd];
            p.partial_o[((int64_t)split * p.heads + kvh * groups + g) * HD + dd] = o;
        }
    }
    else
    {
        cp_async_wait_all();
        if (tid < groups)
        {
            ml[tid * 2] = -INFINITY;
            ml[tid * 2 + 1] = 0.f;
        }
    }
    __syncthreads();
    if (tid == 0)
    {
        __threadfence();
        last = atomicAdd(p.counters + kvh, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    // merge: warp g takes query head g: the largest max, each split's weight exp(m_s - M) and the total
    int splits = gridDim.x;
    float (*weight)[MAX_SPLITS] = reinterpret_cast<float (*)[MAX_SPLITS]>(&tiles[0][0][0]);
    for (int g = warp; g < groups; g += WARPS)
    {
        const float* mlh = p.partial_ml + (kvh * groups + g) * 2;
        float m = -INFINITY;
        for (int sp = lane; sp < splits; sp += WARP) m = fmaxf(m, __ldcg(mlh + (int64_t)sp * p.heads * 2));
        m = warp_max(m);
        float l = 0.f;
        for (int sp = lane; sp < splits; sp += WARP)
        {
            float ms = __ldcg(mlh + (int64_t)sp * p.heads * 2);
            float w = ms == -INFINITY ? 0.f : expf(ms - m);
            weight[g][sp] = w;
            l = fmaf(w, __ldcg(mlh + (int64_t)sp * p.heads * 2 + 1), l);
        }
        l = warp_sum(l);
        if (lane == 0) total[g] = l;
    }
    __syncthreads();
    for (int i = tid; i < groups * HD; i += ATTN_THREADS)
    {
        int g = i / HD, dd = i % HD, head = kvh * groups + g;
        const float* po = p.partial_o + (int64_t)head * HD + dd;
        float o = 0.f;
#pragma unroll 8
        for (int sp = 0; sp < splits; sp++)
        {
            float w = weight[g][sp];
            float v = __ldcg(po + (int64_t)sp * p.heads * HD);
            o = w != 0.f ? fmaf(w, v, o) : o;
        }
        p.out[head * HD + dd] = __float2bfloat16_rn(o / total[g]);
    }
    if (tid == 0) p.counters[kvh] = 0u;
}

extern "C" __global__ void __launch_bounds__(ATTN_THREADS) attention_decode_64(AttentionParams p) { attention<64>(p); }
extern "C" __global__ void __launch_bounds__(ATTN_THREADS) attention_decode_128(AttentionParams p) { attention<128>(p); }
extern "C" __global__ void __launch_bounds__(ATTN_THREADS) attention_decode_256(AttentionParams p) { attention<256>(p); }
