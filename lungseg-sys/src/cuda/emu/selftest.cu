/* Kernels that check the emulator itself (tests/cuda_emu.rs), built exactly like the
 * production kernels: common.cuh first, the same rewrite, the same registration. */

/* One m16n8k16 through ls_mma16816 with fragments placed by ggml's get_i/get_j (ggml-cuda/
 * mma.cuh, see driver.cpp), not by the emulator's own tables: D = A·B + C must come out.
 * a [16][16] row-major, b [8][16] (n-major, k contiguous), c and d [16][8] f32. One warp. */
extern "C" __global__ void emu_mma_ggml(const ls_half *a, const ls_half *b, const float *c,
                                        float *d)
{
    const int lane = threadIdx.x;
    ls_u32 fa[4];
    for (int l = 0; l < 4; ++l) {
        const int i = (l % 2) * 8 + lane / 4, j = (l / 2) * 4 + lane % 4;
        fa[l] = ls_ld32(a + i * 16 + 2 * j);
    }
    ls_u32 fb[2];
    for (int l = 0; l < 2; ++l) {
        const int i = lane / 4, j = l * 4 + lane % 4;
        fb[l] = ls_ld32(b + i * 16 + 2 * j);
    }
    float acc[4];
    for (int l = 0; l < 4; ++l)
        acc[l] = c[((l / 2) * 8 + lane / 4) * 8 + (lane % 4) * 2 + l % 2];
    ls_mma16816(acc, fa, fb[0], fb[1]);
    for (int l = 0; l < 4; ++l)
        d[((l / 2) * 8 + lane / 4) * 8 + (lane % 4) * 2 + l % 2] = acc[l];
}

/* Lanes below `active` run the mma, the rest skip it: must be reported, not computed. */
extern "C" __global__ void emu_divergent_mma(float *d, int active)
{
    float acc[4] = {0, 0, 0, 0};
    ls_u32 a[4] = {0, 0, 0, 0};
    if ((int)(threadIdx.x & 31) < active)
        ls_mma16816(acc, a, 0u, 0u);
    d[threadIdx.x] = acc[0];
}

/* Threads at or past `stay` return before the barrier the others wait at. */
extern "C" __global__ void emu_exit_before_barrier(float *d, int stay)
{
    if ((int)threadIdx.x >= stay)
        return;
    __syncthreads();
    d[threadIdx.x] = 1.0f;
}

/* A race: each thread reads its neighbour's shared slot without a barrier in between. */
extern "C" __global__ void emu_race(float *d)
{
    __shared__ float s[64];
    s[threadIdx.x] = (float)threadIdx.x;
    d[threadIdx.x] = s[threadIdx.x ^ 1];
}

/* The same with the barrier: well defined. */
extern "C" __global__ void emu_no_race(float *d)
{
    __shared__ float s[64];
    s[threadIdx.x] = (float)threadIdx.x;
    __syncthreads();
    d[threadIdx.x] = s[threadIdx.x ^ 1];
}

/* Dynamic shared memory, reversed through a barrier; `read_unwritten` reads one slot nobody
 * wrote (poisoned NaN). */
extern "C" __global__ void emu_dyn_shared(float *d, int read_unwritten)
{
    extern __shared__ float buf[];
    const unsigned n = blockDim.x;
    buf[threadIdx.x] = (float)(blockIdx.x * n + threadIdx.x);
    __syncthreads();
    d[blockIdx.x * n + threadIdx.x] = read_unwritten ? buf[n] : buf[n - 1 - threadIdx.x];
}

/* A 32-bit load `off` halves into `p` (ASan must stop one past the end). */
extern "C" __global__ void emu_load(const ls_half *p, int off, ls_u32 *out)
{
    *out = ls_ld32(p + off);
}

/* ls_f2h of n floats (one thread each). */
extern "C" __global__ void emu_f2h(const float *in, ls_half *out, int n)
{
    int i = threadIdx.x;
    if (i < n) out[i] = ls_f2h(in[i]);
}

/* PTX the emulator does not know must stop it. */
extern "C" __global__ void emu_unknown_ptx(float *d)
{
    asm volatile("bar.sync 0;");
    d[0] = 1.0f;
}

