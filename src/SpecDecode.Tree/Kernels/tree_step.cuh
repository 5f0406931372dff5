// The tree verification step: one forward over the roots and draft trees of up to 64 sequences (up to 64 entries in
// all, padded to 8, 16, 32 or 64 rows; a plain decoding step is a batch of roots without drafts), the greedy acceptance
// and the cache compaction of every sequence, with no libtorch op (Serving/KernelTreeStep.cs launches them). Included at the end of decode_step.cu: one translation unit, one fatbin, the same helpers and numerics.
//
// What differs from the one-row step: the products take all rows per weight load on the tensor cores (bf16 in, float32
// sums: wgmma on sm_90a, mma.sync m16n8k16 elsewhere), so the weights are still read once; attention is flash-style on
// the tensor cores (mma.sync)
// with the tree's ancestor sets as the mask, and rounds the probabilities to bf16 before the product with V, as SDPA's
// kernels do. Everything else (roundings, rotary, silu, argmax ties) is the one-row step's.
//
// The step's inputs, one int64 array on the device (rows R = the padded row count, S = TREE_MAX_SEQS): [sequences,
// entries, tokens[R], depths[R] (from the row's root), parents[R] (step rows), ancestors[R] (bit j: the sequence's entry j
// is an ancestor or the row itself), forced[R] (the token that counts as the target's choice after the row, or -1),
// sequence[R] (-1 for padding)], then per sequence: cached length[S], first row[S], entries[S], slot[S]. A sequence's
// entries are consecutive rows, its root first. Padding rows (past the entries) belong to no sequence: token 0, depth 0; nobody
// reads their attention or argmax, and they write nothing into the cache.

#define TREE_THREADS 128                    // four warps
#define TREE_TILE 128                       // output rows per block of a product
#define TREE_KSTEP 64                       // k per shared-memory stage (four k-steps of 16)
#define TREE_STAGES 4                       // stages per product block at most (16 KB of weights and up to 8 KB of input rows each)
#define TREE_TSTRIDE (TREE_TILE + 4)        // finished tile row in float32
#define TREE_MAX_ROWS 64                    // entries per step at most: an ancestor set is one 64-bit word
#define TREE_SUB 64                         // keys per attention sub-chunk in shared memory
#define TREE_MAX_CHUNKS 32                  // attention chunks per (kv head, row group) at most
#define TREE_MAX_SEQS 64                    // sequences per step at most
#define TREE_RESULT (2 + 2 * TREE_MAX_ROWS) // int64 per sequence in the step's result

// One sequence of a step: its cached length, its first row and entries, and its block table.
struct TreeSeq
{
    int64_t length;
    int first;
    int entries;
    const int* table;
};

__device__ __forceinline__ int tree_row_seq(const int64_t* state, int rows, int row) { return (int)state[2 + 5 * rows + row]; }

__device__ __forceinline__ TreeSeq tree_seq(const int64_t* state, int rows, const int* tables, int table_stride, int seq)
{
    const int64_t* b = state + 2 + 6 * rows;
    TreeSeq s;
    s.length = b[seq];
    s.first = (int)b[TREE_MAX_SEQS + seq];
    s.entries = (int)b[2 * TREE_MAX_SEQS + seq];
    s.table = tables + b[3 * TREE_MAX_SEQS + seq] * (int64_t)table_stride;
    return s;
}

__device__ __forceinline__ void mma_bf16(float* c, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Word w (0..7) of sixteen bf16 held as two 16-byte vectors; w is a constant after unrolling.
__device__ __forceinline__ uint32_t word16(const uint4& lo, const uint4& hi, int w)
{
    const uint4& v = w < 4 ? lo : hi;
    int c = w & 3;
    return c == 0 ? v.x : c == 1 ? v.y : c == 2 ? v.z : v.w;
}

// Four 8x8 bf16 matrices from shared memory, one per register; lane l gives the address of row l % 8 of matrix l / 8.
__device__ __forceinline__ void ldmatrix_x4(uint32_t* r, const bf16* row)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"((uint32_t)__cvta_generic_to_shared(row)));
}

// 16 bytes from global to shared memory without registers (through L2 only); completion by commit/wait groups.
__device__ __forceinline__ void cp_async16(void* shared, const void* global)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"((uint32_t)__cvta_generic_to_shared(shared)), "l"(global) : "memory");
}

// The same, asking L2 to fetch the 256-byte block around the 16 bytes from memory (the L2::256B hint): a product reads
// each weight row 128 bytes per stage, so the next stage's piece of the row comes in the same memory access.
__device__ __forceinline__ void cp_async16_l2_256(void* shared, const void* global)
{
    asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16;" ::"r"((uint32_t)__cvta_generic_to_shared(shared)), "l"(global) : "memory");
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }

template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
}

// Warpgroup products (wgmma, sm_90a only: __CUDA_ARCH_FEAT_SM90_ALL): the four warps of a product block issue
// m64nNk16 products that read both operands from the shared-memory stages and run asynchronously; the stages' layout
// (rows of 64 bf16 = 128 bytes, 16-byte piece c of row r at c ^ (r % 8), stage bases 1024-byte aligned) is the one
// wgmma calls K-major with 128-byte swizzle. Other GPUs take mma.sync below.
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define TREE_WGMMA 1
// A matrix descriptor: start address, leading byte offset 16 (unused with swizzle), 1024 bytes between groups of 8 rows,
// 128-byte swizzle. Adding 2 moves the start 32 bytes (16 k) along the rows.
__device__ __forceinline__ uint64_t wgmma_desc(const void* smem)
{
    uint32_t a = (uint32_t)__cvta_generic_to_shared(smem);
    return (uint64_t)((a & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }
// cp.async writes shared memory through the generic proxy, wgmma reads it through the async proxy
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }
// keeps the compiler from moving accumulator reads or writes across an asynchronous product
template <int N> __device__ __forceinline__ void wgmma_hold(float* d)
{
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(d[i])::"memory");
}
// D (64 x N, float32, accumulated) += A (64 x 16) B (N x 16)^T, both K-major in shared memory
template <int N> __device__ __forceinline__ void wgmma_bf16(float* d, uint64_t a, uint64_t b);
template <> __device__ __forceinline__ void wgmma_bf16<8>(float* d, uint64_t a, uint64_t b)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %6, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {%0,%1,%2,%3}, %4, %5, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "l"(a), "l"(b), "r"(1));
}
template <> __device__ __forceinline__ void wgmma_bf16<16>(float* d, uint64_t a, uint64_t b)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %10, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7}, %8, %9, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
                 : "l"(a), "l"(b), "r"(1));
}
template <> __device__ __forceinline__ void wgmma_bf16<32>(float* d, uint64_t a, uint64_t b)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}, %16, %17, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
                 : "l"(a), "l"(b), "r"(1));
}
template <> __device__ __forceinline__ void wgmma_bf16<64>(float* d, uint64_t a, uint64_t b)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "l"(a), "l"(b), "r"(1));
}
#else
#define TREE_WGMMA 0
#endif

