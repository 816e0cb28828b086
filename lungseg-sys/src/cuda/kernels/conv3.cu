/* conv3.cu — 3×3×3 convolution, padding 1, as an implicit GEMM on tensor cores, with a fused
 * epilogue (bias of the BN-folded conv, ReLU, Philox dropout, fp16 store).
 *
 * Layouts (all fp16 unless noted, dense NDHWC, no halo, batch of S MC samples):
 *   src0  [S][D][H][W][C0]  batch stride ss0 elements (0 = one tensor shared by every sample,
 *                           e.g. the first layer's output, computed once per patch)
 *   src1  [S][D][H][W][C1]  second input read after src0's channels (C1 = 0: none). The
 *                           decoder's first conv reads the skip (src0) and the upsampled tensor
 *                           (src1) directly: no concat copy.
 *   w     [Cout][27][C0+C1] K contiguous, tap t = 9kz + 3ky + kx, BN folded
 *   bias  [Cout] f32
 *   out   [S][D][H][W][Cout] post-ReLU, post-dropout (the stored tensor is what consumers read)
 * Requirements (checked on the host): C0, C1 multiples of 16, Cout multiple of 8; src0, src1
 * and w 16-byte aligned (each its own cudaMalloc), so that every 8-channel chunk is one
 * aligned 16-byte cp.async.
 *
 * GEMM view: M = S·D·H·W output voxels, N = Cout, K = 27·(C0+C1). A[m][k] is the input value of
 * voxel m's neighbour at tap k / Cin, channel k % Cin (0 outside the volume): implicit im2col.
 * K is walked in groups of 16 (one tap, 16 channels of one source: C0 and C1 are multiples of
 * 16, so a group never straddles the two sources); group g = tap·Cin/16 + channel/16 is K
 * 16g..16g+15, the same 16 halves of every weight row.
 *
 * Tiles (NVRTC -D constants, owned by `CONV3_TILE` in lungseg-sys/src/cuda/launch.rs, which
 * also sizes the launch; defaults in brackets):
 *   CONV_WARPS [4]   warps per block, stacked along M; THREADS = 32·WARPS [128]
 *   CONV_WM [2]      m16 tiles per warp (even)    → BM = 16·WM·WARPS [128] voxels per block
 *   CONV_WN [4]      n8 tiles per warp (even)     → BN = 8·WN [32] output channels per block
 *   CONV_KG [2]      K groups per pipeline step   → BK = 16·KG [32]
 *   CONV_STAGES [3]  cp.async pipeline depth
 *   grid (ceil(M/BM), ceil(Cout/BN)), dynamic shared memory STAGES·(BM + BN)·BK·2 bytes
 *   [3 · 10 KiB = 30 KiB, under the 48 KiB that needs no opt-in].
 * Shared memory, per stage: A [BM][BK] then B [BN][BK] (weights, K contiguous), rows of
 * CPR = 2·KG 16-byte chunks, XOR-swizzled (ls_swz in common.cuh): cp.async writes whole
 * chunks, ldmatrix.x4 reads 8 rows of one chunk per phase without bank conflicts.
 * Loads per step: thread t owns A rows t + r·THREADS (r < BM/THREADS [1]) and issues 2·KG
 * 16-byte cp.async.ca per row (src-size 0, i.e. zeros, for a neighbour outside the volume or
 * past K), plus BN·CPR/THREADS [1] cp.async.cg of weights (zeros past Cout or K).
 * Fragments per k16 per warp: WM [2] ldmatrix.x4 for A, WN/2 [2] for B, WM·WN [8] mma, so
 * (WM + WN/2)/(WM·WN) [0.5] LDSM per HMMA and no other shared loads. Global traffic per block
 * and k-step: (BM + BN)·BK·2 bytes [10 KiB] as 2·KG·BM/THREADS + BN·CPR/THREADS [5] 16-byte
 * cp.async per thread; the only other global loads are the epilogue's 2·WN [8] bias values.
 * Epilogue: the finished pairs go into a [BM][BN] fp16 tile in the (then free) pipeline
 * memory, rows of CCPR = BN/8 [4] swizzled chunks (conflict-free: a warp's pair stores cover
 * 8 consecutive rows at one chunk), and each thread writes BM·CCPR/THREADS [4] whole 16-byte
 * chunks (one voxel's 8 channels) to global: 4 STG.128 per thread instead of 2·WM·WN [16]
 * 32-bit stores, every store a full 32-byte sector pair of one voxel's row.
 * Static SASS at the default tile (one k-step body: 16 HMMA, 8 LDSM; the 2-step prologue and
 * the loop: 15 LDGSTS; the epilogue's 4 LDS.128 and 4 STG), checked by
 * scripts/cuda-sass-check.sh for sm_80 and sm_90:
 *   sass-design ls_conv3: HMMA>=16 LDSM/HMMA<=0.5 LDGSTS/HMMA<=0.9375 LDS<=4 STS<=16 STG<=4 LDG<=8 LDL=0 STL=0
 *   (LDS excludes the never-executed `@!PT LDS RZ, [RZ]` ptxas places before LDGSTS.)
 * The narrow tile (CONV_NARROW, one warp: BM = 32) has the same fragment work per warp; its one
 * thread loads 1 A row (4 chunks) and 4 weight chunks per step, 24 LDGSTS in the 3 steps:
 *   sass-design ls_conv3_narrow: HMMA>=16 LDSM/HMMA<=0.5 LDGSTS/HMMA<=1.5 LDS<=4 STS<=16 STG<=4 LDG<=8 LDL=0 STL=0
 * Pipeline: STAGES − 1 steps in flight; per step: wait for the oldest, one barrier (the data
 * is visible and every warp is done with the buffer refilled next), issue the step
 * STAGES − 1 ahead, compute. An n8 tile past Cout (Cout = 8, 16, 24) skips its mma,
 * warp-uniformly; the inner loops are otherwise fully unrolled and branch-free.
 * Reasoning: at 64³ the layers have 16–64 channels, so N is small and M huge; a deep M tile
 * with N = 32 keeps 32 f32 accumulators per thread (no spills at 128 threads, checked by
 * scripts/nvrtc-check.sh) while every A fragment serves WN mma and every B fragment WM.
 */