/* ------------------------------------------------------------ ldmatrix, cp.async */

/* ldmatrix variant `variant` (0..2: x1, x2, x4; 3..5: the same .trans) from 32 rows of 8 halves
 * copied into dynamic shared memory (32·16 bytes); lane l addresses row sel[l]. Registers go
 * to out[l][0..num-1]. One warp. */
extern "C" __global__ void emu_ldmatrix(const ls_half *rows, const int *sel, int variant,
                                        ls_u32 *out)
{
    extern __shared__ LsChunk16 sm[];
    const int lane = threadIdx.x;
    for (int i = 0; i < 4; ++i)
        sm[lane].w[i] = ls_ld32(rows + lane * 8 + 2 * i);
    __syncthreads();
    const ls_u32 addr = ls_smem_addr(sm) + 16u * (ls_u32)sel[lane];
    ls_u32 r[4];
    int num = 4;
    switch (variant) {
    case 0: ls_ldsm_x1(r, addr); num = 1; break;
    case 1: ls_ldsm_x2(r, addr); num = 2; break;
    case 2: ls_ldsm_x4(r, addr); break;
    case 3: ls_ldsm_x1_trans(r, addr); num = 1; break;
    case 4: ls_ldsm_x2_trans(r, addr); num = 2; break;
    default: ls_ldsm_x4_trans(r, addr); break;
    }
    for (int i = 0; i < num; ++i)
        out[lane * 4 + i] = r[i];
}

/* The fragment helpers of common.cuh (ls_load_a, ls_load_b2 on swizzled tiles, and .trans from a
 * k-major copy of B) against fragments placed by ggml's get_i/get_j straight from global memory,
 * then two mma with the ldmatrix fragments. a [16][16] row-major, b [16 n][16 k], bt = b
 * transposed [16 k][16 n], c and d [16][16] f32 (d = a·bᵀ + c), bad[lane] = mismatching
 * registers of that lane. Dynamic shared memory: 1536 bytes. One warp. */
extern "C" __global__ void emu_ldsm_mma(const ls_half *a, const ls_half *b, const ls_half *bt,
                                        const float *c, float *d, int *bad)
{
    extern __shared__ LsChunk16 sm[];
    const int lane = threadIdx.x;
    const ls_u32 base = ls_smem_addr(sm);
    /* Each lane stores one 16-byte chunk of each matrix: row lane/2, chunk lane%2. */
    const int row = lane >> 1, ch = lane & 1;
    for (int i = 0; i < 4; ++i) {
        sm[ls_swz(row, ch, 2) / 16].w[i] = ls_ld32(a + row * 16 + ch * 8 + 2 * i);
        sm[(512 + ls_swz(row, ch, 2)) / 16].w[i] = ls_ld32(b + row * 16 + ch * 8 + 2 * i);
        sm[64 + lane].w[i] = ls_ld32(bt + row * 16 + ch * 8 + 2 * i); /* plain [16][16] */
    }
    __syncthreads();
    LsFragA fa;
    LsFragB fb[2], ft[2];
    ls_load_a(fa, base, 0, 0, 2, lane);
    ls_load_b2(fb[0], fb[1], base + 512, 0, 0, 2, lane);
    ls_u32 r[4];
    ls_ldsm_x4_trans(r, base + 1024 + ((lane & 7) + ((lane >> 3) & 1) * 8) * 32 + (lane >> 4) * 16);
    ft[0].x[0] = r[0];
    ft[0].x[1] = r[1];
    ft[1].x[0] = r[2];
    ft[1].x[1] = r[3];
    int nbad = 0;
    for (int l = 0; l < 4; ++l) { /* ggml A = tile<16, 8, half2> */
        const int i = (l % 2) * 8 + lane / 4, j = (l / 2) * 4 + lane % 4;
        nbad += fa.x[l] != ls_ld32(a + i * 16 + 2 * j);
    }
    for (int t = 0; t < 2; ++t)
        for (int l = 0; l < 2; ++l) { /* ggml B = tile<8, 8, half2>, I = n */
            const int i = t * 8 + lane / 4, j = l * 4 + lane % 4;
            const ls_u32 want = ls_ld32(b + i * 16 + 2 * j);
            nbad += (fb[t].x[l] != want) + (ft[t].x[l] != want);
        }
    bad[lane] = nbad;
    for (int t = 0; t < 2; ++t) {
        LsAcc acc;
        for (int i = 0; i < 4; ++i)
            acc.x[i] = c[ls_acc_row(lane, i) * 16 + t * 8 + ls_acc_col(lane, i)];
        ls_mma(acc, fa, fb[t]);
        for (int i = 0; i < 4; ++i)
            d[ls_acc_row(lane, i) * 16 + t * 8 + ls_acc_col(lane, i)] = acc.x[i];
    }
}

