/* head.cu — the 1×1×1 head conv, sigmoid and the MC reduction across samples, so per-sample
 * probability maps never reach device memory.
 *
 * ls_head_accumulate: x [S][V][C] fp16 (the last decoder conv's output, post-dropout), w [C]
 *   f32, bias f32. For each voxel it folds the chunk's S samples into running per-voxel state
 *   (sample order, Welford in f32): mean, m2, sum of H(p_s) (bits), any-foreground flag.
 *   `n0` = samples already folded in (batches may be chunked to bound memory).
 *   `mask_t` is the model's mask threshold (config.mask_threshold; 0.5 unless the model names
 *   another): a sample calls a voxel foreground at p >= mask_t.
 *   Optional (`masks` NULL = skip): each sample's foreground mask `p >= mask_t` as a bitset, row s
 *   of the chunk at masks + s * mask_words, voxel v at bit (v % 32) of 32-bit word v / 32.
 *   `flip` (bit 0 x, bit 1 y, bit 2 z; 0 none) is the chunk's test-time flip: the network saw
 *   the patch mirrored, so state voxel v (x fastest on an nx × ny × V/(nx·ny) grid) reads the
 *   samples' output at its mirror image — the maps and masks stay on the patient's grid.
 *   `mask_words` is even (2 * ceil(V / 64)), so consecutive word pairs are the little-endian
 *   u64 words of the host's sample masks and a row is a whole u64 row; every word of a row is
 *   written (the grid's ceil(V / HEAD_THREADS) blocks of HEAD_THREADS / 32 words each cover
 *   them, HEAD_THREADS being a multiple of 64), bits past voxel V - 1 as 0. The bits are
 *   staged in shared memory and composed into words after a barrier (no warp ballot), so
 *   every thread of a block, in range or not, runs the sample loop to its barriers.
 * ls_head_finalize: maps (mean, population variance, entropy H(mean), mutual information
 *   max(H(mean) − sum_h/n, 0)), each optional (NULL = skip), plus one row of 6 f64 partial sums
 *   per block for the summary: [foreground voxels (mean ≥ mask_t), uncertain-region voxels (any
 *   sample ≥ mask_t), Σ mean, Σ entropy, Σ MI, Σ variance over the region]. The host adds the
 *   rows in block order: deterministic, no atomics.
 * Tiles: one thread per voxel, HEAD_THREADS per block; the C ≤ 64 weights sit in shared
 * memory. Memory bound: reads C halves per voxel per sample once.
 */

/* HEAD_THREADS, the block size of both kernels, is a -D constant (launch.rs, HEAD_DEFINES). */
#define HEAD_MAX_C 64
static_assert(HEAD_THREADS % 64 == 0, "a block composes whole u64 mask words");

LS_FN float ls_entropy_bits(float p)
{
    p = fminf(fmaxf(p, 0.0f), 1.0f);
    float h = 0.0f;
    if (p > 0.0f)
        h -= p * log2f(p);
    if (p < 1.0f)
        h -= (1.0f - p) * log2f(1.0f - p);
    return h;
}

/* The voxel whose mirror image under `flip` is v, on an nx × ny × V/(nx·ny) grid (x fastest);
 * a mirror is its own inverse. */
LS_FN ls_u32 ls_mirror_voxel(ls_u32 v, ls_u32 flip, ls_u32 nx, ls_u32 ny, ls_u32 V)
{
    if (!flip)
        return v;
    const ls_u32 plane = nx * ny, nz = V / plane;
    ls_u32 xi = v % nx, yi = (v / nx) % ny, zi = v / plane;
    if (flip & 1u)
        xi = nx - 1u - xi;
    if (flip & 2u)
        yi = ny - 1u - yi;
    if (flip & 4u)
        zi = nz - 1u - zi;
    return (zi * ny + yi) * nx + xi;
}

