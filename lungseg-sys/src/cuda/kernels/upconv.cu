/* upconv.cu — ConvTranspose3d kernel 2 stride 2 as a GEMM on tensor cores.
 *
 * Layouts (fp16, dense NDHWC, batch of S):
 *   in   [S][d][h][w][Cin]      Cin multiple of 16, 16-byte aligned (its own cudaMalloc)
 *   w    [8][Cout][Cin]         n = o·Cout + co, o = 4a + 2b + c for output (2z+a, 2y+b, 2x+c)
 *   bias [Cout] f32
 *   out  [S][2d][2h][2w][Cout]  Cout even (no ReLU, no dropout: the upsampled half of a
 *                               decoder input)
 * GEMM view: M = S·d·h·w input voxels, N = 8·Cout, K = Cin; A[m][k] = in[m·Cin + k] and
 * B[n][k] = w[n·Cin + k] are both K-contiguous rows, so this is conv3.cu's tile without the
 * implicit im2col: every input voxel scatters an independent 2×2×2 block (no overlap, no
 * reduction across voxels).
 *
 * Tiles (NVRTC -D constants, owned by `UPCONV_TILE` in lungseg-sys/src/cuda/launch.rs, which
 * also sizes the launch; defaults in brackets):
 *   UP_WARPS [4]   warps per block, stacked along M; THREADS = 32·WARPS [128]
 *   UP_WM [2]      m16 tiles per warp (even)    → BM = 16·WM·WARPS [128] input voxels
 *   UP_WN [4]      n8 tiles per warp (even)     → BN = 8·WN [32] columns of N
 *   UP_KG [2]      K groups of 16 per step      → BK = 16·KG [32]
 *   UP_STAGES [3]  cp.async pipeline depth
 *   grid (ceil(M/BM), ceil(N/BN)), dynamic shared memory STAGES·(BM + BN)·BK·2 bytes [30 KiB].
 * Shared memory, per stage: A [BM][BK] then B [BN][BK], rows of CPR = 2·KG 16-byte chunks,
 * XOR-swizzled (ls_swz): cp.async.cg writes whole chunks (zeros past M, N or K), ldmatrix.x4
 * reads them without bank conflicts through the fragment helpers of common.cuh.
 * Per k16 per warp: WM [2] ldmatrix.x4 for A, WN/2 [2] for B, WM·WN [8] mma (0.5 LDSM per
 * HMMA); per step and thread (BM + BN)·CPR/THREADS [5] 16-byte cp.async; the only other global
 * loads are the epilogue's 2·WN [8] bias values.
 *   sass-design ls_upconv2: HMMA>=16 LDSM/HMMA<=0.5 LDGSTS/HMMA<=0.9375 LDS=0 LDG<=8 LDL=0 STL=0
 * Epilogue: each accumulator pair (columns n, n+1 = channels co, co+1 of one offset o, as Cout
 * is even) plus bias is one 32-bit store into its output voxel. About 2 % of the network's
 * FLOPs; the tile is conv3's so that one shape is tuned and checked.
 */

#if !defined(UP_WARPS) || !defined(UP_WM) || !defined(UP_WN) || !defined(UP_KG) || \
    !defined(UP_STAGES)
#error "upconv.cu needs its tile constants (-DUP_WARPS=... from UPCONV_TILE in launch.rs)"
#endif

#define UP_THREADS (UP_WARPS * 32)
#define UP_BM (UP_WARPS * UP_WM * 16)
#define UP_BN (UP_WN * 8)
#define UP_CPR (UP_KG * 2)
#define UP_A_BYTES (UP_BM * UP_CPR * 16)
#define UP_B_BYTES (UP_BN * UP_CPR * 16)
#define UP_STAGE_BYTES (UP_A_BYTES + UP_B_BYTES)
#define UP_A_CHUNKS (UP_BM * UP_CPR / UP_THREADS)
#define UP_B_CHUNKS (UP_BN * UP_CPR / UP_THREADS)

static_assert(UP_WM % 2 == 0 && UP_WN % 2 == 0, "warp tile: even m16 and n8 counts");
static_assert(UP_CPR == 2 || UP_CPR == 4 || UP_CPR == 8, "ls_swz needs 2, 4 or 8 chunks");
static_assert(UP_A_CHUNKS >= 1 && UP_A_CHUNKS * UP_THREADS == UP_BM * UP_CPR,
              "input chunks must split evenly over the threads");
static_assert(UP_B_CHUNKS >= 1 && UP_B_CHUNKS * UP_THREADS == UP_BN * UP_CPR,
              "weight chunks must split evenly over the threads");
static_assert(UP_STAGES >= 2, "a pipeline needs two stages");

struct LsUpArgs {
    const ls_half *in;
    const ls_half *w;
    const float *bias;
    ls_half *out;
    int cin, cout, S, d, h, wd;
};
LS_SIZE(LsUpArgs, UP);
LS_AT(LsUpArgs, in, UP, input);
LS_AT(LsUpArgs, w, UP, w);
LS_AT(LsUpArgs, bias, UP, bias);
LS_AT(LsUpArgs, out, UP, out);
LS_AT(LsUpArgs, cin, UP, cin);
LS_AT(LsUpArgs, cout, UP, cout);
LS_AT(LsUpArgs, S, UP, s);
LS_AT(LsUpArgs, d, UP, d);
LS_AT(LsUpArgs, h, UP, h);
LS_AT(LsUpArgs, wd, UP, wd);

/* `chunks` 16-byte chunks per thread of a [rows][BK] tile whose row r is `base + (row0 + r)·K`
 * (rows from `nrows` on and k from `K` on are zero-filled), K columns from `k0`. */