// Fragments. Every mma operand is loaded with ldmatrix from shared memory, which puts each fragment into the four (A)
// or two (B) consecutive registers that mma takes: fragments assembled from 16-byte loads in a permuted k order need
// register moves per mma (about four times the instructions, seen on an H200).

struct TreeGemmParams
{
    const bf16* x;              // [rows, k]: the step's (normalised) input rows
    int k;
    int n;                      // output rows of the product (gate/up: 2 × MLP size)
    int rows;                   // rows of x, a multiple of 8
    int k_split;                // k per block (a multiple of 64); gridDim.y = k / k_split
    const bf16* w0;             // q | gate | plain rows
    const bf16* w1;             // k | up rows
    const bf16* w2;             // v rows
    float* work;                // modes 0-2: [splits, rows, n] float32 sums, one plane per split
    bf16* y;                    // mode 2 in one split: silu(gate) · up [rows, n / 2]; mode 3: logits [rows, n], or null
    int heads;                  // mode 1: the row layout of q, k and v
    int kv_heads;
    int head_dim;
    unsigned long long* argmax; // mode 3: [rows], packed as the one-row head packs it
    int stages;                 // shared-memory stages: 3 or 4 (TREE_STAGES)
};

// The weight row behind output row `local` (0..127) of `tile`. Mode 2 interleaves per tile: rows 0..63 are gate rows and
// 64..127 the up rows of the same 64 MLP features, so one block finishes silu(gate) · up. Rows past n read row 0; their
// results are dropped.
template <int MODE>
__device__ __forceinline__ const bf16* tree_weight_row(const TreeGemmParams& p, int tile, int local)
{
    int64_t k = p.k;
    if (MODE == 2)
    {
        int r = tile * (TREE_TILE / 2) + local % (TREE_TILE / 2);
        return (local < TREE_TILE / 2 ? p.w0 : p.w1) + r * k;
    }
    int r = tile * TREE_TILE + local;
    if (r >= p.n) r = 0;
    if (MODE == 1)
    {
        int qr = p.heads * p.head_dim, kr = p.kv_heads * p.head_dim;
        return r < qr ? p.w0 + r * k : r < qr + kr ? p.w1 + (int64_t)(r - qr) * k : p.w2 + (int64_t)(r - qr - kr) * k;
    }
    return p.w0 + r * k;
}

// One product of the tree step: block (tile, split) computes TREE_TILE output rows for all input rows over a 1/splits
// part of k: on sm_90a as two warpgroup products per 16 k (rows 0-63 and 64-127, every input row), elsewhere warp w
// takes rows 32w..32w+31 as two mma row tiles, every input row as NT column tiles. Modes 0-2 leave the
// block's float32 sums in work[split] for tree_finish (a serial epilogue in the last block of a tile, with its
// round trips to L2 per element, cost about 1 µs per input row per product); mode 3, the output head (no split), takes
// the argmax of each input row over its tile at once.
template <int MODE, int NT>
__device__ void tree_gemm(const TreeGemmParams& p)
{
    extern __shared__ __align__(16) unsigned char tree_smem[];
    constexpr int ROWS = NT * 8;
    constexpr int WSTAGE = TREE_TILE * TREE_KSTEP;                      // bf16 of weights per stage (16 KB)
    constexpr int STAGE = WSTAGE + ROWS * TREE_KSTEP;                    // and of the input rows (up to 8 KB)
    // stages from the first 1024-byte boundary (the host asks for 1 KB more): the swizzle repeats every 8 rows
    unsigned char* aligned = tree_smem + ((1024u - ((uint32_t)__cvta_generic_to_shared(tree_smem) & 1023u)) & 1023u);
    bf16* smem = reinterpret_cast<bf16*>(aligned);                       // [stages][weights | input rows]
    float* st = reinterpret_cast<float*>(aligned);                       // [rows][TREE_TSTRIDE], after the products
    int tid = threadIdx.x, lane = tid & (WARP - 1), warp = tid / WARP;
    int tile = blockIdx.x, split = blockIdx.y;
    int k0 = split * p.k_split;
    int steps = p.k_split / TREE_KSTEP, stages = p.stages;
    // Weights and input rows stream through shared memory in 3 or 4 stages of 64 k (cp.async: nothing held in
    // registers while in flight, and no stall to stage the input). A row's eight 16-byte pieces of a stage go to
    // piece ^ (row % 8), so that ldmatrix's eight row addresses per matrix hit distinct banks (and as wgmma's 128-byte
    // swizzle lays them out). Thread tid copies piece tid % 8 of weight rows tid / 8 + 16j, and of input rows likewise.
    int piece = tid & 7, first = tid >> 3;
    int swizzled = (piece ^ (first & 7)) * 8;
    const bf16* src[TREE_TILE / 16];
#pragma unroll
    for (int j = 0; j < TREE_TILE / 16; j++) src[j] = tree_weight_row<MODE>(p, tile, first + 16 * j) + k0 + piece * 8;
    auto issue_weights = [&](int s)
    {
        bf16* stage = smem + (s % stages) * STAGE + first * TREE_KSTEP + swizzled;
#pragma unroll
        for (int j = 0; j < TREE_TILE / 16; j++) cp_async16_l2_256(stage + 16 * j * TREE_KSTEP, src[j] + s * TREE_KSTEP);
    };
    const bf16* xs = p.x + (int64_t)first * p.k + k0 + piece * 8;
    auto issue_rows = [&](int s)
    {
        bf16* stage = smem + (s % stages) * STAGE + WSTAGE + first * TREE_KSTEP + swizzled;
#pragma unroll
        for (int j = 0; j < (ROWS + 15) / 16; j++)
            if (first + 16 * j < ROWS) cp_async16(stage + 16 * j * TREE_KSTEP, xs + (int64_t)16 * j * p.k + s * TREE_KSTEP);
    };
    // the first stages' weights before the previous kernel ends; the input rows (its output) after; one commit group
    // per stage, the weights of the first stages riding in the first group
    for (int s = 0; s < stages - 1; s++)
        if (s < steps) issue_weights(s);
    // The sums, as mma.sync lays out a 16 x 8 tile: element 4nt + i of acc[mt] is output row acc_row(mt) + g + 8(i / 2),
    // input row 8nt + 2q + i % 2 (g = lane / 4, q = lane % 4). wgmma: acc[mt] is the 64-row half mt of the tile, warp w
    // its rows 16w..16w+15; mma.sync: warp w takes rows 32w..32w+31, acc[mt] rows 16mt..16mt+15 of them.
    float acc[2][NT * 4];
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int i = 0; i < NT * 4; i++) acc[mt][i] = 0.f;
    auto acc_row = [&](int mt) { return TREE_WGMMA ? mt * 64 + warp * 16 : warp * 32 + mt * 16; };
    grid_wait();
    grid_trigger();
    for (int s = 0; s < stages - 1; s++)
    {
        if (s < steps) issue_rows(s);
        cp_async_commit();
    }
    for (int s = 0; s < steps; s++)
    {
        if (stages == 4)
            cp_async_wait<2>();
        else
            cp_async_wait<1>();
#if TREE_WGMMA
        // this thread's copies of stage s are visible to the products; the previous step's products have read their stage
        fence_proxy_async();
        wgmma_wait_all();
        wgmma_hold<NT * 4>(acc[0]);
        wgmma_hold<NT * 4>(acc[1]);
#endif
        __syncthreads();
        // the stage consumed in the previous step is free for step s + stages - 1
        if (s + stages - 1 < steps)
        {
            issue_weights(s + stages - 1);
            issue_rows(s + stages - 1);
        }
        cp_async_commit();
        const bf16* stage = smem + (s % stages) * STAGE;
#if TREE_WGMMA
        uint64_t wa = wgmma_desc(stage), wb = wgmma_desc(stage + WSTAGE);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < TREE_KSTEP / 16; kk++)
