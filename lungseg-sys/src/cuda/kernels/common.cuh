/* Shared by every lungseg CUDA kernel. Prepended to each kernel source before NVRTC compiles it
 * (no #include, no CUDA headers: halves are raw `unsigned short`, conversions are inline PTX).
 *
 * The Philox part is plain C as well: tests/cuda_philox_c.rs compiles this very file with the
 * host C compiler and checks it against lungseg-sys/src/philox.rs for many (seed, sample,
 * layer, index), so the GPU masks are the same function as the CPU engine's
 * (docs/model-format.md, "Dropout layers and masks").
 */
#ifndef LUNGSEG_COMMON_CUH
#define LUNGSEG_COMMON_CUH

#ifdef __CUDACC__
#define LS_FN __device__ __forceinline__
#else
#define LS_FN static inline
#endif

typedef unsigned int ls_u32;
typedef unsigned long long ls_u64;

#define LS_PHILOX_M0 0xD2511F53u
#define LS_PHILOX_M1 0xCD9E8D57u
#define LS_PHILOX_W0 0x9E3779B9u
#define LS_PHILOX_W1 0xBB67AE85u

/* Philox4x32-10, word 0 of the output block (the only word the masks use).
 * counter = [sample, layer, index_lo, index_hi], key = [seed_lo, seed_hi]. */
LS_FN ls_u32 ls_philox_w0(ls_u32 c0, ls_u32 c1, ls_u32 c2, ls_u32 c3, ls_u32 k0, ls_u32 k1)
{
    int r;
    for (r = 0; r < 10; ++r) {
        ls_u64 p0, p1;
        ls_u32 n0, n1, n2, n3;
        if (r > 0) {
            k0 += LS_PHILOX_W0;
            k1 += LS_PHILOX_W1;
        }
        p0 = (ls_u64)LS_PHILOX_M0 * (ls_u64)c0;
        p1 = (ls_u64)LS_PHILOX_M1 * (ls_u64)c2;
        n0 = (ls_u32)(p1 >> 32) ^ c1 ^ k0;
        n1 = (ls_u32)p1;
        n2 = (ls_u32)(p0 >> 32) ^ c3 ^ k1;
        n3 = (ls_u32)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    }
    return c0;
}

/* Whether dropout unit `index` of (seed, sample, layer) is kept: word 0 >= threshold, where
 * threshold = round(p * 2^32) (a u64 so that p = 1 drops everything). */
LS_FN int ls_keep(ls_u64 seed, ls_u32 sample, ls_u32 layer, ls_u64 index, ls_u64 threshold)
{
    ls_u32 w = ls_philox_w0(sample, layer, (ls_u32)index, (ls_u32)(index >> 32),
                            (ls_u32)seed, (ls_u32)(seed >> 32));
    return (ls_u64)w >= threshold;
}

#ifdef __CUDACC__
typedef unsigned short ls_half; /* IEEE binary16 bits */

