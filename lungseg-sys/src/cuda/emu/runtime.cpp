/* The emulator's execution core: fp16 conversions, fibers, __syncthreads, shared memory and the
 * inline-PTX instructions the kernels use (see ls_emu.h for the design). */
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <deque>
#include <string>
#include <sys/mman.h>
#include <ucontext.h>
#include <unordered_map>
#include <vector>

#include "ls_emu_rt.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define LS_ASAN 1
#else
#define LS_ASAN 0
#endif

namespace ls_emu {

Dim3 thread_idx, block_idx, block_dim, grid_dim;

void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    std::fputs("ls_emu: ", stderr);
    std::vfprintf(stderr, fmt, ap);
    std::fputc('\n', stderr);
    va_end(ap);
    std::fflush(stderr);
    std::_Exit(3);
}

/* ---------------------------------------------------------------- fp16 */

float f16_to_f32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    uint32_t x;
    if (e == 0x1f) {
        x = sign | 0x7f800000u | (m << 13);
    } else if (e != 0) {
        x = sign | ((e + 112) << 23) | (m << 13);
    } else if (m == 0) {
        x = sign;
    } else { /* subnormal: m · 2^-24, exact in f32 */
        float f = (float)m * 0x1p-24f;
        std::memcpy(&x, &f, 4);
        x |= sign;
    }
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}

uint16_t f32_to_f16_rn(float f)
{
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    const uint32_t exp = (x >> 23) & 0xff, man = x & 0x7fffff;
    if (exp == 0xff)
        return man ? 0x7fff : (uint16_t)(sign | 0x7c00);
    if (exp >= 143) /* ≥ 2^16: past the largest finite half after rounding */
        return sign | 0x7c00;
    if (exp >= 113) { /* normal half; a rounding carry may step into the exponent (or to inf) */
        uint32_t h = ((exp - 112) << 10) | (man >> 13);
        const uint32_t rem = man & 0x1fff;
        if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
            ++h;
        return (uint16_t)(sign | h);
    }
    /* subnormal half (or zero): value = full · 2^(exp-150), result units of 2^-24 */
    const uint32_t shift = 126 - exp; /* ≥ 14 */
    if (shift > 24)
        return sign;
    const uint32_t full = man | 0x800000;
    uint32_t r = full >> shift;
    const uint32_t rem = full & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1)))
        ++r;
    return (uint16_t)(sign | r);
}

/* ---------------------------------------------------------------- fragments */

int mma_a_row(int lane, int i) { return lane / 4 + ((i < 2 || (i >= 4 && i < 6)) ? 0 : 8); }
int mma_a_col(int lane, int i) { return (lane % 4) * 2 + (i & 1) + (i >= 4 ? 8 : 0); }
int mma_b_row(int lane, int i) { return (lane % 4) * 2 + (i & 1) + (i >= 2 ? 8 : 0); }
int mma_b_col(int lane, int /*i*/) { return lane / 4; }
int mma_c_row(int lane, int i) { return lane / 4 + (i >= 2 ? 8 : 0); }
int mma_c_col(int lane, int i) { return (lane % 4) * 2 + (i & 1); }

/* ---------------------------------------------------------------- fibers */