#if !defined(CONV_WARPS) || !defined(CONV_WM) || !defined(CONV_WN) || !defined(CONV_KG) || \
    !defined(CONV_STAGES) || !defined(CONV_NARROW)
#error "conv3.cu needs its tile constants (-DCONV_WARPS=... from CONV3_TILE in launch.rs)"
#endif

/* Two compilations of this file, two entry points (launch.rs, `Conv3Kernel`): the wide tile
 * above as `ls_conv3`, and with CONV_NARROW = 1 a tile of fewer voxels per block as
 * `ls_conv3_narrow`, for the deep levels whose M gives the wide tile too few blocks. */
#if CONV_NARROW
#define CONV_FN ls_conv3_narrow
#else
#define CONV_FN ls_conv3
#endif

#define CONV_THREADS (CONV_WARPS * 32)
#define CONV_BM (CONV_WARPS * CONV_WM * 16)
#define CONV_BN (CONV_WN * 8)
#define CONV_CPR (CONV_KG * 2)
#define CONV_A_BYTES (CONV_BM * CONV_CPR * 16)
#define CONV_B_BYTES (CONV_BN * CONV_CPR * 16)
#define CONV_STAGE_BYTES (CONV_A_BYTES + CONV_B_BYTES)
#define CONV_ROWS (CONV_BM / CONV_THREADS)
#define CONV_B_CHUNKS (CONV_BN * CONV_CPR / CONV_THREADS)
#define CONV_CCPR CONV_WN /* 16-byte chunks per row of the output tile: BN/8 */
#define CONV_C_CHUNKS (CONV_BM * CONV_CCPR / CONV_THREADS)

