/* pool.cu — MaxPool3d(2) on fp16 NDHWC.
 *
 * Layouts: in [S][D][H][W][C], out [S][D/2][H/2][W/2][C] (D, H, W even; C even).
 * Tiles: one thread per (output voxel, channel pair); consecutive threads take consecutive
 * channel pairs, so each of the 8 loads and the store are coalesced 4-byte accesses. Memory
 * bound (reads 8 halves per output half); max of fp16 values is exact, so it matches the CPU
 * reference bit for bit. Inputs are post-ReLU/post-dropout, so no NaN handling is needed
 * beyond what fmaxf does.
 */

struct LsPoolArgs {
    const ls_half *in;
    ls_half *out;
    int S, D, H, W, C, pad;
};
LS_SIZE(LsPoolArgs, POOL);
LS_AT(LsPoolArgs, in, POOL, input);
LS_AT(LsPoolArgs, out, POOL, out);
LS_AT(LsPoolArgs, S, POOL, s);
LS_AT(LsPoolArgs, D, POOL, d);
LS_AT(LsPoolArgs, H, POOL, h);
LS_AT(LsPoolArgs, W, POOL, wd);
LS_AT(LsPoolArgs, C, POOL, c);

extern "C" __global__ void __launch_bounds__(256)
ls_maxpool2(__grid_constant__ const LsPoolArgs args)
{
    const ls_half *__restrict__ in = args.in;
    ls_half *__restrict__ out = args.out;
    const int S = args.S, D = args.D, H = args.H, W = args.W, C = args.C;
    const int od = D / 2, oh = H / 2, ow = W / 2, cp = C / 2;
    const ls_u64 total = (ls_u64)S * od * oh * ow * cp;
    const ls_u64 i = (ls_u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total)
        return;
    const int c = (int)(i % cp) * 2;
    ls_u64 v = i / cp;
    const int x = v % ow, y = (v / ow) % oh, z = (v / ((ls_u64)ow * oh)) % od;
    const ls_u64 s = v / ((ls_u64)ow * oh * od);
    float m0 = -3.0e38f, m1 = -3.0e38f;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
        const int zz = 2 * z + k / 4, yy = 2 * y + k / 2 % 2, xx = 2 * x + k % 2;
        ls_u32 p = ls_ld32(in + (((s * D + zz) * H + yy) * W + xx) * C + c);
        m0 = fmaxf(m0, ls_h2f((ls_half)(p & 0xffff)));
        m1 = fmaxf(m1, ls_h2f((ls_half)(p >> 16)));
    }
    *(ls_u32 *)(out + v * C + c) = ls_pack2(m0, m1);
}