namespace {

enum class St { Ready, Barrier, Coll, Done };

enum class Insn {
    CvtF32F16,
    CvtF16F32,
    LdNc32,
    Mma,
    Cvta,
    Ldsm,
    CpAsync,
    CpCommit,
    CpWait,
    CpWaitAll
};

/* Operands of one lane at a warp collective. */
struct Pending {
    const char *what; /* normalised instruction text */
    uint64_t seq;     /* the lane's collective count: a lane that skipped one is caught */
    Insn kind;
    uint32_t in[6];   /* mma: a0..a3, b0, b1; ldmatrix: the row address */
    float *acc[4];    /* mma: C in, D out */
    uint32_t *out[4]; /* ldmatrix: the destination registers */
    int num;          /* ldmatrix: matrices (1, 2, 4) */
    bool trans;       /* ldmatrix .trans */
};

/* One cp.async of a thread: lands (src_bytes from src, zeros to 16) at the wait that covers
 * its group, never earlier. */
struct AsyncCopy {
    uint32_t dst;
    const unsigned char *src;
    uint32_t src_bytes;
};

struct Fiber {
    ucontext_t ctx;
    St st;
    Dim3 tid;
    unsigned linear;
    uint64_t colls;
    Pending pend;
    std::vector<AsyncCopy> uncommitted;           /* cp.async since the last commit */
    std::deque<std::vector<AsyncCopy>> in_flight; /* committed groups, oldest first */
    void *stack;
#if LS_ASAN
    void *fake_stack;
#endif
};

/* Kernel frames are small; ASan clears a target stack's shadow on every swapcontext, so a
 * larger stack costs time on every switch. */
constexpr size_t kStack = 64 * 1024;
constexpr unsigned kMaxThreads = 1024;

std::vector<Fiber> fibers;
std::vector<Fiber *> by_linear; /* fibers by linear thread index */
std::vector<void *> stack_pool;
Fiber *cur = nullptr;
ucontext_t sched_ctx;
const std::function<void()> *body = nullptr;
uint64_t block_serial = 0;
std::unordered_map<void *, uint64_t> shared_poisoned;
unsigned char *dyn_mem = nullptr;
size_t dyn_bytes = 0;
#if LS_ASAN
void *sched_fake = nullptr;
const void *sched_bottom = nullptr;
size_t sched_size = 0;
#endif

void *stack_for(size_t i)
{
    while (stack_pool.size() <= i) {
        void *p = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            fail("mmap of a fiber stack failed");
        stack_pool.push_back(p);
    }
#if LS_ASAN
    /* A previous block's frames may have left poison behind. */
    __asan_unpoison_memory_region(stack_pool[i], kStack);
#endif
    return stack_pool[i];
}

void to_scheduler()
{
#if LS_ASAN
    __sanitizer_start_switch_fiber(cur->st == St::Done ? nullptr : &cur->fake_stack, sched_bottom,
                                   sched_size);
#endif
    swapcontext(&cur->ctx, &sched_ctx);
#if LS_ASAN
    __sanitizer_finish_switch_fiber(cur->fake_stack, &sched_bottom, &sched_size);
#endif
}

void fiber_main()
{
#if LS_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &sched_bottom, &sched_size);
#endif
    (*body)();
    size_t copies = cur->uncommitted.size();
    for (const auto &g : cur->in_flight)
        copies += g.size();
    if (copies)
        fail("block (%u,%u,%u) thread %u exited with %zu cp.async copies never waited for "
             "(missing cp.async.wait_group)",
             block_idx.x, block_idx.y, block_idx.z, cur->linear, copies);
    cur->st = St::Done;
    to_scheduler();
    fail("a finished fiber was resumed");
}

void run_fiber(Fiber &f)
{
    cur = &f;
    thread_idx = f.tid;
#if LS_ASAN
    __sanitizer_start_switch_fiber(&sched_fake, f.stack, kStack);
#endif
    swapcontext(&sched_ctx, &f.ctx);
#if LS_ASAN
    __sanitizer_finish_switch_fiber(sched_fake, nullptr, nullptr);
#endif
    cur = nullptr;
}

const char *state_name(St s)
{
    switch (s) {
    case St::Ready: return "running";
    case St::Barrier: return "at __syncthreads";
    case St::Coll: return "at a warp collective";
    case St::Done: return "exited";
    }
    return "?";
}

void exec_mma(Fiber *const lanes[32]);
void exec_ldsm(Fiber *const lanes[32]);

/* Executes warp w's collective when every lane of it waits at one; true if it did. Called when
 * no lane of the warp can run, so a lane that is not at the collective never will be: that is
 * divergence, reported. */
bool resolve_warp(unsigned w, unsigned nthreads)
{
    Fiber *lanes[32];
    unsigned nl = 0;
    bool any = false, all = true;
    for (unsigned l = 32 * w; l < 32 * w + 32 && l < nthreads; ++l) {
        Fiber *f = by_linear[l];
        lanes[nl++] = f;
        any |= f->st == St::Coll;
        all &= f->st == St::Coll;
    }
    if (!any)
        return false;
    if (nl != 32)
        fail("block (%u,%u,%u) warp %u: a warp collective in a warp of %u threads",
             block_idx.x, block_idx.y, block_idx.z, w, nl);
    if (!all) {
        for (unsigned l = 0; l < 32; ++l)
            if (lanes[l]->st != St::Coll)
                fail("block (%u,%u,%u) warp %u: divergent warp collective: lane %u is %s "
                     "while lane(s) wait at '%s'",
                     block_idx.x, block_idx.y, block_idx.z, w, l, state_name(lanes[l]->st),
                     lanes[0]->st == St::Coll ? lanes[0]->pend.what : "a collective");
    }
    for (unsigned l = 1; l < 32; ++l) {
        const Pending &a = lanes[0]->pend, &b = lanes[l]->pend;
        if (std::strcmp(a.what, b.what) != 0 || a.seq != b.seq)
            fail("block (%u,%u,%u) warp %u: lanes 0 and %u meet at different collectives "
                 "('%s' #%llu vs '%s' #%llu)",
                 block_idx.x, block_idx.y, block_idx.z, w, l, a.what,
                 (unsigned long long)a.seq, b.what, (unsigned long long)b.seq);
    }
    if (lanes[0]->pend.kind == Insn::Mma)
        exec_mma(lanes);
    else
        exec_ldsm(lanes);
    for (Fiber *f : lanes)
        f->st = St::Ready;
    return true;
}

/* Runs warp w (its lanes in launch order) until none of them can go on without another warp:
 * every lane exited or at __syncthreads. */
void run_warp(unsigned w, unsigned nthreads, bool reverse)
{
    const unsigned lo = 32 * w, hi = std::min(lo + 32, nthreads);
    for (;;) {
        for (unsigned i = lo; i < hi; ++i) {
            Fiber *f = by_linear[reverse ? lo + hi - 1 - i : i];
            if (f->st == St::Ready)
                run_fiber(*f);
        }
        if (!resolve_warp(w, nthreads))
            return;
    }
}

/* Every thread exited or waits at __syncthreads: releases the barrier; false when all exited. */
bool release_barrier(unsigned nthreads)
{
    unsigned at_barrier = 0, done = 0;
    for (auto &f : fibers) {
        at_barrier += f.st == St::Barrier;
        done += f.st == St::Done;
    }
    if (at_barrier == 0)
        return false;
    if (at_barrier + done != nthreads)
        fail("internal: unresolved fiber states");
    if (done)
        fail("block (%u,%u,%u): __syncthreads reached by %u threads while %u have exited",
             block_idx.x, block_idx.y, block_idx.z, at_barrier, done);
    for (auto &f : fibers)
        f.st = St::Ready;
    return true;
}

/* Scheduling: between two barriers each warp runs as far as it can before the next warp starts
 * (warps in launch order, lanes in launch order, both reversed for Order::Reverse). That is a
 * legal schedule, and the one furthest from lock-step: a warp reading shared data that another
 * warp writes after the same barrier (a missing __syncthreads) reads it before it is written
 * in one of the two orders. */
void run_block(const LaunchCfg &cfg, unsigned nthreads)
{
    ++block_serial;
    if (dyn_bytes)
        std::memset(dyn_mem, 0xff, dyn_bytes);
    fibers.assign(nthreads, Fiber{});
    by_linear.assign(nthreads, nullptr);
    for (unsigned i = 0; i < nthreads; ++i) {
        const unsigned lin = cfg.reverse ? nthreads - 1 - i : i;
        Fiber &f = fibers[i];
        f.linear = lin;
        by_linear[lin] = &f;
        f.tid = Dim3{lin % cfg.block.x, lin / cfg.block.x % cfg.block.y,
                     lin / (cfg.block.x * cfg.block.y)};
        f.st = St::Ready;
        f.stack = stack_for(i);
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack;
        f.ctx.uc_stack.ss_size = kStack;
        f.ctx.uc_link = nullptr;
        makecontext(&f.ctx, fiber_main, 0);
    }
    const unsigned nwarps = (nthreads + 31) / 32;
    do {
        for (unsigned i = 0; i < nwarps; ++i)
            run_warp(cfg.reverse ? nwarps - 1 - i : i, nthreads, cfg.reverse);
    } while (release_barrier(nthreads));
}

void block_wait(St st)
{
    if (!cur)
        fail("__syncthreads or a warp collective outside a kernel");
    cur->st = st;
    to_scheduler();
}

/* ---------------------------------------------------------------- PTX */

std::string normalise(const char *t)
{
    std::string s;
    bool space = false;
    for (const char *p = t; *p; ++p) {
        if (*p == ' ' || *p == '\t' || *p == '\n') {
            space = true;
            continue;
        }
        if (space && !s.empty())
            s += ' ';
        space = false;
        s += *p;
    }
    return s;
}

/* Each instruction's exact operand list: constraint, width, float. */
struct Sig {
    const char *cons;
    unsigned size;
    bool is_float;
};

void check_ops(const std::string &what, std::initializer_list<Operand> ops,
               std::initializer_list<Sig> want)
{
    if (ops.size() != want.size())
        fail("'%s': %zu operands, the instruction takes %zu", what.c_str(), ops.size(),
             want.size());
    size_t i = 0;
    auto w = want.begin();
    for (const Operand &o : ops) {
        const bool out = w->cons[0] == '=' || w->cons[0] == '+';
        if (std::strcmp(o.cons, w->cons) != 0 || o.size != w->size || o.is_float != w->is_float ||
            o.is_out != out)
            fail("'%s': operand %zu is \"%s\" (%u bytes%s), the instruction needs \"%s\" (%u "
                 "bytes%s)",
                 what.c_str(), i, o.cons, o.size, o.is_float ? ", float" : "", w->cons, w->size,
                 w->is_float ? ", float" : "");
        ++i;
        ++w;
    }
}

const char *const kMma = "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                         "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};";