#pragma unroll
            for (int mt = 0; mt < 2; mt++) wgmma_bf16<ROWS>(acc[mt], wa + mt * (64 * TREE_KSTEP * 2 / 16) + kk * 2, wb + kk * 2);
        wgmma_commit();
        wgmma_hold<NT * 4>(acc[0]);
        wgmma_hold<NT * 4>(acc[1]);
#else
        const bf16* rows = stage + WSTAGE;
        // A fragments by ldmatrix: lane l gives row (l % 8) + 8 × ((l / 8) % 2) of the row tile and k piece 2ks + l / 16
        // (stored at piece ^ (row % 8)), so each fragment lands in four consecutive registers as mma takes them
        uint32_t a[2][4][4];
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
#pragma unroll
            for (int ks = 0; ks < 4; ks++)
            {
                int row = warp * 32 + mt * 16 + ((lane >> 3) & 1) * 8 + (lane & 7);
                ldmatrix_x4(a[mt][ks], stage + row * TREE_KSTEP + ((2 * ks + (lane >> 4)) ^ (lane & 7)) * 8);
            }
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
        {
#pragma unroll
            for (int kp = 0; kp < 2; kp++)
            {
                // B fragments of k-steps 2kp and 2kp + 1: lane l gives input row nt × 8 + l % 8, k piece 4kp + l / 8
                uint32_t b[4];
                ldmatrix_x4(b, rows + (nt * 8 + (lane & 7)) * TREE_KSTEP + ((4 * kp + (lane >> 3)) ^ (lane & 7)) * 8);
#pragma unroll
                for (int h = 0; h < 2; h++)
#pragma unroll
                    for (int mt = 0; mt < 2; mt++)
                        mma_bf16(&acc[mt][nt * 4], a[mt][2 * kp + h][0], a[mt][2 * kp + h][1], a[mt][2 * kp + h][2], a[mt][2 * kp + h][3], b[2 * h], b[2 * h + 1]);
            }
        }
#endif
    }
    cp_async_wait<0>();
    // the block's sums into the tile: st[input row][output row]
    int g = lane >> 2, q = lane & 3;
#if TREE_WGMMA
    wgmma_wait_all();
    wgmma_hold<NT * 4>(acc[0]);
    wgmma_hold<NT * 4>(acc[1]);
#endif
    __syncthreads();
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int i = 0; i < 4; i++)
                st[(nt * 8 + q * 2 + (i & 1)) * TREE_TSTRIDE + acc_row(mt) + g + (i >> 1) * 8] = acc[mt][nt * 4 + i];
    __syncthreads();
    int64_t n = p.n;
    if (MODE == 2 && gridDim.y == 1)
    {
        // gate/up in one split: silu(gate) · up straight from the tile (rows 0..63 gate, 64..127 up), no finish kernel
        constexpr int HALF = TREE_TILE / 2;
        for (int i = tid; i < ROWS * HALF / 4; i += TREE_THREADS)
        {
            int t = i / (HALF / 4), j = (i % (HALF / 4)) * 4;
            const float* gate = st + t * TREE_TSTRIDE + j;
            float o[4];
#pragma unroll
            for (int c = 0; c < 4; c++) o[c] = silu_times(gate[c], gate[c + HALF]);
            *reinterpret_cast<uint2*>(p.y + (int64_t)t * (n / 2) + tile * HALF + j) = make_uint2(pack_bf16(o[0], o[1]), pack_bf16(o[2], o[3]));
        }
    }
    else if (MODE != 3)
    {
        // the tile's sums for this split; tree_finish adds the splits and runs the epilogue, spread over many blocks
        float* work = p.work + (int64_t)split * ROWS * n;
        for (int i = tid; i < ROWS * TREE_TILE / 4; i += TREE_THREADS)
        {
            int t = i / (TREE_TILE / 4), l = (i % (TREE_TILE / 4)) * 4, r = tile * TREE_TILE + l;
            if (r < n) *reinterpret_cast<float4*>(work + t * n + r) = *reinterpret_cast<const float4*>(st + t * TREE_TSTRIDE + l);
        }
    }
    else
    {
        // the argmax of each input row over this tile's logits: warp w takes rows w, w + 4, ...
        for (int t = warp; t < ROWS; t += TREE_THREADS / WARP)
        {
            unsigned long long best = 0ull;
            for (int l = lane; l < TREE_TILE; l += WARP)
            {
                int r = tile * TREE_TILE + l;
                if (r >= n) continue;
                float v = round_bf16(st[t * TREE_TSTRIDE + l]);
                if (p.y != nullptr) p.y[(int64_t)t * n + r] = __float2bfloat16_rn(v);
                uint32_t bits = __float_as_uint(v);
                bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
                unsigned long long key = ((unsigned long long)bits << 32) | (unsigned long long)(0xffffffffu - (uint32_t)r);
                best = key > best ? key : best;
            }
            for (int o = WARP / 2; o > 0; o >>= 1)
            {
                unsigned long long other = __shfl_xor_sync(0xffffffffu, best, o);
                best = other > best ? other : best;
            }
            if (lane == 0) atomicMax(p.argmax + t, best);
        }
    }
}