LS_FN float ls_h2f(ls_half h)
{
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

/* Saturating: a value beyond fp16's ±65504 (±inf included) is stored as ±65504, so one large
 * activation cannot become inf and then NaN in the next layer's products; NaN stays NaN (both
 * comparisons are false) and still reaches the host's output check. */
LS_FN ls_half ls_f2h(float f)
{
    f = f > 65504.0f ? 65504.0f : (f < -65504.0f ? -65504.0f : f);
    ls_half h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

/* Two halves, lower address in the low 16 bits (the m16n8k16 fragment order). */
LS_FN ls_u32 ls_pack2(float lo, float hi)
{
    return (ls_u32)ls_f2h(lo) | ((ls_u32)ls_f2h(hi) << 16);
}

/* Dropout parameters of one layer, passed by value. kind 0 = none (deterministic pass or the
 * layer's output is not dropped), 1 = channel (index = channel), 2 = element
 * (index = c*D*H*W + (z*H + y)*W + x within one sample, PyTorch NCDHW order). */
struct LsDrop {
    ls_u64 seed;
    ls_u64 threshold;
    float scale;      /* 1 / (1 - p) */
    ls_u32 layer;
    ls_u32 kind;
    ls_u32 sample0;   /* MC sample number of batch entry 0 (chunking) */
};

/* Each network kernel takes one by-value struct mirroring its Rust twin in `cuda::params`; the
 * launch code passes that struct's size and field offsets as LSP_* constants, and the kernel
 * file checks its C struct against them, so a layout that drifts fails to compile: the size
 * everywhere, the offsets in the emulator's g++ build (NVRTC has no constant offsetof; both
 * lay the struct out by the same C rules, 8-byte pointers included). Kernels declare the struct
 * `__grid_constant__`, which keeps it in the parameter bank instead of a per-thread copy
 * (ptxas spills such a copy in ls_head_accumulate). */
#define LS_SIZE(T, P) static_assert(sizeof(T) == LSP_##P##_SIZE, #T ": size differs from Rust")
#ifdef __CUDACC_RTC__
#define LS_AT(T, f, P, rf) static_assert(true, "")
#else
#define LS_AT(T, f, P, rf)                                                                   \
    static_assert(__builtin_offsetof(T, f) == LSP_##P##_##rf,                                 \
                  #T "." #f ": offset differs from Rust")
#endif

/* Apply dropout to value v of (batch entry s, channel c, voxel vox of dhw). */
LS_FN float ls_dropout(const LsDrop &d, float v, ls_u32 s, ls_u32 c, ls_u32 vox, ls_u32 dhw)
{
    if (d.kind == 0)
        return v;
    ls_u64 index = d.kind == 1 ? (ls_u64)c : (ls_u64)c * dhw + vox;
    return ls_keep(d.seed, d.sample0 + s, d.layer, index, d.threshold) ? v * d.scale : 0.0f;
}

/* D += A·B for one m16n8k16 tile, fp16 inputs, fp32 accumulators (sm_80+). Fragment layout
 * (PTX ISA, "mma.m16n8k16"), g = lane / 4, t = lane % 4:
 *   A (row-major 16×16): a[0] = (g, 2t..2t+1), a[1] = (g+8, 2t..), a[2] = (g, 2t+8..),
 *                        a[3] = (g+8, 2t+8..)
 *   B (16×8, "col"):     b[0] = (k 2t..2t+1, n g), b[1] = (k 2t+8.., n g)
 *   C/D (16×8 f32):      d[0..1] = (g, 2t..2t+1), d[2..3] = (g+8, 2t..2t+1)
 * so with activations NDHWC (channels contiguous) and weights [n][K] (K contiguous), every
 * fragment register is one aligned 32-bit load of two neighbouring halves. */
LS_FN void ls_mma16816(float d[4], const ls_u32 a[4], ls_u32 b0, ls_u32 b1)
{
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Read-only 32-bit load through the non-coherent (texture) path. */
LS_FN ls_u32 ls_ld32(const ls_half *p)
{
    ls_u32 v;
    asm volatile("ld.global.nc.b32 %0, [%1];" : "=r"(v) : "l"(p));
    return v;
}

/* ------------------------------------------------------------ shared memory (sm_80+) */

/* One 16-byte unit: the element type of dynamic shared memory, so that its base is 16-byte
 * aligned as ldmatrix rows and cp.async destinations must be. */
struct alignas(16) LsChunk16 {
    ls_u32 w[4];
};

/* The 32-bit shared-window address of a generic pointer into shared memory (what the
 * `.shared` forms of ldmatrix and cp.async take). */
LS_FN ls_u32 ls_smem_addr(const void *p)
{
    ls_u32 a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}

/* ldmatrix (PTX ISA, "ldmatrix"): the warp loads 1, 2 or 4 8×8 matrices of b16; lanes
 * 8i..8i+7 give the 16-byte-aligned addresses of rows 0..7 of matrix i, and lane l receives in
 * register i row l/4, elements 2(l%4), 2(l%4)+1 of matrix i (lower element in the low half);
 * `.trans` delivers the transposed matrix (elements [2(l%4)][l/4], [2(l%4)+1][l/4]). */
LS_FN void ls_ldsm_x1(ls_u32 r[1], ls_u32 addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];" : "=r"(r[0]) : "r"(addr));
}

LS_FN void ls_ldsm_x2(ls_u32 r[2], ls_u32 addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];"
                 : "=r"(r[0]), "=r"(r[1]) : "r"(addr));
}

LS_FN void ls_ldsm_x4(ls_u32 r[4], ls_u32 addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}

LS_FN void ls_ldsm_x1_trans(ls_u32 r[1], ls_u32 addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];"
                 : "=r"(r[0]) : "r"(addr));
}

LS_FN void ls_ldsm_x2_trans(ls_u32 r[2], ls_u32 addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];"
                 : "=r"(r[0]), "=r"(r[1]) : "r"(addr));
}

LS_FN void ls_ldsm_x4_trans(ls_u32 r[4], ls_u32 addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}

/* cp.async (PTX ISA, "cp.async"): 16 bytes global → shared, asynchronous; the first
 * `src_bytes` (0..16) come from `src`, the rest is zero-filled (src_bytes = 0: a zero chunk,
 * nothing read). Both addresses 16-byte aligned. The data is defined only after this thread's
 * cp.async.wait_group that covers its group, and visible to other threads after a barrier
 * following that wait. `.cg` bypasses L1 (streamed data), `.ca` caches in L1 (data other
 * blocks' rows reuse). */
LS_FN void ls_cp_async_cg(ls_u32 dst, const void *src, ls_u32 src_bytes)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;"
                 : : "r"(dst), "l"(src), "r"(src_bytes));
}