struct LsHeadAccArgs {
    const ls_half *x;
    const float *w;
    float *mean;
    float *m2;
    float *sum_h;
    ls_u32 *any_fg;
    float bias;
    int C, S;
    ls_u32 V;
    int n0;
    float mask_t;
    ls_u32 *masks;
    ls_u32 mask_words;
    ls_u32 flip;
    ls_u32 nx;
    ls_u32 ny;
};
LS_SIZE(LsHeadAccArgs, HEADACC);
LS_AT(LsHeadAccArgs, x, HEADACC, x);
LS_AT(LsHeadAccArgs, w, HEADACC, w);
LS_AT(LsHeadAccArgs, mean, HEADACC, mean);
LS_AT(LsHeadAccArgs, m2, HEADACC, m2);
LS_AT(LsHeadAccArgs, sum_h, HEADACC, sum_h);
LS_AT(LsHeadAccArgs, any_fg, HEADACC, any_fg);
LS_AT(LsHeadAccArgs, bias, HEADACC, bias);
LS_AT(LsHeadAccArgs, C, HEADACC, c);
LS_AT(LsHeadAccArgs, S, HEADACC, s);
LS_AT(LsHeadAccArgs, V, HEADACC, v);
LS_AT(LsHeadAccArgs, n0, HEADACC, n0);
LS_AT(LsHeadAccArgs, mask_t, HEADACC, mask_t);
LS_AT(LsHeadAccArgs, masks, HEADACC, masks);
LS_AT(LsHeadAccArgs, mask_words, HEADACC, mask_words);
LS_AT(LsHeadAccArgs, flip, HEADACC, flip);
LS_AT(LsHeadAccArgs, nx, HEADACC, nx);
LS_AT(LsHeadAccArgs, ny, HEADACC, ny);

struct LsHeadFinArgs {
    const float *mean;
    const float *m2;
    const float *sum_h;
    const ls_u32 *any_fg;
    float *out_mean;
    float *out_var;
    float *out_ent;
    float *out_mi;
    double *partials;
    int n;
    ls_u32 V;
    float mask_t;
    int pad;
};
LS_SIZE(LsHeadFinArgs, HEADFIN);
LS_AT(LsHeadFinArgs, mean, HEADFIN, mean);
LS_AT(LsHeadFinArgs, m2, HEADFIN, m2);
LS_AT(LsHeadFinArgs, sum_h, HEADFIN, sum_h);
LS_AT(LsHeadFinArgs, any_fg, HEADFIN, any_fg);
LS_AT(LsHeadFinArgs, out_mean, HEADFIN, out_mean);
LS_AT(LsHeadFinArgs, out_var, HEADFIN, out_var);
LS_AT(LsHeadFinArgs, out_ent, HEADFIN, out_ent);
LS_AT(LsHeadFinArgs, out_mi, HEADFIN, out_mi);
LS_AT(LsHeadFinArgs, partials, HEADFIN, partials);
LS_AT(LsHeadFinArgs, n, HEADFIN, n);
LS_AT(LsHeadFinArgs, V, HEADFIN, v);
LS_AT(LsHeadFinArgs, mask_t, HEADFIN, mask_t);