// Entry points per mode and padded row count (8, 16, 32, 64).
extern "C" __global__ void __launch_bounds__(TREE_THREADS) tree_rows_8(TreeGemmParams p) { tree_gemm<0, 1>(p); }
extern "C" __global__ void __launch_bounds__(TREE_THREADS) tree_rows_16(TreeGemmParams p) { tree_gemm<0, 2>(p); }
extern "C" __global__ void __launch_bounds__(TREE_THREADS) tree_rows_32(TreeGemmParams p) { tree_gemm<0, 4>(p); }
extern "C" __global__ void __launch_bounds__(TREE_THREADS) tree_rows_64(TreeGemmParams p) { tree_gemm<0, 8>(p); }
extern "C" __global__ void __launch_bounds__(TREE_THREADS) tree_qkv_8(TreeGemmParams p) { tree_gemm<1, 1>(p); }
extern "C" __global__ void __launch_bounds__(TREE_THREADS) tree_qkv_16(TreeGemmParams p) { tree_gemm<1, 2>(p); }
extern "C" __global__ void __launch_bounds__(TREE_THREADS) tree_qkv_32(TreeGemmParams p) { tree_gemm<1, 4>(p); }
extern "C" __global__ void __launch_bounds__(TREE_THREADS) tree_qkv_64(TreeGemmParams p) { tree_gemm<1, 8>(p); }
extern "C" __global__ void __launch_bounds__(TREE_THREADS) tree_gate_up_8(TreeGemmParams p) { tree_gemm<2, 1>(p); }
extern "C" __global__ void __launch_bounds__(TREE_THREADS) tree_gate_up_16(TreeGemmParams p) { tree_gemm<2, 2>(p); }
extern "C" __global__ void __launch_bounds__(TREE_THREADS) tree_gate_up_32(TreeGemmParams p) { tree_gemm<2, 4>(p); }
extern "C" __global__ void __launch_bounds__(TREE_THREADS) tree_gate_up_64(TreeGemmParams p) { tree_gemm<2, 8>(p); }
extern "C" __global__ void __launch_bounds__(TREE_THREADS) tree_head_argmax_8(TreeGemmParams p) { tree_gemm<3, 1>(p); }
extern "C" __global__ void __launch_bounds__(TREE_THREADS) tree_head_argmax_16(TreeGemmParams p) { tree_gemm<3, 2>(p); }
extern "C" __global__ void __launch_bounds__(TREE_THREADS) tree_head_argmax_32(TreeGemmParams p) { tree_gemm<3, 4>(p); }
extern "C" __global__ void __launch_bounds__(TREE_THREADS) tree_head_argmax_64(TreeGemmParams p) { tree_gemm<3, 8>(p); }

struct TreeFinishParams
{
    const float* work;          // [splits, rows, n]: a product's sums per split
    int splits;                 // at most 8
    int n;                      // the product's output rows
    int rows;
    bf16* y;                    // mode 0: hidden [rows, n], the residual added in place; 1: q [rows, heads × head_dim];
                                // 2: silu(gate) · up [rows, n / 2]
    const bf16* norm;           // mode 0: the next RMSNorm's weight
    bf16* normed;               // mode 0: [rows, n]
    float eps;
    const bf16* b0;             // mode 1: q, k and v biases, or null
    const bf16* b1;
    const bf16* b2;
    const int64_t* state;       // the step's inputs
    const float* cos;           // [positions, head_dim] float32
    const float* sin;
    bf16* k_cache;              // this layer's pool of rows (kv_row)
    bf16* v_cache;
    int64_t head_stride;        // elements between kv heads of a row
    int64_t row_stride;         // elements between rows
    const int* tables;          // every slot's block table, table_stride apart
    int block_shift;            // log2 of the block size
    int table_stride;
    int heads;
    int kv_heads;
    int head_dim;
};

#define TREE_MAX_SPLITS 8

// Four consecutive sums of a product at work offset `at`, its splits added in split order (so a step repeats bitwise);
// every split's load is issued before the first add.
__device__ __forceinline__ float4 split_sum4(const TreeFinishParams& p, int64_t at)
{
    int64_t plane = (int64_t)p.rows * p.n;
    float4 v[TREE_MAX_SPLITS];
#pragma unroll
    for (int sp = 0; sp < TREE_MAX_SPLITS; sp++)
        if (sp < p.splits) v[sp] = __ldcg(reinterpret_cast<const float4*>(p.work + sp * plane + at));
    float4 sum = v[0];
#pragma unroll
    for (int sp = 1; sp < TREE_MAX_SPLITS; sp++)
    {
        if (sp < p.splits)
        {
            sum.x += v[sp].x;
            sum.y += v[sp].y;
            sum.z += v[sp].z;
            sum.w += v[sp].w;
        }
    }
    return sum;
}