/* cp.async as a kernel uses it. 64 threads; thread t copies chunk t of `src` (8 halves each)
 * with .ca into shared chunk t, commits, then chunk 64 + t with .cg into shared chunk 64 + t,
 * commits; src-size is 16, 8 or 0 bytes for t % 3 = 0, 1, 2 (zero-fill). `wait`: 0 waits for
 * both groups, 1 for the first only (and for the second after reading), 2 for none (exits with
 * copies in flight). After a barrier each thread reads its neighbour's (t ^ 1) two chunks:
 * out[t][0..3], out[t][4..7].
 * Dynamic shared memory: 2048 bytes. */
extern "C" __global__ void emu_cp_async(const ls_half *src, int wait, ls_u32 *out)
{
    extern __shared__ LsChunk16 sm[];
    const int t = threadIdx.x;
    const ls_u32 base = ls_smem_addr(sm), n = t % 3 == 0 ? 16u : t % 3 == 1 ? 8u : 0u;
    ls_cp_async_ca(base + 16u * t, src + 8 * t, n);
    ls_cp_async_commit();
    ls_cp_async_cg(base + 16u * (64 + t), src + 8 * (64 + t), n);
    ls_cp_async_commit();
    if (wait == 0)
        ls_cp_async_wait<0>();
    else if (wait == 1)
        ls_cp_async_wait<1>();
    __syncthreads();
    for (int i = 0; i < 4; ++i) {
        out[t * 8 + i] = sm[t ^ 1].w[i];
        out[t * 8 + 4 + i] = sm[64 + (t ^ 1)].w[i];
    }
    if (wait == 1) { /* every thread has read before any lands its second group */
        __syncthreads();
        ls_cp_async_wait<0>();
    }
}

/* Invalid cp.async: `which` 0 = misaligned shared destination, 1 = destination past the dynamic
 * shared memory (64 bytes), 2 = misaligned global source, 3 = src-size 17. */
extern "C" __global__ void emu_cp_async_bad(const ls_half *src, int which)
{
    extern __shared__ LsChunk16 sm[];
    const ls_u32 base = ls_smem_addr(sm);
    ls_cp_async_cg(base + (which == 0 ? 8u : which == 1 ? 64u : 0u), src + (which == 2 ? 4 : 0),
                   which == 3 ? 17u : 16u);
    ls_cp_async_commit();
    ls_cp_async_wait<0>();
}

/* Lanes below `active` run an ldmatrix, the rest skip it: must be reported. 16 bytes of
 * dynamic shared memory. */
extern "C" __global__ void emu_divergent_ldmatrix(ls_u32 *d, int active)
{
    extern __shared__ LsChunk16 sm[];
    ls_u32 r[1] = {0};
    if (threadIdx.x == 0)
        for (int i = 0; i < 4; ++i)
            sm[0].w[i] = 0;
    __syncthreads();
    if ((int)(threadIdx.x & 31) < active)
        ls_ldsm_x1(r, ls_smem_addr(sm));
    d[threadIdx.x] = r[0];
}

/* ls_swz for cpr = 2, 4, 8 over 64 rows: out[(cpr/4)·512 + r·8 + c] (c < cpr), the byte offset
 * of chunk c of row r. One thread. */
extern "C" __global__ void emu_swz(ls_u32 *out)
{
    for (int cpr = 2; cpr <= 8; cpr *= 2)
        for (int r = 0; r < 64; ++r)
            for (int c = 0; c < cpr; ++c)
                out[(cpr / 4) * 512 + r * 8 + c] = ls_swz(r, c, cpr);
}