void exec_mma(Fiber *const lanes[32])
{
    double a[16][16], b[16][8], c[16][8];
    for (int l = 0; l < 32; ++l) {
        const Pending &p = lanes[l]->pend;
        for (int i = 0; i < 8; ++i) {
            const uint16_t h = (uint16_t)(p.in[i / 2] >> (16 * (i & 1)));
            a[mma_a_row(l, i)][mma_a_col(l, i)] = f16_to_f32(h);
        }
        for (int i = 0; i < 4; ++i) {
            const uint16_t h = (uint16_t)(p.in[4 + i / 2] >> (16 * (i & 1)));
            b[mma_b_row(l, i)][mma_b_col(l, i)] = f16_to_f32(h);
        }
        for (int i = 0; i < 4; ++i)
            c[mma_c_row(l, i)][mma_c_col(l, i)] = *p.acc[i];
    }
    for (int l = 0; l < 32; ++l) {
        for (int i = 0; i < 4; ++i) {
            const int r = mma_c_row(l, i), n = mma_c_col(l, i);
            double s = c[r][n];
            for (int k = 0; k < 16; ++k)
                s += a[r][k] * b[k][n]; /* products of halves are exact in double */
            *lanes[l]->pend.acc[i] = (float)s;
        }
    }
}

/* ---------------------------------------------------------------- shared-window addresses */

