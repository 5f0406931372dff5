// The batch-1 decode step of a Llama-family decoder in five kernels per layer, for the CUDA-graph path of
// SpecDecode.Tree (Serving/KernelDecodeStep.cs launches them, Serving/DecodeKernels.cs loads them). Built into
// decode_step.fatbin by build.sh (needs nvcc), which the assembly embeds and loads through the CUDA driver API; see
// docs/target-model.md, "Decode-step kernels".
//
// Numerics follow what the TorchScript layers compute in bfloat16, op for op, wherever a value is rounded there:
// RMSNorm as h = float(x) * rsqrt(mean(x^2) + eps), bf16(w * bf16(h)); each projection rounded to bf16 before the
// residual add, the bias add, silu and the rotary products; rotary as bf16(bf16(x * cos) + bf16(rotate_half(x) * sin))
// with cos and sin rounded to bf16; the argmax over bf16 logits, lowest index on a tie. What differs: the order of
// the float32 sums (a matrix-vector product here, cuBLAS there), and attention, which is computed here entirely in
// float32 (scores, softmax and the product with V) where SDPA multiplies bf16 probabilities with V.
// Every reduction has a fixed order, so a step gives the same bits on every run.

#include <cuda_bf16.h>
#include <stdint.h>

typedef __nv_bfloat16 bf16;

#define WARP 32
#define NORM_THREADS 512
#define ATTN_THREADS 512   // four threads per key in the score pass
#define ATTN_CHUNK 128     // keys per attention block
#define MAX_GROUPS 8       // query heads per key/value head

// The paged KV cache (Serving/KvCache.cs owns the layout): per layer and k/v a pool of rows, each row one position of one
// sequence with every kv head (head_stride apart), rows row_stride apart; position pos of a sequence lives in row
// table[pos >> shift] << shift | pos & (block size - 1). The table is written by the host between steps, never by a
// kernel; it is read through L2 like the cache.
__device__ __forceinline__ int64_t kv_row(const int* table, int shift, int64_t pos)
{
    return ((int64_t)__ldcg(table + (pos >> shift)) << shift) | (pos & ((1ll << shift) - 1));
}

__device__ __forceinline__ float round_bf16(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }
__device__ __forceinline__ float lo_bf16(uint32_t v) { return __uint_as_float(v << 16); }
__device__ __forceinline__ float hi_bf16(uint32_t v) { return __uint_as_float(v & 0xffff0000u); }

// silu(gate) · up from two float32 sums, rounded as the TorchScript MLP rounds: gate and up to bf16, silu(gate) to bf16;
// the caller rounds the product when it stores it.
__device__ __forceinline__ float silu_times(float gate, float up)
{
    float g = round_bf16(gate);
    return round_bf16(g / (1.0f + expf(-g))) * round_bf16(up);
}

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
    bf16* k_cache;          // this layer's pool of rows (kv_row), keys and values
    bf16* v_cache;
    int64_t head_stride;    // elements between kv heads of a row
    int64_t row_stride;     // elements between rows
    const int* block_table; // the sequence's blocks
    int block_shift;        // log2 of the block size
    int heads;
    int kv_heads;
    int head_dim;
    // mode 3
    unsigned long long* argmax;
};

// How a warp reads x (XM): 0 through L2 (ld.global.cg), 1 from shared memory (the block stages x through L2 first;
// launch with k * 2 bytes of dynamic shared memory), 2 through the read-only cache (not safe with dependent launch:
// kernel benchmarks only). x changes every layer, and with dependent launch an SM's L1 may still hold the previous
// layer's lines: reading it through the read-only path gave wrong results.
template <int XM>
__device__ __forceinline__ uint4 load_x(const uint4* x4, const uint4* sx, int v)
{
    return XM == 0 ? __ldcg(x4 + v) : XM == 1 ? sx[v] : __ldg(x4 + v);
}

