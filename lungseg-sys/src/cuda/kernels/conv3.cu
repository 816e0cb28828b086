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
 * Requirements (checked on the host): C0, C1 multiples of 16, Cout multiple of 8.
 *
 * GEMM view: M = S·D·H·W output voxels, N = Cout, K = 27·(C0+C1). A[m][k] is the input value of
 * voxel m's neighbour at tap k / Cin, channel k % Cin (0 outside the volume): implicit im2col.
 *
 * Tiles: 128 threads = 4 warps stacked along M; warp tile 32 (M) × 32 (N) = 2 × 4 mma tiles of
 * m16n8k16 → 32 f32 accumulators per thread; block tile 128 × 32; grid (ceil(M/128),
 * ceil(Cout/32)). An n-tile past Cout (Cout = 16 layers) is skipped warp-uniformly.
 * Reasoning: at 64³ the layers have 16–64 channels, so N is small and M huge; tiling M deeply
 * and keeping N = 32 keeps accumulators at 32 registers (no spills at 128 threads, checked by
 * scripts/nvrtc-check.sh) while every A fragment serves 4 mma and every B fragment 2.
 * Fragments are loaded straight from global memory (ld.global.nc, 32-bit, the L1 catches the
 * 27-fold tap reuse); a shared-memory/ldmatrix/cp.async pipeline is the next step once a GPU
 * can measure it (docs/cuda.md, "Status").
 */

#define CONV_WARPS 4
#define CONV_BM (CONV_WARPS * 32)
#define CONV_BN 32

extern "C" __global__ void __launch_bounds__(CONV_WARPS * 32)
ls_conv3(const ls_half *__restrict__ src0, ls_u64 ss0, int c0,
         const ls_half *__restrict__ src1, ls_u64 ss1, int c1,
         const ls_half *__restrict__ w, const float *__restrict__ bias,
         ls_half *__restrict__ out, int cout,
         int S, int D, int H, int W, int relu, LsDrop drop)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const ls_u32 dhw = (ls_u32)D * H * W;
    const ls_u64 M = (ls_u64)S * dhw;
    const int cin = c0 + c1;
    const int K = 27 * cin;
    const int n_base = blockIdx.y * CONV_BN;
    const ls_u64 m_warp = (ls_u64)blockIdx.x * CONV_BM + warp * 32;

    /* The 4 output rows this thread loads A for: m_warp + i*16 + g + h*8 (i, h in 0..1). */
    int rz[4], ry[4], rx[4];
    ls_u32 rs[4];
    bool rvalid[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        ls_u64 m = m_warp + (r >> 1) * 16 + (r & 1) * 8 + g;
        rvalid[r] = m < M;
        ls_u64 mm = rvalid[r] ? m : 0;
        rs[r] = (ls_u32)(mm / dhw);
        ls_u32 v = (ls_u32)(mm % dhw);
        rx[r] = v % W;
        ry[r] = (v / W) % H;
        rz[r] = v / (W * H);
    }

    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e)
                acc[i][j][e] = 0.0f;

    bool nvalid[4];
#pragma unroll
    for (int j = 0; j < 4; ++j)
        nvalid[j] = n_base + j * 8 < cout;

    for (int tap = 0; tap < 27; ++tap) {
        const int dz = tap / 9 - 1, dy = tap / 3 % 3 - 1, dx = tap % 3 - 1;
        /* Neighbour voxel offsets (in voxels, within the sample), -1 = outside: zero. */
        long long nb[4];
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            int z = rz[r] + dz, y = ry[r] + dy, x = rx[r] + dx;
            bool in = rvalid[r] && z >= 0 && z < D && y >= 0 && y < H && x >= 0 && x < W;
            nb[r] = in ? ((long long)z * H + y) * W + x : -1;
        }
        for (int kc = 0; kc < cin; kc += 16) {
            const bool first = kc < c0;
            const ls_half *src = first ? src0 : src1;
            const ls_u64 ss = first ? ss0 : ss1;
            const int cs = first ? c0 : c1;
            const int ch = (first ? kc : kc - c0) + 2 * t;
            ls_u32 a[2][4];
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                ls_u32 lo = 0, hi = 0;
                if (nb[r] >= 0) {
                    const ls_half *p = src + rs[r] * ss + (ls_u64)nb[r] * cs + ch;
                    lo = ls_ld32(p);
                    hi = ls_ld32(p + 8);
                }
                a[r >> 1][(r & 1)] = lo;     /* rows g / g+8, k 2t..  */
                a[r >> 1][(r & 1) + 2] = hi; /* rows g / g+8, k 2t+8.. */
            }
            const int k0 = tap * cin + kc + 2 * t;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                if (!nvalid[j])
                    continue;
                const ls_half *wp = w + (ls_u64)(n_base + j * 8 + g) * K + k0;
                ls_u32 b0 = ls_ld32(wp), b1 = ls_ld32(wp + 8);
                ls_mma16816(acc[0][j], a[0], b0, b1);
                ls_mma16816(acc[1][j], a[1], b0, b1);
            }
        }
    }

    /* Epilogue: bias, ReLU, dropout, fp16 pairs. */
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        if (!nvalid[j])
            continue;
        const int n = n_base + j * 8 + 2 * t;
        const float b0 = bias[n], b1 = bias[n + 1];
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            if (!rvalid[r])
                continue;
            const int i = r >> 1, h = r & 1;
            float v0 = acc[i][j][2 * h] + b0, v1 = acc[i][j][2 * h + 1] + b1;
            if (relu) {
                v0 = fmaxf(v0, 0.0f);
                v1 = fmaxf(v1, 0.0f);
            }
            const ls_u32 vox = ((ls_u32)rz[r] * H + ry[r]) * W + rx[r];
            v0 = ls_dropout(drop, v0, rs[r], n, vox, dhw);
            v1 = ls_dropout(drop, v1, rs[r], n + 1, vox, dhw);
            ls_u32 *o = (ls_u32 *)(out + ((ls_u64)rs[r] * dhw + vox) * cout + n);
            *o = ls_pack2(v0, v1);
        }
    }
}
