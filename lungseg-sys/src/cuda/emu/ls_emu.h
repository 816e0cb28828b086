/* Host emulation of the CUDA subset the lungseg kernels use (docs/cuda.md, "Emulator").
 *
 * The kernel sources are the very strings NVRTC compiles (`KernelSource::full_source`), with two
 * mechanical rewrites done by lungseg-sys/src/cuda/emu.rs before g++ sees them:
 *   - `asm [volatile](TEMPLATE : outputs : inputs)` → `ls_emu::ptx(TEMPLATE, {operands})`: the
 *     emulator dispatches on the exact PTX template string and checks every operand's constraint
 *     and width, so an unknown instruction or a changed operand list is an error, never a no-op;
 *   - `__shared__ T x[N];` → a per-block array poisoned (0xFF bytes: NaN) when a block starts;
 *     `extern __shared__ T x[];` → the launch's dynamic shared memory.
 *
 * Execution: blocks run one after another; the threads of a block are fibers (ucontext) on one
 * OS thread, switched only at __syncthreads and warp collectives. Why fibers rather than OS
 * threads: scheduling is deterministic (a failure reproduces), a barrier or a warp collective
 * that cannot complete is *known* at once (every fiber is blocked) instead of guessed with a
 * timeout, and AddressSanitizer/UBSan see one thread. Between two barriers each warp runs as
 * far as it can before the next warp starts (runtime.cpp, run_block), and intra-block races are
 * exposed by running every launch twice, warps and threads in forward and reverse order, and
 * comparing.
 *
 * This header is force-included (-include) before the kernel source; it includes every system
 * header first and only then defines __CUDACC__ (glibc headers look at that macro).
 */
#ifndef LS_EMU_H
#define LS_EMU_H

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <type_traits>

namespace ls_emu {

struct Dim3 {
    unsigned x, y, z;
};

/* The built-in variables of the fiber that is running. */
extern Dim3 thread_idx, block_idx, block_dim, grid_dim;

/* IEEE binary16 conversions: exact widening; round to nearest even (cvt.rn), with subnormals,
 * overflow to infinity, NaN → canonical NaN 0x7fff (what cvt.rn.f16.f32 produces). */
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16_rn(float f);

/* One asm operand: constraint string, width in bytes, float or not, and either the address of
 * an output ("=x"/"+x") or the value of an input. */
struct Operand {
    const char *cons;
    unsigned size;
    bool is_float;
    bool is_out;
    void *ptr;
    uint64_t bits;
};

template <class T> Operand out(const char *cons, T &x)
{
    static_assert(std::is_arithmetic<T>::value || std::is_pointer<T>::value, "asm operand type");
    return Operand{cons, (unsigned)sizeof(T), std::is_floating_point<T>::value, true, (void *)&x, 0};
}

template <class T> Operand in(const char *cons, const T &x)
{
    static_assert(std::is_arithmetic<T>::value || std::is_pointer<T>::value, "asm operand type");
    Operand o{cons, (unsigned)sizeof(T), std::is_floating_point<T>::value, false, nullptr, 0};
    std::memcpy(&o.bits, &x, sizeof(T));
    return o;
}

/* Executes the inline-PTX statement `tmpl` (exact text) with its operands; aborts on anything
 * it does not emulate. Warp collectives (mma.sync, ldmatrix) block the calling fiber until all
 * 32 lanes of its warp arrive at the same collective. cp.async is per thread and asynchronous:
 * the destination is NaN-poisoned at issue and the data lands at the cp.async.wait_group that
 * covers its group, so a read before the wait (or a refill of a buffer another warp still
 * reads) sees NaN. Shared addresses (`cvta.to.shared`) exist for dynamic shared memory only. */
void ptx(const char *tmpl, std::initializer_list<Operand> ops);

void syncthreads();

/* A static `__shared__` array: poisoned once per block, at the first fiber that declares it. */
void shared_decl(void *p, size_t bytes);

/* `extern __shared__`: this launch's dynamic shared memory (poisoned per block). */
void *dyn_shared();

[[noreturn]] void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

} // namespace ls_emu

#define threadIdx (::ls_emu::thread_idx)
#define blockIdx (::ls_emu::block_idx)
#define blockDim (::ls_emu::block_dim)
#define gridDim (::ls_emu::grid_dim)
#define __syncthreads() ::ls_emu::syncthreads()
#define __global__
#define __device__
/* Internal linkage: a kernel file compiled twice with other tile constants (conv3.cu as
 * ls_conv3 and ls_conv3_narrow) defines the same helper names with different bodies, and
 * external inline functions would be merged by the linker, so one entry point would run the
 * other's tile. NVRTC compiles each file as its own module, where the question does not arise. */
#define __forceinline__ static inline
#define __launch_bounds__(n)
#define __grid_constant__

/* Everything system-side is included above: from here on the kernel source sees CUDA. */
#define __CUDACC__ 1

#endif /* LS_EMU_H */