static_assert(CONV_WM % 2 == 0 && CONV_WN % 2 == 0, "warp tile: even m16 and n8 counts");
static_assert(CONV_CPR == 2 || CONV_CPR == 4 || CONV_CPR == 8, "ls_swz needs 2, 4 or 8 chunks");
static_assert(CONV_B_CHUNKS >= 1 && CONV_B_CHUNKS * CONV_THREADS == CONV_BN * CONV_CPR,
              "weight chunks must split evenly over the threads");
static_assert(CONV_STAGES >= 2, "a pipeline needs two stages");
static_assert(CONV_CCPR == 2 || CONV_CCPR == 4 || CONV_CCPR == 8, "output tile rows: 2, 4 or 8 chunks");
static_assert(CONV_C_CHUNKS >= 1 && CONV_C_CHUNKS * CONV_THREADS == CONV_BM * CONV_CCPR,
              "output chunks must split evenly over the threads");
static_assert(CONV_BM * CONV_BN * 2 <= CONV_STAGES * CONV_STAGE_BYTES,
              "the output tile reuses the pipeline's shared memory");

/* One output voxel of the block as the A loader and the epilogue see it. */
struct ConvVox {
    ls_u32 s;
    int z, y, x;
    bool valid;
};

/* The voxel `off` rows after the block's first one, sample s0, voxel r0 (r0 < dhw): 32-bit
 * steps only, since a 64-bit division is a subroutine call whose clobbers would spill the
 * accumulators in the epilogue. */
LS_FN ConvVox conv_vox(ls_u32 s0, ls_u32 r0, int off, int S, ls_u32 dhw, int H, int W)
{
    ConvVox v;
    ls_u32 s = s0, r = r0 + (ls_u32)off;
    while (r >= dhw) {
        r -= dhw;
        ++s;
    }
    v.valid = s < (ls_u32)S;
    v.s = v.valid ? s : 0;
    r = v.valid ? r : 0;
    v.x = r % W;
    v.y = (r / W) % H;
    v.z = r / (W * H);
    return v;
}

/* The kernel's arguments that the loaders need. */
struct ConvIn {
    const ls_half *src0, *src1, *w;
    ls_u64 ss0, ss1;
    int c0, c1, cout, D, H, W, groups, cin16, K;
};

/* The next K group to load: tap and 16-channel chunk (groups are loaded in order). */
struct ConvCursor {
    int g, tap, ch;
};

/* Issues the cp.async of pipeline step `step` into the stage at shared address `stage`. */
LS_FN void conv_load(const ConvIn &p, ConvCursor &cur, const ConvVox (&rows)[CONV_ROWS],
                     ls_u32 stage, int n_block, int tid)
{
#pragma unroll
    for (int kg = 0; kg < CONV_KG; ++kg) {
        const bool gvalid = cur.g < p.groups;
        const int dz = cur.tap / 9 - 1, dy = cur.tap / 3 % 3 - 1, dx = cur.tap % 3 - 1;
        const int c = cur.ch * 16;
        const bool first = c < p.c0;
#pragma unroll
        for (int r = 0; r < CONV_ROWS; ++r) {
            const ConvVox &v = rows[r];
            const int z = v.z + dz, y = v.y + dy, x = v.x + dx;
            const bool in = gvalid && v.valid && z >= 0 && z < p.D && y >= 0 && y < p.H &&
                            x >= 0 && x < p.W;
            const ls_u64 nb = in ? ((ls_u64)z * p.H + y) * p.W + x : 0;
            const ls_half *src = !in ? p.src0
                                 : first ? p.src0 + v.s * p.ss0 + nb * p.c0 + c
                                         : p.src1 + v.s * p.ss1 + nb * p.c1 + (c - p.c0);
            const int row = tid + r * CONV_THREADS;
#pragma unroll
            for (int h = 0; h < 2; ++h)
                ls_cp_async_ca(stage + ls_swz(row, 2 * kg + h, CONV_CPR), src + (in ? 8 * h : 0),
                               in ? 16u : 0u);
        }
        if (++cur.ch == p.cin16) {
            cur.ch = 0;
            ++cur.tap;
        }
        ++cur.g;
    }
    const int g0 = cur.g - CONV_KG;
    const ls_u32 btile = stage + CONV_A_BYTES;
#pragma unroll
    for (int i = 0; i < CONV_B_CHUNKS; ++i) {
        const int q = tid + i * CONV_THREADS, n = q / CONV_CPR, cc = q % CONV_CPR;
        const int g = g0 + cc / 2;
        const bool in = n_block + n < p.cout && g < p.groups;
        const ls_half *src = in ? p.w + (ls_u64)(n_block + n) * p.K + g * 16 + (cc % 2) * 8 : p.w;
        ls_cp_async_cg(btile + ls_swz(n, cc, CONV_CPR), src, in ? 16u : 0u);
    }
}

