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

LS_FN ls_half ls_f2h(float f)
{
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
#endif /* __CUDACC__ */

#endif /* LUNGSEG_COMMON_CUH */
