/* conv_first.cu — the 1-channel first layer (enc.0.conv1 + folded BN + ReLU) fused with the HU
 * normalisation. It precedes the first dropout, so it runs once per patch, not per MC sample.
 *
 * Layouts: hu [D][H][W] f32 (the caller's patch, z-major, x fastest);
 *          w  [32][Cout] f32: K = 27 taps padded to 32 (rows 27..31 zero), tap t = 9kz+3ky+kx;
 *          bias [Cout] f32; out [D][H][W][Cout] fp16 (NDHWC), Cout ≤ 64, multiple of 2.
 * The input is normalised x = clamp((hu − lo)/(hi − lo), 0, 1) and rounded to fp16 exactly as
 * the other layers see activations, then accumulated in f32.
 *
 * Tiles: one thread per output voxel, 128 threads per block, weights staged once per block in
 * shared memory (32 × Cout f32 ≤ 8 KiB). With Cin = 1 the GEMM has K = 27, far too thin for
 * tensor cores (an m16n8k16 tile would be 16% used after padding to 32 and the layer is
 * 0.1% of the network's FLOPs); it is bound by writing Cout fp16 per voxel, so plain FMAs in
 * f32 with fully coalesced 4-byte stores are the right tool.
 */

#define FIRST_THREADS 128
#define FIRST_MAX_COUT 64

struct LsFirstArgs {
    const float *hu;
    const float *w;
    const float *bias;
    ls_half *out;
    float lo, hi;
    int cout, D, H, W;
};
LS_SIZE(LsFirstArgs, FIRST);
LS_AT(LsFirstArgs, hu, FIRST, hu);
LS_AT(LsFirstArgs, w, FIRST, w);
LS_AT(LsFirstArgs, bias, FIRST, bias);
LS_AT(LsFirstArgs, out, FIRST, out);
LS_AT(LsFirstArgs, lo, FIRST, lo);
LS_AT(LsFirstArgs, hi, FIRST, hi);
LS_AT(LsFirstArgs, cout, FIRST, cout);
LS_AT(LsFirstArgs, D, FIRST, d);
LS_AT(LsFirstArgs, H, FIRST, h);
LS_AT(LsFirstArgs, W, FIRST, wd);

extern "C" __global__ void __launch_bounds__(FIRST_THREADS)
ls_conv_first(__grid_constant__ const LsFirstArgs args)
{
    const float *__restrict__ hu = args.hu;
    const float *__restrict__ w = args.w;
    const float *__restrict__ bias = args.bias;
    ls_half *__restrict__ out = args.out;
    const float lo = args.lo, hi = args.hi;
    const int cout = args.cout, D = args.D, H = args.H, W = args.W;
    __shared__ float sw[32 * FIRST_MAX_COUT];
    for (int i = threadIdx.x; i < 32 * cout; i += blockDim.x)
        sw[i] = w[i];
    __syncthreads();
    const ls_u32 dhw = (ls_u32)D * H * W;
    const ls_u32 v = blockIdx.x * blockDim.x + threadIdx.x;
    if (v >= dhw)
        return;
    const int x = v % W, y = (v / W) % H, z = v / (W * H);
    float in[27];
#pragma unroll
    for (int tap = 0; tap < 27; ++tap) {
        int zz = z + tap / 9 - 1, yy = y + tap / 3 % 3 - 1, xx = x + tap % 3 - 1;
        float val = 0.0f;
        if (zz >= 0 && zz < D && yy >= 0 && yy < H && xx >= 0 && xx < W) {
            float n = (hu[((ls_u64)zz * H + yy) * W + xx] - lo) / (hi - lo);
            val = ls_h2f(ls_f2h(fminf(fmaxf(n, 0.0f), 1.0f)));
        }
        in[tap] = val;
    }
    ls_u32 *o = (ls_u32 *)(out + (ls_u64)v * cout);
    for (int c = 0; c < cout; c += 2) {
        float a0 = 0.0f, a1 = 0.0f;
#pragma unroll
        for (int tap = 0; tap < 27; ++tap) {
            a0 = fmaf(in[tap], sw[tap * cout + c], a0);
            a1 = fmaf(in[tap], sw[tap * cout + c + 1], a1);
        }
        o[c / 2] = ls_pack2(fmaxf(a0 + bias[c], 0.0f), fmaxf(a1 + bias[c + 1], 0.0f));
    }
}
