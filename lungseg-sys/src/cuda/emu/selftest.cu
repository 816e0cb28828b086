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

/* PTX the emulator does not know must stop it. */
extern "C" __global__ void emu_unknown_ptx(float *d)
{
    asm volatile("bar.sync 0;");
    d[0] = 1.0f;
}