/* Where the emulated shared window puts the launch's dynamic shared memory: not 0, so a tile
 * offset used as an address by mistake lands outside it and is reported. */
constexpr uint32_t kSharedBase = 0x1000;

/* The bytes at shared address `addr`, which must hold `bytes` bytes inside this launch's
 * dynamic shared memory and be aligned to `align`. */
unsigned char *shared_at(uint32_t addr, uint32_t bytes, uint32_t align, const char *what)
{
    const uint64_t off = (uint64_t)addr - kSharedBase;
    if (addr < kSharedBase || off + bytes > dyn_bytes)
        fail("%s: shared address %#x (%u bytes) is outside the %zu bytes of dynamic shared "
             "memory",
             what, addr, bytes, dyn_bytes);
    if (addr % align)
        fail("%s: shared address %#x is not %u-byte aligned", what, addr, align);
    return dyn_mem + off;
}

/* ldmatrix: lanes 8i..8i+7 address rows 0..7 of matrix i; lane l gets, per matrix, row l/4
 * elements 2(l%4), 2(l%4)+1 (PTX ISA "Warp-level matrix load instruction: ldmatrix"), or with
 * .trans the elements [2(l%4)][l/4] and [2(l%4)+1][l/4]. Addresses of lanes past 8·num are
 * not used. */