LS_FN void ls_cp_async_ca(ls_u32 dst, const void *src, ls_u32 src_bytes)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 16, %2;"
                 : : "r"(dst), "l"(src), "r"(src_bytes));
}

/* Closes the group of this thread's cp.async issued since the last commit (possibly empty). */
LS_FN void ls_cp_async_commit()
{
    asm volatile("cp.async.commit_group;");
}

/* Waits until at most N of this thread's most recent groups are still in flight. */
template <int N> LS_FN void ls_cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;" : : "n"(N));
}

/* ------------------------------------------------------------ tiles and fragments */

/* Shared-memory tiles are rows of `cpr` 16-byte chunks (8 halves each, cpr ∈ {2, 4, 8}),
 * XOR-swizzled: chunk c of row r is stored at chunk c ^ ((r·cpr/8) mod cpr). Eight consecutive
 * rows (8-aligned) at one logical chunk then fill eight distinct 16-byte bank groups, so every
 * ldmatrix phase (one 8×8 matrix) is free of bank conflicts. Byte offset within the tile: */
LS_FN ls_u32 ls_swz(int r, int c, int cpr)
{
    return (ls_u32)(r * cpr + (c ^ ((r * cpr / 8) % cpr))) * 16u;
}

/* The m16n8k16 operands as registers (layouts at ls_mma16816). */
struct LsFragA {
    ls_u32 x[4];
};
struct LsFragB {
    ls_u32 x[2];
};
struct LsAcc {
    float x[4];
};

LS_FN void ls_mma(LsAcc &d, const LsFragA &a, const LsFragB &b)
{
    ls_mma16816(d.x, a.x, b.x[0], b.x[1]);
}

/* Row and column of accumulator element i (0..3) of `lane`. */
LS_FN int ls_acc_row(int lane, int i) { return (lane >> 2) + (i >> 1) * 8; }
LS_FN int ls_acc_col(int lane, int i) { return (lane & 3) * 2 + (i & 1); }

/* The A fragment of the 16×16 block whose rows start at `row0` (a multiple of 8) and whose k
 * starts at chunk `kc` of a swizzled [rows][k] tile at shared address `tile`: ldmatrix.x4 with
 * lane l addressing row row0 + l%16, chunk kc + l/16, so matrices 0..3 are (rows 0-7, k 0-7),
 * (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15) = a[0..3]. */
LS_FN void ls_load_a(LsFragA &a, ls_u32 tile, int row0, int kc, int cpr, int lane)
{
    ls_ldsm_x4(a.x, tile + ls_swz(row0 + (lane & 15), kc + (lane >> 4), cpr));
}

/* The B fragments of the two n-tiles n0..n0+7 and n0+8..n0+15 (n0 a multiple of 8), k from
 * chunk kc, of a swizzled [n][k] tile (weights, k contiguous): ldmatrix.x4 with lane l
 * addressing row n0 + l%8 + 8(l/16), chunk kc + (l/8)%2, so matrices 0..3 are b[0], b[1] of
 * the first tile and b[0], b[1] of the second. */
LS_FN void ls_load_b2(LsFragB &b0, LsFragB &b1, ls_u32 tile, int n0, int kc, int cpr, int lane)
{
    ls_u32 r[4];
    ls_ldsm_x4(r, tile + ls_swz(n0 + (lane & 7) + ((lane >> 4) << 3), kc + ((lane >> 3) & 1), cpr));
    b0.x[0] = r[0];
    b0.x[1] = r[1];
    b1.x[0] = r[2];
    b1.x[1] = r[3];
}

/* One k16 step of a warp's WM × WN tile of m16n8k16 mma (WN even) from the swizzled A and B
 * tiles: WM A fragments of rows a_row0 + 16i, WN/2 paired B loads, then every mma of the n8
 * columns whose `nvalid` is set (warp-uniform), each A fragment serving WN mma and each B
 * fragment WM. The main loops of ls_conv3 and ls_upconv2. */
template <int WM, int WN>
LS_FN void ls_warp_mma_k16(LsAcc (&acc)[WM][WN], ls_u32 atile, ls_u32 btile, int a_row0, int kc,
                           int cpr, const bool (&nvalid)[WN], int lane)
{
    LsFragA fa[WM];
    LsFragB fb[WN];
#pragma unroll
    for (int i = 0; i < WM; ++i)
        ls_load_a(fa[i], atile, a_row0 + i * 16, kc, cpr, lane);
#pragma unroll
    for (int j = 0; j < WN; j += 2)
        ls_load_b2(fb[j], fb[j + 1], btile, j * 8, kc, cpr, lane);
#pragma unroll
    for (int j = 0; j < WN; ++j)
        if (nvalid[j])
#pragma unroll
            for (int i = 0; i < WM; ++i)
                ls_mma(acc[i][j], fa[i], fb[j]);
}
#endif /* __CUDACC__ */

#endif /* LUNGSEG_COMMON_CUH */