extern "C" __global__ void __launch_bounds__(HEAD_THREADS)
ls_head_accumulate(__grid_constant__ const LsHeadAccArgs args)
{
    const ls_half *__restrict__ x = args.x;
    const float *__restrict__ w = args.w;
    float *__restrict__ mean = args.mean;
    float *__restrict__ m2 = args.m2;
    float *__restrict__ sum_h = args.sum_h;
    ls_u32 *__restrict__ any_fg = args.any_fg;
    ls_u32 *__restrict__ masks = args.masks;
    const ls_u32 mask_words = args.mask_words;
    const float bias = args.bias, mask_t = args.mask_t;
    const int C = args.C, S = args.S, n0 = args.n0;
    const ls_u32 V = args.V;
    __shared__ float sw[HEAD_MAX_C];
    __shared__ ls_u32 sbit[HEAD_THREADS];
    for (int i = threadIdx.x; i < C; i += blockDim.x)
        sw[i] = w[i];
    __syncthreads();
    const ls_u32 v = blockIdx.x * blockDim.x + threadIdx.x;
    const bool live = v < V;
    const ls_u32 src = live ? ls_mirror_voxel(v, args.flip, args.nx, args.ny, V) : v;
    float mu = 0.0f, q = 0.0f, sh = 0.0f;
    ls_u32 fg = 0u;
    if (live && n0) {
        mu = mean[v];
        q = m2[v];
        sh = sum_h[v];
        fg = any_fg[v];
    }
    for (int s = 0; s < S; ++s) {
        float p = 0.0f;
        if (live) {
            const ls_u32 *px = (const ls_u32 *)(x + ((ls_u64)s * V + src) * C);
            float logit = bias;
            for (int c = 0; c < C; c += 2) {
                ls_u32 pair = px[c / 2];
                logit = fmaf(ls_h2f((ls_half)(pair & 0xffff)), sw[c], logit);
                logit = fmaf(ls_h2f((ls_half)(pair >> 16)), sw[c + 1], logit);
            }
            p = 1.0f / (1.0f + expf(-logit));
            const float k = (float)(n0 + s + 1);
            const float d = p - mu;
            mu += d / k;
            q += d * (p - mu);
            sh += ls_entropy_bits(p);
            fg |= p >= mask_t;
        }
        if (masks) {
            sbit[threadIdx.x] = live && p >= mask_t;
            __syncthreads();
            /* Thread t composes word t of the block's HEAD_THREADS / 32 words. */
            const ls_u32 word = blockIdx.x * (HEAD_THREADS / 32) + threadIdx.x;
            if (threadIdx.x < HEAD_THREADS / 32 && word < mask_words) {
                ls_u32 bits = 0u;
                for (int b = 0; b < 32; ++b)
                    bits |= (sbit[threadIdx.x * 32 + b] & 1u) << b;
                masks[(ls_u64)s * mask_words + word] = bits;
            }
            /* sbit is refilled for the next sample only after every word is composed. */
            __syncthreads();
        }
    }
    if (live) {
        mean[v] = mu;
        m2[v] = q;
        sum_h[v] = sh;
        any_fg[v] = fg;
    }
}

extern "C" __global__ void __launch_bounds__(HEAD_THREADS)
ls_head_finalize(__grid_constant__ const LsHeadFinArgs args)
{
    const float *__restrict__ mean = args.mean;
    const float *__restrict__ m2 = args.m2;
    const float *__restrict__ sum_h = args.sum_h;
    const ls_u32 *__restrict__ any_fg = args.any_fg;
    float *out_mean = args.out_mean, *out_var = args.out_var, *out_ent = args.out_ent,
          *out_mi = args.out_mi;
    double *__restrict__ partials = args.partials;
    const int n = args.n;
    const ls_u32 V = args.V;
    const float mask_t = args.mask_t;
    __shared__ double red[6][HEAD_THREADS];
    const ls_u32 v = blockIdx.x * blockDim.x + threadIdx.x;
    double acc[6] = {0, 0, 0, 0, 0, 0};
    if (v < V) {
        const float mu = mean[v];
        const float var = fmaxf(m2[v] / (float)n, 0.0f);
        const float h = ls_entropy_bits(mu);
        const float mi = fmaxf(h - sum_h[v] / (float)n, 0.0f);
        if (out_mean) out_mean[v] = mu;
        if (out_var) out_var[v] = var;
        if (out_ent) out_ent[v] = h;
        if (out_mi) out_mi[v] = mi;
        acc[0] = mu >= mask_t ? 1.0 : 0.0;
        if (any_fg[v]) {
            acc[1] = 1.0;
            acc[2] = mu;
            acc[3] = h;
            acc[4] = mi;
            acc[5] = var;
        }
    }
#pragma unroll
    for (int k = 0; k < 6; ++k)
        red[k][threadIdx.x] = acc[k];
    __syncthreads();
    for (int step = HEAD_THREADS / 2; step > 0; step >>= 1) {
        if (threadIdx.x < step)
#pragma unroll
            for (int k = 0; k < 6; ++k)
                red[k][threadIdx.x] += red[k][threadIdx.x + step];
        __syncthreads();
    }
    if (threadIdx.x < 6)
        partials[(ls_u64)blockIdx.x * 6 + threadIdx.x] = red[threadIdx.x][0];
}