template <int CHUNKS>
LS_FN void up_load_tile(ls_u32 tile, const ls_half *base, ls_u64 row0, ls_u64 nrows, int K,
                        int k0, int tid)
{
#pragma unroll
    for (int i = 0; i < CHUNKS; ++i) {
        const int q = tid + i * UP_THREADS, r = q / UP_CPR, cc = q % UP_CPR;
        const int k = k0 + cc * 8;
        const bool in = row0 + r < nrows && k < K;
        const ls_half *src = in ? base + (row0 + r) * K + k : base;
        ls_cp_async_cg(tile + ls_swz(r, cc, UP_CPR), src, in ? 16u : 0u);
    }
}

extern "C" __global__ void __launch_bounds__(UP_THREADS)
ls_upconv2(__grid_constant__ const LsUpArgs args)
{
    const ls_half *__restrict__ in = args.in;
    const ls_half *__restrict__ w = args.w;
    const float *__restrict__ bias = args.bias;
    ls_half *__restrict__ out = args.out;
    const int cin = args.cin, cout = args.cout, S = args.S, d = args.d, h = args.h, wd = args.wd;
    extern __shared__ LsChunk16 up_smem[];
    const ls_u32 smem = ls_smem_addr(up_smem);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const ls_u64 M = (ls_u64)S * d * h * wd;
    const int N = 8 * cout;
    const ls_u64 m_block = (ls_u64)blockIdx.x * UP_BM;
    const int n_block = blockIdx.y * UP_BN;
    const int nsteps = (cin + 16 * UP_KG - 1) / (16 * UP_KG);
    /* The block's first voxel as (sample, voxel): the epilogue then walks rows in 32-bit
     * steps, since a 64-bit division there is a call whose clobbers spill the accumulators. */
    const ls_u32 dhw = (ls_u32)d * h * wd;
    const ls_u32 s0 = (ls_u32)(m_block / dhw), r0 = (ls_u32)(m_block % dhw);

    LsAcc acc[UP_WM][UP_WN];
#pragma unroll
    for (int i = 0; i < UP_WM; ++i)
#pragma unroll
        for (int j = 0; j < UP_WN; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e)
                acc[i][j].x[e] = 0.0f;
    bool nvalid[UP_WN];
#pragma unroll
    for (int j = 0; j < UP_WN; ++j)
        nvalid[j] = n_block + j * 8 < N;

#pragma unroll
    for (int st = 0; st < UP_STAGES - 1; ++st) {
        if (st < nsteps) {
            const ls_u32 stage = smem + st * UP_STAGE_BYTES;
            up_load_tile<UP_A_CHUNKS>(stage, in, m_block, M, cin, st * 16 * UP_KG, tid);
            up_load_tile<UP_B_CHUNKS>(stage + UP_A_BYTES, w, n_block, N, cin, st * 16 * UP_KG, tid);
        }
        ls_cp_async_commit();
    }
    int st_read = 0, st_write = UP_STAGES - 1;
    for (int ks = 0; ks < nsteps; ++ks) {
        ls_cp_async_wait<UP_STAGES - 2>();
        __syncthreads();
        const int kn = ks + UP_STAGES - 1;
        if (kn < nsteps) {
            const ls_u32 stage = smem + st_write * UP_STAGE_BYTES;
            up_load_tile<UP_A_CHUNKS>(stage, in, m_block, M, cin, kn * 16 * UP_KG, tid);
            up_load_tile<UP_B_CHUNKS>(stage + UP_A_BYTES, w, n_block, N, cin, kn * 16 * UP_KG, tid);
        }
        ls_cp_async_commit();
        const ls_u32 atile = smem + st_read * UP_STAGE_BYTES, btile = atile + UP_A_BYTES;
#pragma unroll
        for (int kk = 0; kk < UP_KG; ++kk)
            ls_warp_mma_k16(acc, atile, btile, warp * UP_WM * 16, 2 * kk, UP_CPR, nvalid, lane);
        st_read = st_read == UP_STAGES - 1 ? 0 : st_read + 1;
        st_write = st_write == UP_STAGES - 1 ? 0 : st_write + 1;
    }

    /* Epilogue: column n = o·Cout + co (co even) of accumulator rows r and r+8. */
    const int OD = 2 * d, OH = 2 * h, OW = 2 * wd;
#pragma unroll
    for (int j = 0; j < UP_WN; ++j) {
        if (!nvalid[j])
            continue;
        const int n = n_block + j * 8 + ls_acc_col(lane, 0);
        const int o = n / cout, co = n % cout;
        const int a = o >> 2, b = (o >> 1) & 1, c = o & 1;
        const float b0 = bias[co], b1 = bias[co + 1];
#pragma unroll
        for (int i = 0; i < UP_WM; ++i) {
#pragma unroll
            for (int hh = 0; hh < 2; ++hh) {
                const int row = (warp * UP_WM + i) * 16 + ls_acc_row(lane, 2 * hh);
                ls_u32 s = s0, r = r0 + (ls_u32)row;
                while (r >= dhw) {
                    r -= dhw;
                    ++s;
                }
                if (s >= (ls_u32)S)
                    continue;
                const int x = r % wd, y = (r / wd) % h, z = r / (wd * h);
                const ls_u64 ov = (((ls_u64)s * OD + 2 * z + a) * OH + 2 * y + b) * OW + 2 * x + c;
                *(ls_u32 *)(out + ov * cout + co) =
                    ls_pack2(acc[i][j].x[2 * hh] + b0, acc[i][j].x[2 * hh + 1] + b1);
            }
        }
    }
}