void exec_ldsm(Fiber *const lanes[32])
{
    const Pending &p0 = lanes[0]->pend;
    uint16_t m[4][8][8];
    for (int i = 0; i < p0.num; ++i)
        for (int r = 0; r < 8; ++r)
            std::memcpy(m[i][r], shared_at(lanes[8 * i + r]->pend.in[0], 16, 16, p0.what), 16);
    for (int l = 0; l < 32; ++l) {
        for (int i = 0; i < p0.num; ++i) {
            const int g = l / 4, t = l % 4;
            const uint16_t lo = p0.trans ? m[i][2 * t][g] : m[i][g][2 * t];
            const uint16_t hi = p0.trans ? m[i][2 * t + 1][g] : m[i][g][2 * t + 1];
            *lanes[l]->pend.out[i] = (uint32_t)lo | ((uint32_t)hi << 16);
        }
    }
}

/* Completes the copies of one group: the source is read now (ASan checks it). */
void land(const std::vector<AsyncCopy> &group)
{
    for (const AsyncCopy &c : group) {
        unsigned char *d = shared_at(c.dst, 16, 16, "cp.async");
        std::memcpy(d, c.src, c.src_bytes);
        std::memset(d + c.src_bytes, 0, 16 - c.src_bytes);
    }
}

} // namespace

void syncthreads() { block_wait(St::Barrier); }

void shared_decl(void *p, size_t bytes)
{
    uint64_t &seen = shared_poisoned[p];
    if (seen != block_serial) {
        std::memset(p, 0xff, bytes);
        seen = block_serial;
    }
}

void *dyn_shared()
{
    if (!body)
        fail("extern __shared__ used outside a kernel");
    return dyn_mem;
}