// One kernel, four jobs (mode is a launch constant): 0 plain rows (+ residual, + finisher), 1 q/k/v with rotary and the
// KV-cache write, 2 gate/up with silu(gate) * up, 3 the output head with the argmax. A warp takes one item: one row, or
// two rows read together (a rotary pair of q or k, or gate and up), or with SK > 1 a 1/SK part of a plain row. It loads
// its first U 16-byte weight vectors per row before grid_wait(), x after it.
template <int MODE, int U = (MODE == 0 || MODE == 3 ? 8 : 4), int XM = 0, int SK = 1>
__device__ void gemv(const GemvParams& p)
{
    static_assert(SK == 1 || MODE == 0, "split rows: plain rows only");
    extern __shared__ uint4 staged_x[];
    __shared__ float split_sums[SK > 1 ? 32 : 1];
    int lane = threadIdx.x & (WARP - 1), warp = threadIdx.x / WARP;
    // SK warps share a row, each a contiguous 1/SK of it (k / 8 divisible by SK); their sums meet in shared memory
    int part = warp % SK;
    int item = blockIdx.x * (blockDim.x / WARP / SK) + warp / SK;
    bool active = item < p.items;
    int64_t k = p.k;
    int n = p.k / 8 / SK;                       // 16-byte vectors of this warp's part of a row
    int offset = part * n;
    const bf16* ra = nullptr;
    const bf16* rb = nullptr;
    // mode 1 bookkeeping
    int half = p.head_dim / 2, pairs = (p.heads + p.kv_heads) * half, head = 0, d = 0;
    if (active)
    {
        if (MODE == 0 || MODE == 3)
        {
            ra = p.w0 + item * k + (int64_t)offset * 8;
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
    const uint4* x4 = reinterpret_cast<const uint4*>(p.x) + offset;
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
        for (int v = threadIdx.x; v < n * SK; v += blockDim.x) staged_x[v] = __ldcg(x4 - offset + v);
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
            xv[j] = lane + j * WARP < n ? load_x<XM>(x4, staged_x + offset, lane + j * WARP) : zero;
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
            for (int j = 0; j < U; j++) xv[j] = base + lane + j * WARP < n ? load_x<XM>(x4, staged_x + offset, base + lane + j * WARP) : zero;
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
    if (SK > 1)
    {
        if (lane == 0) split_sums[warp] = acc_a;
        __syncthreads();
        if (part == 0)
        {
            acc_a = 0.f;
            for (int q = 0; q < SK; q++) acc_a += split_sums[warp + q];
        }
        active = active && part == 0;
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
            if (lane == 0) p.y[item] = __float2bfloat16_rn(silu_times(acc_a, acc_b));
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
                bf16* dst = is_q ? p.y + head * p.head_dim
                                 : p.k_cache + kv_row(p.block_table, p.block_shift, pos) * p.row_stride + (head - p.heads) * p.head_stride;
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
            if (lane == 0)
                p.v_cache[kv_row(p.block_table, p.block_shift, pos) * p.row_stride + (row / p.head_dim) * p.head_stride + row % p.head_dim] = __float2bfloat16_rn(v);
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

// The launch shapes the host uses (threads per block; dynamic shared memory k * 2 bytes where x is staged; two warps per
// row in the plain-row kernels), chosen on an H100 with bench/kernels/gemv_bench.cu and whole decode steps
// (bench/RESULTS.md): staging x in shared memory helps the one-row kernels, the small o projection does best with many
// short batches in big blocks, and two warps per row (each half of it) keep more loads in flight in those one-wave
// kernels.
extern "C" __global__ void __launch_bounds__(256) gemv_rows(GemvParams p) { gemv<0, 8, 1, 2>(p); }
extern "C" __global__ void __launch_bounds__(512) gemv_rows_wide(GemvParams p) { gemv<0, 4, 1, 2>(p); }
extern "C" __global__ void __launch_bounds__(128) gemv_qkv_rotary(GemvParams p) { gemv<1, 4, 0>(p); }
extern "C" __global__ void __launch_bounds__(128) gemv_gate_up(GemvParams p) { gemv<2, 8, 0>(p); }
extern "C" __global__ void __launch_bounds__(256) gemv_head_argmax(GemvParams p) { gemv<3, 8, 1>(p); }

struct AttentionParams
{
    const bf16* q;            // [heads, head_dim], rotated
    const bf16* k_cache;      // this layer's pool of rows (kv_row)
    const bf16* v_cache;
    int64_t head_stride;      // elements between kv heads of a row
    int64_t row_stride;       // elements between rows
    const int* block_table;   // the sequence's blocks
    int block_shift;          // log2 of the block size
    const int64_t* state;     // keys 0..state[1] inclusive are attended
    float* partial_o;         // [splits, heads, head_dim] float32
    float* partial_ml;        // [splits, heads, 2]: the split's max score and sum of exponentials
    unsigned int* counters;   // [kv heads], zero between launches
    bf16* out;                // [heads, head_dim]
    int heads;
    int kv_heads;
    int head_dim;
    float scale;
};

#define MAX_SPLITS 1024   // attention blocks per kv head at most (the host falls back beyond)

template <int N> struct Lanes;   // N bf16 as one load
template <> struct Lanes<8> { typedef uint4 T; __device__ static void unpack(T v, float* f) {
    f[0] = lo_bf16(v.x); f[1] = hi_bf16(v.x); f[2] = lo_bf16(v.y); f[3] = hi_bf16(v.y);
    f[4] = lo_bf16(v.z); f[5] = hi_bf16(v.z); f[6] = lo_bf16(v.w); f[7] = hi_bf16(v.w); } };

// Decode attention of one token over the cache, split over keys: block (split, kv head) takes ATTN_CHUNK keys for the
// kv head's query heads and leaves unnormalised partials; the last block of a kv head merges them. Scores: four threads
// per key, a quarter of the head each (their key slice loaded before grid_wait: only the newest key is the previous
// kernel's). Softmax: one warp per query head. Values: thread t takes dimension t % HD for a run of keys, its values
// also loaded before grid_wait. Everything is float32; the output is rounded to bf16 once. Cache rows are read through
// L2 (ld.global.cg): a rolled-back cache rewrites positions that an SM's L1 may still hold.
template <int HD>
__device__ void attention(const AttentionParams& p)
{
    constexpr int QD = HD / 4;                                // dimensions per thread in the score pass
    constexpr int QV = QD / 8;                                // 16-byte vectors per thread in the score pass
    constexpr int QPAD = QD + 4;                              // q rows padded against bank conflicts
    constexpr int KEY_GROUPS = ATTN_THREADS / HD;             // value pass: runs of keys
    constexpr int RUN = ATTN_CHUNK / KEY_GROUPS;              // keys per run
    constexpr int WARPS = ATTN_THREADS / WARP;
    constexpr int SQ = MAX_GROUPS * 4 * QPAD, SA = KEY_GROUPS * MAX_GROUPS * HD, SW = MAX_GROUPS * MAX_SPLITS;
    constexpr int SCRATCH = SQ > SA ? (SQ > SW ? SQ : SW) : (SA > SW ? SA : SW);

    __shared__ float scratch[SCRATCH];    // q (scores), then the runs' value sums, then the merge weights
    __shared__ float e[MAX_GROUPS][ATTN_CHUNK];
    __shared__ float total[MAX_GROUPS];
    __shared__ bool last;
    int split = blockIdx.x, kvh = blockIdx.y, groups = p.heads / p.kv_heads;
    int tid = threadIdx.x, lane = tid & (WARP - 1), warp = tid / WARP;
    const bf16* kc = p.k_cache + kvh * p.head_stride;
    const bf16* vc = p.v_cache + kvh * p.head_stride;
    int64_t pos = p.state[1];             // written by the host before the graph, not by a kernel
    int n = (int)pos + 1;
    int start = split * ATTN_CHUNK;
    int count = min(ATTN_CHUNK, n - start);
    int key_local = tid / 4, quarter = tid % 4;
    int64_t key = start + key_local;
    bool has_key = key_local < count;
    const uint4* kr = reinterpret_cast<const uint4*>(kc + (has_key ? kv_row(p.block_table, p.block_shift, key) : 0) * p.row_stride + quarter * QD);
    uint4 kq[QV];
    if (has_key && key != pos)
    {
#pragma unroll
        for (int j = 0; j < QV; j++) kq[j] = __ldcg(kr + j);
    }
    int d = tid % HD, run = (tid / HD) * RUN;
    // a run of keys lies in one block when blocks hold at least RUN keys (runs start at multiples of RUN)
    bool run_in_block = (1 << p.block_shift) >= RUN;
    int64_t run_row = run < count ? kv_row(p.block_table, p.block_shift, start + run) : 0;
    bf16 vv[RUN];
#pragma unroll
    for (int j = 0; j < RUN; j++)
        if (run + j < count && start + run + j != pos)
            vv[j] = __ldcg(vc + (run_in_block ? run_row + j : kv_row(p.block_table, p.block_shift, start + run + j)) * p.row_stride + d);
    grid_wait();
    grid_trigger();
    float* ml = p.partial_ml + ((int64_t)split * p.heads + kvh * groups) * 2;
    if (count > 0)
    {
        if (has_key && key == pos)
        {
#pragma unroll
            for (int j = 0; j < QV; j++) kq[j] = __ldcg(kr + j);
        }
        for (int i = tid; i < groups * HD; i += ATTN_THREADS)
        {
            int g = i / HD, dd = i % HD;
            scratch[(g * 4 + dd / QD) * QPAD + dd % QD] = __bfloat162float(__ldcg(p.q + (kvh * groups + g) * HD + dd));
        }
        __syncthreads();
        float sc[MAX_GROUPS];
#pragma unroll
        for (int g = 0; g < MAX_GROUPS; g++) sc[g] = 0.f;
        if (has_key)
        {
#pragma unroll
            for (int j = 0; j < QV; j++)
            {
                float kf[8];
                Lanes<8>::unpack(kq[j], kf);
#pragma unroll
                for (int g = 0; g < MAX_GROUPS; g++)
                {
                    if (g < groups)
                    {
                        const float* qr = scratch + (g * 4 + quarter) * QPAD + j * 8;
#pragma unroll
                        for (int t = 0; t < 8; t++) sc[g] = fmaf(qr[t], kf[t], sc[g]);
                    }
                }
            }
        }
#pragma unroll
        for (int g = 0; g < MAX_GROUPS; g++)
        {
            sc[g] += __shfl_xor_sync(0xffffffffu, sc[g], 1);
            sc[g] += __shfl_xor_sync(0xffffffffu, sc[g], 2);
        }
        if (quarter == 0)
        {
#pragma unroll
            for (int g = 0; g < MAX_GROUPS; g++)
                if (g < groups) e[g][key_local] = has_key ? sc[g] * p.scale : -INFINITY;
        }
        __syncthreads();
        if (warp < groups)
        {
            int g = warp;
            float v[ATTN_CHUNK / WARP];
            float m = -INFINITY;
#pragma unroll
            for (int j = 0; j < ATTN_CHUNK / WARP; j++)
            {
                v[j] = e[g][lane + j * WARP];
                m = fmaxf(m, v[j]);
            }
            m = warp_max(m);
            float l = 0.f;
#pragma unroll
            for (int j = 0; j < ATTN_CHUNK / WARP; j++)
            {
                float x = v[j] == -INFINITY ? 0.f : expf(v[j] - m);
                e[g][lane + j * WARP] = x;
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
        float acc[MAX_GROUPS];
#pragma unroll
        for (int g = 0; g < MAX_GROUPS; g++) acc[g] = 0.f;
#pragma unroll
        for (int j = 0; j < RUN; j++)
        {
            if (run + j < count)
            {
                if (start + run + j == pos) vv[j] = __ldcg(vc + kv_row(p.block_table, p.block_shift, pos) * p.row_stride + d);
                float v = __bfloat162float(vv[j]);
#pragma unroll
                for (int g = 0; g < MAX_GROUPS; g++)
                    if (g < groups) acc[g] = fmaf(e[g][run + j], v, acc[g]);
            }
        }
        float* acc_s = scratch;   // [run group][query head][dimension]
#pragma unroll
        for (int g = 0; g < MAX_GROUPS; g++)
            if (g < groups) acc_s[((tid / HD) * MAX_GROUPS + g) * HD + d] = acc[g];
        __syncthreads();
        for (int i = tid; i < groups * HD; i += ATTN_THREADS)
        {
            int g = i / HD, dd = i % HD;
            float o = 0.f;
#pragma unroll
            for (int r = 0; r < KEY_GROUPS; r++) o += acc_s[(r * MAX_GROUPS + g) * HD + dd];
            p.partial_o[((int64_t)split * p.heads + kvh * groups + g) * HD + dd] = o;
        }
    }
    else if (tid < groups)
    {
        ml[tid * 2] = -INFINITY;
        ml[tid * 2 + 1] = 0.f;
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
    float (*weight)[MAX_SPLITS] = reinterpret_cast<float (*)[MAX_SPLITS]>(scratch);
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

#include "tree_step.cuh"