__device__ __forceinline__ float f4(const float4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

// The epilogue of a product, over many blocks (four outputs per thread):
// mode 0 (block per input row, NORM_THREADS): the residual add, then the row's RMSNorm into normed;
// mode 1: q/k rotary (a thread takes four dimensions of the first half of a head and their partners) into q or the
//         cache, v into the cache; only the step's entries write the cache, each at its sequence's length + its entry;
// mode 2: silu(gate) · up (gate and up interleaved per 64 features, as tree_gemm's mode 2 lays them out).
template <int MODE>
__device__ void tree_finish(const TreeFinishParams& p)
{
    grid_wait();
    grid_trigger();
    if (MODE == 0)
    {
        int t = blockIdx.x;
        bf16* hidden = p.y + (int64_t)t * p.n;
        for (int c = threadIdx.x; c < p.n / 4; c += blockDim.x)
        {
            float4 sum = split_sum4(p, (int64_t)t * p.n + c * 4);
            uint2 old = __ldcg(reinterpret_cast<const uint2*>(hidden) + c);
            float a = round_bf16(lo_bf16(old.x) + round_bf16(sum.x)), b = round_bf16(hi_bf16(old.x) + round_bf16(sum.y));
            float d = round_bf16(lo_bf16(old.y) + round_bf16(sum.z)), e = round_bf16(hi_bf16(old.y) + round_bf16(sum.w));
            reinterpret_cast<uint2*>(hidden)[c] = make_uint2(pack_bf16(a, b), pack_bf16(d, e));
        }
        __syncthreads();
        rms_norm_block(hidden, p.norm, p.eps, p.n, p.normed + (int64_t)t * p.n);
        return;
    }
    int64_t item = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (MODE == 2)
    {
        int features = p.n / 2, per_row = features / 4;
        if (item >= (int64_t)p.rows * per_row) return;
        int t = (int)(item / per_row), j = (int)(item % per_row) * 4;
        int gate = (j / 64) * 128 + j % 64;
        float4 g = split_sum4(p, (int64_t)t * p.n + gate), u = split_sum4(p, (int64_t)t * p.n + gate + 64);
        float o[4];
#pragma unroll
        for (int i = 0; i < 4; i++) o[i] = silu_times(f4(g, i), f4(u, i));
        *reinterpret_cast<uint2*>(p.y + (int64_t)t * features + j) = make_uint2(pack_bf16(o[0], o[1]), pack_bf16(o[2], o[3]));
        return;
    }
    int hd = p.head_dim, half = hd / 2, qr = p.heads * hd, kr = p.kv_heads * hd;
    int pair_items = (p.heads + p.kv_heads) * half / 4, per_row = pair_items + kr / 4;
    if (item >= (int64_t)p.rows * per_row) return;
    int t = (int)(item / per_row), it = (int)(item % per_row);
    int seq = tree_row_seq(p.state, p.rows, t);
    bool cache = seq >= 0;
    // a padding row's q is computed at sequence 0's positions and never read
    TreeSeq s = tree_seq(p.state, p.rows, p.tables, p.table_stride, cache ? seq : 0);
    int64_t at = s.length + (t - s.first);
    const int64_t* depths = p.state + 2 + p.rows;
    if (it < pair_items)
    {
        int head = it * 4 / half, d = it * 4 % half;
        int r = head * hd + d;              // output row of the product
        bool is_q = r < qr;
        if (!is_q && !cache) return;
        float4 x1 = split_sum4(p, (int64_t)t * p.n + r), x2 = split_sum4(p, (int64_t)t * p.n + r + half);
        int64_t pos = s.length + depths[t];
        float4 c1 = __ldg(reinterpret_cast<const float4*>(p.cos + pos * hd + d)), c2 = __ldg(reinterpret_cast<const float4*>(p.cos + pos * hd + d + half));
        float4 s1 = __ldg(reinterpret_cast<const float4*>(p.sin + pos * hd + d)), s2 = __ldg(reinterpret_cast<const float4*>(p.sin + pos * hd + d + half));
        const bf16* bias = is_q ? p.b0 : p.b1;
        int br = is_q ? r : r - qr;
        float o1[4], o2[4];
#pragma unroll
        for (int i = 0; i < 4; i++)
        {
            float a = round_bf16(f4(x1, i)), b = round_bf16(f4(x2, i));
            if (bias != nullptr)
            {
                a = round_bf16(a + __bfloat162float(bias[br + i]));
                b = round_bf16(b + __bfloat162float(bias[br + half + i]));
            }
            float ca = round_bf16(f4(c1, i)), cb = round_bf16(f4(c2, i)), sa = round_bf16(f4(s1, i)), sb = round_bf16(f4(s2, i));
            o1[i] = round_bf16(round_bf16(a * ca) + round_bf16(-b * sa));
            o2[i] = round_bf16(round_bf16(b * cb) + round_bf16(a * sb));
        }
        bf16* dst = is_q ? p.y + (int64_t)t * qr + r : p.k_cache + kv_row(s.table, p.block_shift, at) * p.row_stride + (br / hd) * p.head_stride + d;
        *reinterpret_cast<uint2*>(dst) = make_uint2(pack_bf16(o1[0], o1[1]), pack_bf16(o1[2], o1[3]));
        *reinterpret_cast<uint2*>(dst + half) = make_uint2(pack_bf16(o2[0], o2[1]), pack_bf16(o2[2], o2[3]));
    }
    else if (cache)
    {
        int row = (it - pair_items) * 4;    // v row: kv head row / head_dim, dimension row % head_dim
        float4 v = split_sum4(p, (int64_t)t * p.n + qr + kr + row);
        float o[4];
#pragma unroll
        for (int i = 0; i < 4; i++)
        {
            o[i] = round_bf16(f4(v, i));
            if (p.b2 != nullptr) o[i] = round_bf16(o[i] + __bfloat162float(p.b2[row + i]));
        }
        *reinterpret_cast<uint2*>(p.v_cache + kv_row(s.table, p.block_shift, at) * p.row_stride + (row / hd) * p.head_stride + row % hd) =
            make_uint2(pack_bf16(o[0], o[1]), pack_bf16(o[2], o[3]));
    }
}

extern "C" __global__ void __launch_bounds__(NORM_THREADS) tree_finish_rows(TreeFinishParams p) { tree_finish<0>(p); }
extern "C" __global__ void __launch_bounds__(256) tree_finish_qkv(TreeFinishParams p) { tree_finish<1>(p); }
extern "C" __global__ void __launch_bounds__(256) tree_finish_gate_up(TreeFinishParams p) { tree_finish<2>(p); }

struct TreeNormParams
{
    const int64_t* state;       // the step's inputs; tokens read when embed is set
    int rows;
    const bf16* embed;          // embedding table, or null: normalise hidden as it is
    const bf16* norm;
    float eps;
    int k;
    bf16* hidden;               // [rows, k]
    bf16* normed;               // [rows, k]
    unsigned long long* argmax; // [rows], cleared when embed is set
};

// Block t: (hidden[t] = embed[token t],) normed[t] = RMSNorm(hidden[t]).
extern "C" __global__ void __launch_bounds__(NORM_THREADS) tree_norm(TreeNormParams p)
{
    grid_wait();
    grid_trigger();
    int t = blockIdx.x;
    bf16* hidden = p.hidden + (int64_t)t * p.k;
    if (p.embed != nullptr)
    {
        const uint4* row = reinterpret_cast<const uint4*>(p.embed + p.state[2 + t] * (int64_t)p.k);
        for (int i = threadIdx.x; i < p.k / 8; i += blockDim.x) reinterpret_cast<uint4*>(hidden)[i] = row[i];
        if (threadIdx.x == 0) p.argmax[t] = 0ull;
        __syncthreads();
    }
    rms_norm_block(hidden, p.norm, p.eps, p.k, p.normed + (int64_t)t * p.k);
}

struct TreeAttentionParams
{
    const bf16* q;              // [rows, heads × head_dim], rotated
    const bf16* k_cache;        // this layer's pool of rows (kv_row)
    const bf16* v_cache;
    int64_t head_stride;        // elements between kv heads of a row
    int64_t row_stride;         // elements between rows
    const int* tables;          // every slot's block table, table_stride apart
    int block_shift;            // log2 of the block size
    int table_stride;
    const int64_t* state;       // the step's inputs
    float* partial_o;           // [chunks, rows × heads, head_dim] float32
    float* partial_ml;          // [chunks, rows × heads, 2]: the chunk's max score (log2 units) and sum of exponentials
    bf16* out;                  // [rows, heads × head_dim] (the merge)
    int rows;
    int heads;
    int kv_heads;
    int chunk;                  // keys per block, a multiple of TREE_SUB
    int chunks;                 // blocks over the keys (at most TREE_MAX_CHUNKS)
    int seq_groups;             // row groups per sequence: gridDim.z = sequences (bound) × seq_groups
    float scale;
};

// Tree attention: block (chunk, kv head, sequence × row group) takes a chunk of one sequence's keys for up to 64 query
// rows of one kv head (rows are (query head of the group, entry of the sequence); a warp per 16 rows, as many warps as
// the widest sequence needs; blocks past the step's sequences or rows leave at once), flash-style in sub-chunks of 64
// keys double-buffered through shared memory by cp.async: scores on the tensor cores, an online softmax in float32 (log2
// units), the probabilities rounded to bf16 for the product with V. Row t sees its sequence's cached prefix (key <
// length) and the entries in its ancestor set. Each block leaves its rows' partial output, maximum and sum; tree_attention_merge adds
// the chunks.
template <int HD>
__device__ void tree_attention(const TreeAttentionParams& p)
{
    constexpr int KD = HD / 16;             // mma k-steps over the head dimension
    constexpr int DN = HD / 8;              // column tiles of the output
    constexpr int STRIDE = HD + 8;          // padded key / value row (bf16)
    constexpr int BUFFER = TREE_SUB * STRIDE;
    extern __shared__ __align__(16) unsigned char tree_smem[];
    bf16* kbuf = reinterpret_cast<bf16*>(tree_smem);   // two sub-chunks of keys, then two of values
    bf16* vbuf = kbuf + 2 * BUFFER;
    int tid = threadIdx.x, threads = blockDim.x, lane = tid & (WARP - 1), warp = tid / WARP, g = lane >> 2, q = lane & 3;
    int chunk = blockIdx.x, kvh = blockIdx.y, seq = blockIdx.z / p.seq_groups, group = blockIdx.z % p.seq_groups;
    int groups = p.heads / p.kv_heads, block_rows = threads / WARP * 16;
    // The step's inputs (uploaded before the step) and the cached prefix (written by earlier steps) are not the previous
    // kernel's output: read them, and start copying a first sub-chunk of prefix keys, before grid_wait.
    if (seq >= (int)p.state[0]) return;
    TreeSeq sq = tree_seq(p.state, p.rows, p.tables, p.table_stride, seq);
    int64_t length = sq.length;
    int entries = sq.entries, query_rows = groups * entries;
    if (group * block_rows >= query_rows) return;
    const unsigned long long* ancestors = reinterpret_cast<const unsigned long long*>(p.state + 2 + 3 * p.rows);
    int64_t keys = length + entries;
    int64_t begin = (int64_t)chunk * p.chunk, end = min(begin + p.chunk, keys);
    const bf16* kc = p.k_cache + kvh * p.head_stride;
    const bf16* vc = p.v_cache + kvh * p.head_stride;
    const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
    // a thread copies 16-byte piece tid % (HD / 8) of keys tid / (HD / 8) + j × threads / (HD / 8)
    int piece = tid % (HD / 8), first_key = tid / (HD / 8), key_step = threads / (HD / 8);
    // sub-chunks start at multiples of TREE_SUB: with blocks of at least TREE_SUB keys a sub-chunk lies in one block
    bool sub_in_block = (1 << p.block_shift) >= TREE_SUB;
    auto row_of = [&](int64_t position) { return kv_row(sq.table, p.block_shift, position); };
    auto stage = [&](int64_t base, int buffer)
    {
        if (base + TREE_SUB <= end)
        {
            // a whole sub-chunk: no bounds on the cache
            bf16* kd = kbuf + buffer * BUFFER + piece * 8;
            bf16* vd = vbuf + buffer * BUFFER + piece * 8;
            int64_t first_row = sub_in_block ? row_of(base) : 0;
            for (int key = first_key; key < TREE_SUB; key += key_step)
            {
                int64_t at = (sub_in_block ? first_row + key : row_of(base + key)) * p.row_stride + piece * 8;
                cp_async16(kd + key * STRIDE, kc + at);
                cp_async16(vd + key * STRIDE, vc + at);
            }
            return;
        }
        for (int i = tid; i < TREE_SUB * HD / 8; i += threads)
        {
            int key = i / (HD / 8), c = i % (HD / 8);
            bf16* kd = kbuf + buffer * BUFFER + key * STRIDE + c * 8;
            bf16* vd = vbuf + buffer * BUFFER + key * STRIDE + c * 8;
            if (base + key < end)
            {
                int64_t at = row_of(base + key) * p.row_stride + c * 8;
                cp_async16(kd, kc + at);
                cp_async16(vd, vc + at);
            }
            else
            {
                *reinterpret_cast<uint4*>(kd) = zero;
                *reinterpret_cast<uint4*>(vd) = zero;
            }
        }
    };
    int subs = begin < end ? (int)((end - begin + TREE_SUB - 1) / TREE_SUB) : 0;
    bool early = subs > 0 && begin + TREE_SUB <= length;
    if (early) stage(begin, 0);
    grid_wait();
    grid_trigger();
    int rr[2] = {group * block_rows + warp * 16 + g, group * block_rows + warp * 16 + g + 8};
    int index[2];
    unsigned long long seen[2];
    const uint32_t* qr[2];
#pragma unroll
    for (int j = 0; j < 2; j++)
    {
        int r = rr[j] < query_rows ? rr[j] : 0;
        int e = sq.first + r % entries;                        // the step's row
        index[j] = e * p.heads + kvh * groups + r / entries;   // output row: [row][head]
        seen[j] = ancestors[e];                                // bit j: the sequence's entry j
        qr[j] = reinterpret_cast<const uint32_t*>(p.q + (int64_t)index[j] * HD);
    }
    // Q as the A operand of every k-step, straight into the registers mma takes: words 8kd + q and 8kd + 4 + q of rows
    // g and g + 8
    uint32_t qa[KD][4];
#pragma unroll
    for (int kd = 0; kd < KD; kd++)
    {
        qa[kd][0] = __ldcg(qr[0] + kd * 8 + q);
        qa[kd][1] = __ldcg(qr[1] + kd * 8 + q);
        qa[kd][2] = __ldcg(qr[0] + kd * 8 + 4 + q);
        qa[kd][3] = __ldcg(qr[1] + kd * 8 + 4 + q);
    }
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    float o[DN][4];
#pragma unroll
    for (int dn = 0; dn < DN; dn++)
#pragma unroll
        for (int i = 0; i < 4; i++) o[dn][i] = 0.f;
    if (subs > 0 && !early) stage(begin, 0);
    cp_async_commit();
    float scale = p.scale * 1.4426950408889634f;
    for (int sub = 0; sub < subs; sub++)
    {
        int64_t base = begin + (int64_t)sub * TREE_SUB;
        if (sub + 1 < subs) stage(base + TREE_SUB, (sub + 1) & 1);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const bf16* ks = kbuf + (sub & 1) * BUFFER;
        const bf16* vs = vbuf + (sub & 1) * BUFFER;
        // scores: K's B operand by ldmatrix (lane l gives key nt × 8 + l % 8 at dimension 32kp + 8 × (l / 8))
        float s[8][4];
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
        {
#pragma unroll
            for (int i = 0; i < 4; i++) s[nt][i] = 0.f;
#pragma unroll
            for (int kp = 0; kp < KD / 2; kp++)
            {
                uint32_t b[4];
                ldmatrix_x4(b, ks + (nt * 8 + (lane & 7)) * STRIDE + kp * 32 + (lane >> 3) * 8);
                mma_bf16(s[nt], qa[2 * kp][0], qa[2 * kp][1], qa[2 * kp][2], qa[2 * kp][3], b[0], b[1]);
                mma_bf16(s[nt], qa[2 * kp + 1][0], qa[2 * kp + 1][1], qa[2 * kp + 1][2], qa[2 * kp + 1][3], b[2], b[3]);
            }
        }
        // scale (to log2 units) and mask; the online softmax per row (a row's four threads hold its 64 keys). A sub-chunk
        // of prefix keys only is visible to every row: no mask.
        float mx[2] = {-INFINITY, -INFINITY};
        bool prefix = base + TREE_SUB <= min(length, end);
        if (prefix)
        {
            // the maximum of the raw scores, scaled once (scale > 0); the exponentials below scale each score in an fma
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
#pragma unroll
                for (int i = 0; i < 4; i++) mx[i >> 1] = fmaxf(mx[i >> 1], s[nt][i]);
            mx[0] *= scale;
            mx[1] *= scale;
        }
        else
        {
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
#pragma unroll
                for (int i = 0; i < 4; i++)
                {
                    int j = i >> 1;
                    int64_t key = base + nt * 8 + q * 2 + (i & 1);
                    int64_t rel = key - length;
                    bool visible = key < end && (rel < 0 || ((seen[j] >> rel) & 1ull));
                    s[nt][i] = visible ? s[nt][i] * scale : -INFINITY;
                    mx[j] = fmaxf(mx[j], s[nt][i]);
                }
        }
        float corr[2];
#pragma unroll
        for (int j = 0; j < 2; j++)
        {
            mx[j] = fmaxf(mx[j], __shfl_xor_sync(0xffffffffu, mx[j], 1));
            mx[j] = fmaxf(mx[j], __shfl_xor_sync(0xffffffffu, mx[j], 2));
            float mn = fmaxf(m[j], mx[j]);
            corr[j] = mn == -INFINITY ? 1.f : exp2f(m[j] - mn);
            m[j] = mn;
        }
        float sum[2] = {0.f, 0.f};
        if (prefix)
        {
            // prefix keys only: every score and the maximum are finite
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
#pragma unroll
                for (int i = 0; i < 4; i++)
                {
                    float e = exp2f(fmaf(s[nt][i], scale, -m[i >> 1]));
                    s[nt][i] = e;
                    sum[i >> 1] += e;
                }
        }
        else
        {
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
#pragma unroll
                for (int i = 0; i < 4; i++)
                {
                    int j = i >> 1;
                    float e = s[nt][i] == -INFINITY ? 0.f : exp2f(s[nt][i] - m[j]);
                    s[nt][i] = e;
                    sum[j] += e;
                }
        }
#pragma unroll
        for (int j = 0; j < 2; j++) l[j] = l[j] * corr[j] + sum[j];
#pragma unroll
        for (int dn = 0; dn < DN; dn++)
#pragma unroll
            for (int i = 0; i < 4; i++) o[dn][i] *= corr[i >> 1];
        // o += P V: P's score tiles are the A operand as they lie; V's B operand through ldmatrix.trans
#pragma unroll
        for (int kt = 0; kt < 4; kt++)
        {
            uint32_t a0 = pack_bf16(s[2 * kt][0], s[2 * kt][1]), a1 = pack_bf16(s[2 * kt][2], s[2 * kt][3]);
            uint32_t a2 = pack_bf16(s[2 * kt + 1][0], s[2 * kt + 1][1]), a3 = pack_bf16(s[2 * kt + 1][2], s[2 * kt + 1][3]);
#pragma unroll
            for (int dn = 0; dn < DN; dn += 2)
            {
                int mat = lane >> 3;
                const bf16* row = vs + (kt * 16 + (mat & 1) * 8 + (lane & 7)) * STRIDE + (dn + (mat >> 1)) * 8;
                uint32_t address = (uint32_t)__cvta_generic_to_shared(row);
                uint32_t r0, r1, r2, r3;
                asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                             : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(address));
                mma_bf16(o[dn], a0, a1, a2, a3, r0, r1);
                mma_bf16(o[dn + 1], a0, a1, a2, a3, r2, r3);
            }
        }
        __syncthreads();   // the next iteration fills this buffer again
    }
    cp_async_wait<0>();
    // the chunk's partials: a row's four threads hold disjoint columns; the sum of exponentials is summed over them
#pragma unroll
    for (int j = 0; j < 2; j++)
    {
        l[j] += __shfl_xor_sync(0xffffffffu, l[j], 1);
        l[j] += __shfl_xor_sync(0xffffffffu, l[j], 2);
    }
    int64_t stride_rows = (int64_t)p.rows * p.heads;
#pragma unroll
    for (int j = 0; j < 2; j++)
    {
        if (rr[j] >= query_rows) continue;
        float* po = p.partial_o + ((int64_t)chunk * stride_rows + index[j]) * HD;
#pragma unroll
        for (int dn = 0; dn < DN; dn++)
            *reinterpret_cast<float2*>(po + dn * 8 + q * 2) = make_float2(o[dn][j * 2], o[dn][j * 2 + 1]);
        if (q == 0) *reinterpret_cast<float2*>(p.partial_ml + ((int64_t)chunk * stride_rows + index[j]) * 2) = make_float2(m[j], l[j]);
    }
}