namespace {

struct Decoded {
    Insn kind;
    std::string text;
    int num;    /* ldmatrix matrices */
    bool trans; /* ldmatrix .trans */
};

/* The instruction of a template; cached by the literal's address (one per asm statement). */
const Decoded &decode(const char *tmpl)
{
    static std::unordered_map<const char *, Decoded> cache;
    auto it = cache.find(tmpl);
    if (it != cache.end())
        return it->second;
    Decoded d{Insn::Mma, normalise(tmpl), 0, false};
    const std::string &t = d.text;
    static const char *const ldsm[6] = {
        "ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];",
        "ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];",
        "ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];",
        "ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];",
        "ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];",
        "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];",
    };
    bool known = true;
    if (t == "cvt.f32.f16 %0, %1;")
        d.kind = Insn::CvtF32F16;
    else if (t == "cvt.rn.f16.f32 %0, %1;")
        d.kind = Insn::CvtF16F32;
    else if (t == "ld.global.nc.b32 %0, [%1];")
        d.kind = Insn::LdNc32;
    else if (t == kMma)
        d.kind = Insn::Mma;
    else if (t == "{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }")
        d.kind = Insn::Cvta;
    else if (t == "cp.async.cg.shared.global [%0], [%1], 16, %2;" ||
             t == "cp.async.ca.shared.global [%0], [%1], 16, %2;")
        d.kind = Insn::CpAsync;
    else if (t == "cp.async.commit_group;")
        d.kind = Insn::CpCommit;
    else if (t == "cp.async.wait_group %0;")
        d.kind = Insn::CpWait;
    else if (t == "cp.async.wait_all;")
        d.kind = Insn::CpWaitAll;
    else
        known = false;
    for (int i = 0; i < 6 && !known; ++i) {
        if (t == ldsm[i]) {
            known = true;
            d.kind = Insn::Ldsm;
            d.num = 1 << (i % 3);
            d.trans = i >= 3;
        }
    }
    if (!known)
        fail("unemulated inline PTX: \"%s\"", t.c_str());
    return cache.emplace(tmpl, std::move(d)).first->second;
}

Fiber &in_kernel(const std::string &what)
{
    if (!cur)
        fail("'%s' outside a kernel", what.c_str());
    return *cur;
}

void collective(Fiber &f, const Decoded &d)
{
    f.pend.what = d.text.c_str();
    f.pend.kind = d.kind;
    f.pend.seq = f.colls++;
    block_wait(St::Coll);
}

void exec_ldsm_issue(const Decoded &d, std::initializer_list<Operand> ops)
{
    const Sig out{"=r", 4, false}, addr{"r", 4, false};
    if (d.num == 1)
        check_ops(d.text, ops, {out, addr});
    else if (d.num == 2)
        check_ops(d.text, ops, {out, out, addr});
    else
        check_ops(d.text, ops, {out, out, out, out, addr});
    Fiber &f = in_kernel(d.text);
    const Operand *o = ops.begin();
    for (int i = 0; i < d.num; ++i)
        f.pend.out[i] = static_cast<uint32_t *>(o[i].ptr);
    f.pend.in[0] = (uint32_t)o[d.num].bits;
    f.pend.num = d.num;
    f.pend.trans = d.trans;
    collective(f, d);
}

void cp_async_issue(const Decoded &d, std::initializer_list<Operand> ops)
{
    check_ops(d.text, ops, {{"r", 4, false}, {"l", 8, false}, {"r", 4, false}});
    Fiber &f = in_kernel(d.text);
    const Operand *o = ops.begin();
    const uint32_t dst = (uint32_t)o[0].bits, n = (uint32_t)o[2].bits;
    const uintptr_t src = (uintptr_t)o[1].bits;
    if (n > 16)
        fail("cp.async: src-size %u exceeds the 16-byte copy", n);
    if (src % 16)
        fail("cp.async: global source %#lx is not 16-byte aligned", (unsigned long)src);
    /* Undefined until the wait: whoever reads it earlier reads NaN. */
    std::memset(shared_at(dst, 16, 16, "cp.async"), 0xff, 16);
    f.uncommitted.push_back(AsyncCopy{dst, reinterpret_cast<const unsigned char *>(src), n});
}

void cp_async_wait(Fiber &f, size_t keep)
{
    while (f.in_flight.size() > keep) {
        land(f.in_flight.front());
        f.in_flight.pop_front();
    }
}

} // namespace