struct LsConv3Args {
    const ls_half *src0;
    const ls_half *src1;
    const ls_half *w;
    const float *bias;
    ls_half *out;
    ls_u64 ss0, ss1;
    LsDrop drop;
    int c0, c1, cout, S, D, H, W, relu;
};
LS_SIZE(LsConv3Args, CONV3);
LS_AT(LsConv3Args, src0, CONV3, src0);
LS_AT(LsConv3Args, src1, CONV3, src1);
LS_AT(LsConv3Args, w, CONV3, w);
LS_AT(LsConv3Args, bias, CONV3, bias);
LS_AT(LsConv3Args, out, CONV3, out);
LS_AT(LsConv3Args, ss0, CONV3, ss0);
LS_AT(LsConv3Args, ss1, CONV3, ss1);
LS_AT(LsConv3Args, drop, CONV3, drop);
LS_AT(LsConv3Args, c0, CONV3, c0);
LS_AT(LsConv3Args, c1, CONV3, c1);
LS_AT(LsConv3Args, cout, CONV3, cout);
LS_AT(LsConv3Args, S, CONV3, s);
LS_AT(LsConv3Args, D, CONV3, d);
LS_AT(LsConv3Args, H, CONV3, h);
LS_AT(LsConv3Args, W, CONV3, wd);
LS_AT(LsConv3Args, relu, CONV3, relu);