// The chunks of tree_attention added: a warp per (entry, head); lane c holds chunk c's maximum and sum (at most 32
// chunks), then lane l adds dimensions HD/32 × l onwards over the chunks. The first TREE_MERGE_AHEAD chunks' partial rows
// are loaded before the maximum is known, so that their loads overlap those of the maxima.
#define TREE_MERGE_AHEAD 8

template <int PER>
__device__ __forceinline__ void load_partial(float* v, const float* at)
{
    if constexpr (PER == 4)
    {
        float4 x = __ldcg(reinterpret_cast<const float4*>(at));
        v[0] = x.x;
        v[1] = x.y;
        v[2] = x.z;
        v[3] = x.w;
    }
    else
    {
        float2 x = __ldcg(reinterpret_cast<const float2*>(at));
        v[0] = x.x;
        v[1] = x.y;
    }
}

template <int HD>
__device__ void tree_attention_merge(const TreeAttentionParams& p)
{
    constexpr int PER = HD / WARP;
    grid_wait();
    grid_trigger();
    int lane = threadIdx.x & (WARP - 1);
    int64_t stride_rows = (int64_t)p.rows * p.heads;
    int64_t idx = (int64_t)blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (idx >= stride_rows || tree_row_seq(p.state, p.rows, (int)(idx / p.heads)) < 0) return;   // padding rows: never read
    const float* po = p.partial_o + idx * HD + lane * PER;
    int64_t plane = stride_rows * HD;
    float ahead[TREE_MERGE_AHEAD][PER];
#pragma unroll
    for (int c = 0; c < TREE_MERGE_AHEAD; c++)
        if (c < p.chunks) load_partial<PER>(ahead[c], po + c * plane);
    float m = -INFINITY, l = 0.f;
    if (lane < p.chunks)
    {
        float2 v = __ldcg(reinterpret_cast<const float2*>(p.partial_ml + ((int64_t)lane * stride_rows + idx) * 2));
        m = v.x;
        l = v.y;
    }
    float big = warp_max(m);
    float w = m == -INFINITY ? 0.f : exp2f(m - big);
    float total = warp_sum(w * l);
    float acc[PER];
#pragma unroll
    for (int d = 0; d < PER; d++) acc[d] = 0.f;
#pragma unroll
    for (int c = 0; c < TREE_MERGE_AHEAD; c++)
    {
        if (c >= p.chunks) break;
        float wc = __shfl_sync(0xffffffffu, w, c);
#pragma unroll
        for (int d = 0; d < PER; d++) acc[d] = fmaf(wc, ahead[c][d], acc[d]);
    }
    for (int c = TREE_MERGE_AHEAD; c < p.chunks; c++)
    {
        float v[PER];
        load_partial<PER>(v, po + c * plane);
        float wc = __shfl_sync(0xffffffffu, w, c);
#pragma unroll
        for (int d = 0; d < PER; d++) acc[d] = fmaf(wc, v[d], acc[d]);
    }
    float inv = 1.f / total;
    uint32_t* out = reinterpret_cast<uint32_t*>(p.out + idx * HD + lane * PER);
#pragma unroll
    for (int d = 0; d < PER / 2; d++) out[d] = pack_bf16(acc[2 * d] * inv, acc[2 * d + 1] * inv);
}