void ptx(const char *tmpl, std::initializer_list<Operand> ops)
{
    const Decoded &d = decode(tmpl);
    const std::string &t = d.text;
    const Operand *o = ops.begin();
    switch (d.kind) {
    case Insn::CvtF32F16: {
        check_ops(t, ops, {{"=f", 4, true}, {"h", 2, false}});
        const float f = f16_to_f32((uint16_t)o[1].bits);
        std::memcpy(o[0].ptr, &f, 4);
        break;
    }
    case Insn::CvtF16F32: {
        check_ops(t, ops, {{"=h", 2, false}, {"f", 4, true}});
        float f;
        std::memcpy(&f, &o[1].bits, 4);
        const uint16_t h = f32_to_f16_rn(f);
        std::memcpy(o[0].ptr, &h, 2);
        break;
    }
    case Insn::LdNc32: {
        check_ops(t, ops, {{"=r", 4, false}, {"l", 8, false}});
        const uintptr_t a = (uintptr_t)o[1].bits;
        if (a % 4)
            fail("ld.global.nc.b32 from misaligned address %#lx", (unsigned long)a);
        const uint32_t v = *reinterpret_cast<const uint32_t *>(a); /* ASan checks the bounds */
        std::memcpy(o[0].ptr, &v, 4);
        break;
    }
    case Insn::Mma: {
        check_ops(t, ops,
                  {{"+f", 4, true}, {"+f", 4, true}, {"+f", 4, true}, {"+f", 4, true},
                   {"r", 4, false}, {"r", 4, false}, {"r", 4, false}, {"r", 4, false},
                   {"r", 4, false}, {"r", 4, false}});
        Fiber &f = in_kernel(t);
        for (int i = 0; i < 4; ++i)
            f.pend.acc[i] = static_cast<float *>(o[i].ptr);
        for (int i = 0; i < 6; ++i)
            f.pend.in[i] = (uint32_t)o[4 + i].bits;
        collective(f, d);
        break;
    }
    case Insn::Cvta: {
        check_ops(t, ops, {{"=r", 4, false}, {"l", 8, false}});
        const unsigned char *p = reinterpret_cast<const unsigned char *>((uintptr_t)o[1].bits);
        if (!dyn_mem || p < dyn_mem || p > dyn_mem + dyn_bytes)
            fail("cvta.to.shared of %p: not in this launch's dynamic shared memory (static "
                 "__shared__ arrays have no emulated shared address)",
                 static_cast<const void *>(p));
        const uint32_t a = kSharedBase + (uint32_t)(p - dyn_mem);
        std::memcpy(o[0].ptr, &a, 4);
        break;
    }
    case Insn::Ldsm: exec_ldsm_issue(d, ops); break;
    case Insn::CpAsync: cp_async_issue(d, ops); break;
    case Insn::CpCommit: {
        check_ops(t, ops, {});
        Fiber &f = in_kernel(t);
        f.in_flight.push_back(std::move(f.uncommitted));
        f.uncommitted.clear();
        break;
    }
    case Insn::CpWait: {
        check_ops(t, ops, {{"n", 4, false}});
        int n;
        std::memcpy(&n, &o[0].bits, 4);
        if (n < 0 || n > 7)
            fail("cp.async.wait_group %d: N must be 0..7", n);
        cp_async_wait(in_kernel(t), (size_t)n);
        break;
    }
    case Insn::CpWaitAll: {
        check_ops(t, ops, {});
        Fiber &f = in_kernel(t);
        f.in_flight.push_back(std::move(f.uncommitted));
        f.uncommitted.clear();
        cp_async_wait(f, 0);
        break;
    }
    }
}

void launch(const LaunchCfg &cfg, const std::function<void()> &fn)
{
    const Dim3 g = cfg.grid, b = cfg.block;
    if (g.x < 1 || g.y < 1 || g.z < 1 || g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535)
        fail("invalid grid (%u,%u,%u)", g.x, g.y, g.z);
    const unsigned long long nthreads = (unsigned long long)b.x * b.y * b.z;
    if (b.x < 1 || b.y < 1 || b.z < 1 || b.x > 1024 || b.y > 1024 || b.z > 64 ||
        nthreads > kMaxThreads)
        fail("invalid block (%u,%u,%u)", b.x, b.y, b.z);
    if (cfg.dyn_smem > 48 * 1024)
        fail("%zu bytes of dynamic shared memory exceed 48 KiB", cfg.dyn_smem);
    body = &fn;
    grid_dim = g;
    block_dim = b;
    dyn_bytes = cfg.dyn_smem;
    /* Exactly dyn_smem bytes (none: a zero-size block), so ASan catches a read past it. */
    /* 16-byte aligned like a real shared window (ldmatrix rows, cp.async destinations). */
    void *mem = nullptr;
    if (posix_memalign(&mem, 16, dyn_bytes) != 0)
        fail("allocating %zu bytes of dynamic shared memory failed", dyn_bytes);
    dyn_mem = static_cast<unsigned char *>(mem);
    const unsigned long long nblocks = (unsigned long long)g.x * g.y * g.z;
    for (unsigned long long i = 0; i < nblocks; ++i) {
        const unsigned long long k = cfg.reverse ? nblocks - 1 - i : i;
        block_idx = Dim3{(unsigned)(k % g.x), (unsigned)(k / g.x % g.y),
                         (unsigned)(k / ((unsigned long long)g.x * g.y))};
        run_block(cfg, (unsigned)nthreads);
    }
    std::free(dyn_mem);
    dyn_mem = nullptr;
    dyn_bytes = 0;
    body = nullptr;
}

} // namespace ls_emu