extern "C" __global__ void __launch_bounds__(CONV_THREADS)
CONV_FN(__grid_constant__ const LsConv3Args args)
{
    const ls_half *__restrict__ src0 = args.src0;
    const ls_half *__restrict__ src1 = args.src1;
    const ls_half *__restrict__ w = args.w;
    const float *__restrict__ bias = args.bias;
    ls_half *__restrict__ out = args.out;
    const ls_u64 ss0 = args.ss0, ss1 = args.ss1;
    const LsDrop drop = args.drop;
    const int c0 = args.c0, c1 = args.c1, cout = args.cout;
    const int S = args.S, D = args.D, H = args.H, W = args.W, relu = args.relu;
    extern __shared__ LsChunk16 conv_smem[];
    const ls_u32 smem = ls_smem_addr(conv_smem);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const ls_u32 dhw = (ls_u32)D * H * W;
    const int cin = c0 + c1;
    const ConvIn p = {src0, src1, w, ss0, ss1, c0, c1, cout, D, H, W, 27 * cin / 16, cin / 16,
                      27 * cin};
    const int nsteps = (p.groups + CONV_KG - 1) / CONV_KG;
    const int n_block = blockIdx.y * CONV_BN;
    const ls_u64 m_block = (ls_u64)blockIdx.x * CONV_BM;
    const ls_u32 s0 = (ls_u32)(m_block / dhw), r0 = (ls_u32)(m_block % dhw);

    ConvVox rows[CONV_ROWS];
#pragma unroll
    for (int r = 0; r < CONV_ROWS; ++r)
        rows[r] = conv_vox(s0, r0, tid + r * CONV_THREADS, S, dhw, H, W);

    LsAcc acc[CONV_WM][CONV_WN];
#pragma unroll
    for (int i = 0; i < CONV_WM; ++i)
#pragma unroll
        for (int j = 0; j < CONV_WN; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e)
                acc[i][j].x[e] = 0.0f;
    bool nvalid[CONV_WN];
#pragma unroll
    for (int j = 0; j < CONV_WN; ++j)
        nvalid[j] = n_block + j * 8 < cout;

    ConvCursor cur = {0, 0, 0};
#pragma unroll
    for (int st = 0; st < CONV_STAGES - 1; ++st) {
        if (st < nsteps)
            conv_load(p, cur, rows, smem + st * CONV_STAGE_BYTES, n_block, tid);
        ls_cp_async_commit();
    }
    int st_read = 0, st_write = CONV_STAGES - 1;
    for (int ks = 0; ks < nsteps; ++ks) {
        ls_cp_async_wait<CONV_STAGES - 2>();
        __syncthreads();
        if (ks + CONV_STAGES - 1 < nsteps)
            conv_load(p, cur, rows, smem + st_write * CONV_STAGE_BYTES, n_block, tid);
        ls_cp_async_commit();
        const ls_u32 atile = smem + st_read * CONV_STAGE_BYTES, btile = atile + CONV_A_BYTES;
#pragma unroll
        for (int kk = 0; kk < CONV_KG; ++kk)
            ls_warp_mma_k16(acc, atile, btile, warp * CONV_WM * 16, 2 * kk, CONV_CPR, nvalid, lane);
        st_read = st_read == CONV_STAGES - 1 ? 0 : st_read + 1;
        st_write = st_write == CONV_STAGES - 1 ? 0 : st_write + 1;
    }

    /* Epilogue: bias, ReLU and dropout per accumulator pair (rows r and r+8 of each m16) into
     * the block's [BM][BN] fp16 tile in shared memory, then whole 16-byte chunks to global. */
    ls_cp_async_wait<0>();
    /* Every warp done with the stages the tile overlays. At the default tile each warp's tile
     * rows cover only its own A rows of stage 0, so the emulator cannot see this barrier go
     * missing; a tile with BN ≠ BK reaches rows or weights that other warps read. */
    __syncthreads();
    float bias2[CONV_WN][2];
#pragma unroll
    for (int j = 0; j < CONV_WN; ++j) {
        const int n = n_block + j * 8 + ls_acc_col(lane, 0);
        bias2[j][0] = nvalid[j] ? bias[n] : 0.0f;
        bias2[j][1] = nvalid[j] ? bias[n + 1] : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < CONV_WM; ++i) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int row = (warp * CONV_WM + i) * 16 + ls_acc_row(lane, 2 * h);
            const ConvVox v = conv_vox(s0, r0, row, S, dhw, H, W);
            const ls_u32 vox = ((ls_u32)v.z * H + v.y) * W + v.x;
#pragma unroll
            for (int j = 0; j < CONV_WN; ++j) {
                const int n = n_block + j * 8 + ls_acc_col(lane, 2 * h);
                float v0 = acc[i][j].x[2 * h] + bias2[j][0], v1 = acc[i][j].x[2 * h + 1] + bias2[j][1];
                if (relu) {
                    v0 = fmaxf(v0, 0.0f);
                    v1 = fmaxf(v1, 0.0f);
                }
                v0 = ls_dropout(drop, v0, v.s, n, vox, dhw);
                v1 = ls_dropout(drop, v1, v.s, n + 1, vox, dhw);
                conv_smem[ls_swz(row, j, CONV_CCPR) / 16].w[lane & 3] = ls_pack2(v0, v1);
            }
        }
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < CONV_C_CHUNKS; ++i) {
        const int q = tid + i * CONV_THREADS, row = q / CONV_CCPR, cc = q % CONV_CCPR;
        const ConvVox v = conv_vox(s0, r0, row, S, dhw, H, W);
        const int n = n_block + cc * 8;
        if (!v.valid || n >= cout)
            continue;
        const ls_u32 vox = ((ls_u32)v.z * H + v.y) * W + v.x;
        *(LsChunk16 *)(out + ((ls_u64)v.s * dhw + vox) * cout + n) =
            conv_smem[ls_swz(row, cc, CONV_CCPR) / 16];
    }
}