extern "C" __global__ void __launch_bounds__(TREE_THREADS) tree_attention_64(TreeAttentionParams p) { tree_attention<64>(p); }
extern "C" __global__ void __launch_bounds__(TREE_THREADS) tree_attention_128(TreeAttentionParams p) { tree_attention<128>(p); }
extern "C" __global__ void __launch_bounds__(TREE_THREADS) tree_attention_merge_64(TreeAttentionParams p) { tree_attention_merge<64>(p); }
extern "C" __global__ void __launch_bounds__(TREE_THREADS) tree_attention_merge_128(TreeAttentionParams p) { tree_attention_merge<128>(p); }

struct TreeAcceptParams
{
    const int64_t* state;              // the step's inputs
    int rows;
    const unsigned long long* argmax;  // [rows], packed
    bf16* cache;                       // the KV pool: [layers, 2, rows, kv heads, head_dim] (kv_row)
    int64_t layer_stride;              // elements
    int64_t kv_stride;
    int64_t row_stride;
    int64_t head_stride;
    const int* tables;                 // every slot's block table, table_stride apart
    int block_shift;
    int table_stride;
    int head_dim;
    int layers;                        // gridDim.z = sequences (bound) × layers
    int64_t* result;                   // per sequence TREE_RESULT: accepted count, bonus token, tokens by depth 1.. (64),
                                       // the sequence's entries by depth 1.. (64)
};

