/* upconv.cu — ConvTranspose3d kernel 2 stride 2 as a GEMM on tensor cores.
 *
 * Layouts (fp16, dense NDHWC, batch of S):
 *   in   [S][d][h][w][Cin]      Cin multiple of 16
 *   w    [8][Cout][Cin]         n = o·Cout + co, o = 4a + 2b + c for output (2z+a, 2y+b, 2x+c)
 *   bias [Cout] f32
 *   out  [S][2d][2h][2w][Cout]  (no ReLU, no dropout: the upsampled half of a decoder input)
 * GEMM view: M = S·d·h·w input voxels, N = 8·Cout, K = Cin: every input voxel scatters an
 * independent 2×2×2 block, so there is no overlap and no reduction across voxels.
 *
 * Tiles: as conv3.cu (4 warps along M, warp tile 32 × 32, m16n8k16, fragments loaded directly
 * as 32-bit pairs); grid (ceil(M/128), ceil(8·Cout/32)). About 2% of the network's FLOPs.
 */

#define UP_WARPS 4
#define UP_BM (UP_WARPS * 32)
#define UP_BN 32

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

extern "C" __global__ void __launch_bounds__(UP_WARPS * 32)
ls_upconv2(__grid_constant__ const LsUpArgs args)
{
    const ls_half *__restrict__ in = args.in;
    const ls_half *__restrict__ w = args.w;
    const float *__restrict__ bias = args.bias;
    ls_half *__restrict__ out = args.out;
    const int cin = args.cin, cout = args.cout, S = args.S, d = args.d, h = args.h, wd = args.wd;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const ls_u64 M = (ls_u64)S * d * h * wd;
    const int N = 8 * cout;
    const int n_base = blockIdx.y * UP_BN;
    const ls_u64 m_warp = (ls_u64)blockIdx.x * UP_BM + warp * 32;

    ls_u64 rm[4];
    bool rvalid[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        rm[r] = m_warp + (r >> 1) * 16 + (r & 1) * 8 + g;
        rvalid[r] = rm[r] < M;
    }
    bool nvalid[4];
#pragma unroll
    for (int j = 0; j < 4; ++j)
        nvalid[j] = n_base + j * 8 < N;

    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e)
                acc[i][j][e] = 0.0f;

    for (int kc = 0; kc < cin; kc += 16) {
        ls_u32 a[2][4];
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            ls_u32 lo = 0, hi = 0;
            if (rvalid[r]) {
                const ls_half *p = in + rm[r] * cin + kc + 2 * t;
                lo = ls_ld32(p);
                hi = ls_ld32(p + 8);
            }
            a[r >> 1][r & 1] = lo;
            a[r >> 1][(r & 1) + 2] = hi;
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            if (!nvalid[j])
                continue;
            const ls_half *wp = w + (ls_u64)(n_base + j * 8 + g) * cin + kc + 2 * t;
            ls_u32 b0 = ls_ld32(wp), b1 = ls_ld32(wp + 8);
            ls_mma16816(acc[0][j], a[0], b0, b1);
            ls_mma16816(acc[1][j], a[1], b0, b1);
        }
    }

    const int OD = 2 * d, OH = 2 * h, OW = 2 * wd;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        if (!nvalid[j])
            continue;
        const int n = n_base + j * 8 + 2 * t;
        const int o = n / cout, co = n % cout; /* co even, so co+1 is in the same block o */
        const int a = o / 4, b = o / 2 % 2, c = o % 2;
        const float b0 = bias[co], b1 = bias[co + 1];
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            if (!rvalid[r])
                continue;
            const ls_u64 m = rm[r];
            const int x = m % wd, y = (m / wd) % h, z = (m / ((ls_u64)wd * h)) % d;
            const ls_u64 s = m / ((ls_u64)wd * h * d);
            const ls_u64 ov = ((s * OD + 2 * z + a) * OH + 2 * y + b) * OW + 2 * x + c;
            const int i = r >> 1, hh = r & 1;
            *(ls_u32 *)(out + ov * cout + co) =
                ls_pack2(acc[i][j][2 * hh] + b0, acc[i][j][2 * hh + 1] + b1);
        }
    }
}