// Greedy acceptance and the cache compaction, per sequence. Every block decides its sequence's path (a walk over at most
// 64 entries in index order, parents first): an entry is accepted when its parent is and its token is the target's
// choice after its parent (the argmax, or the forced token); the deepest accepted entry, the lowest index among equals,
// ends the path, and the choice after it is the bonus token. Block (kv head, k/v, sequence × layers + layer) then moves
// the path's rows of its cache to length + 1, length + 2, ... (read all, then write: a row may move onto another's
// source). The sequence's block (0, 0, layer 0) writes its result.
extern "C" __global__ void __launch_bounds__(TREE_THREADS) tree_accept(TreeAcceptParams p)
{
    __shared__ int path[TREE_MAX_ROWS];
    __shared__ int count;
    __shared__ uint4 moved[TREE_MAX_ROWS * 128 / 8];
    __shared__ int64_t tokens[TREE_MAX_ROWS], depths[TREE_MAX_ROWS], parents[TREE_MAX_ROWS], choices[TREE_MAX_ROWS];
    const int64_t* s = p.state;
    int seq = blockIdx.z / p.layers, layer = blockIdx.z % p.layers;
    if (seq >= (int)s[0]) return;
    grid_wait();
    grid_trigger();
    TreeSeq sq = tree_seq(s, p.rows, p.tables, p.table_stride, seq);
    int64_t length = sq.length;
    int entries = sq.entries, first = sq.first;
    // the inputs into shared memory first (the sequence's entries, parents as entries), all loads in flight at once: the
    // walk below is serial
    for (int e = threadIdx.x; e < entries; e += blockDim.x)
    {
        int row = first + e;
        tokens[e] = s[2 + row];
        depths[e] = s[2 + p.rows + row];
        parents[e] = s[2 + 2 * p.rows + row] - first;
        int64_t forced = s[2 + 4 * p.rows + row];
        choices[e] = forced >= 0 ? forced : (int64_t)(0xffffffffu - (uint32_t)(__ldcg(p.argmax + row) & 0xffffffffull));
    }
    __syncthreads();
    if (threadIdx.x == 0)
    {
        unsigned long long accepted = 1ull;
        int best = 0;
        for (int e = 1; e < entries; e++)
        {
            int parent = (int)parents[e];
            if (((accepted >> parent) & 1ull) && tokens[e] == choices[parent])
            {
                accepted |= 1ull << e;
                if (depths[e] > depths[best]) best = e;
            }
        }
        int c = (int)depths[best];
        for (int e = best; e != 0; e = (int)parents[e]) path[depths[e] - 1] = e;
        count = c;
        if (blockIdx.x == 0 && blockIdx.y == 0 && layer == 0)
        {
            int64_t* result = p.result + (int64_t)seq * TREE_RESULT;
            result[0] = c;
            result[1] = choices[best];
            for (int d = 0; d < c; d++)
            {
                result[2 + d] = tokens[path[d]];
                result[2 + TREE_MAX_ROWS + d] = path[d];
            }
        }
    }
    __syncthreads();
    int c = count, vectors = p.head_dim / 8;   // 16-byte vectors per head
    bf16* base = p.cache + layer * p.layer_stride + blockIdx.y * p.kv_stride + blockIdx.x * p.head_stride;
    for (int i = threadIdx.x; i < c * vectors; i += blockDim.x)
    {
        const bf16* from = base + kv_row(sq.table, p.block_shift, length + path[i / vectors]) * p.row_stride;
        moved[i] = __ldcg(reinterpret_cast<const uint4*>(from) + i % vectors);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < c * vectors; i += blockDim.x)
    {
        bf16* to = base + kv_row(sq.table, p.block_shift, length + 1 + i / vectors) * p.row_stride;
        reinterpret_cast<uint4*>(to)[i % vectors] = moved[i];
    }
}
