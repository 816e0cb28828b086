/* The emulated device: a process that holds buffers and runs launches for lungseg::cuda::emu
 * (Rust). Binary requests on stdin, replies on stdout, all little-endian:
 *   'A' id:u32 bytes:u64 fill:u8 [data]  allocate (fill 0: data follows, 1: 0xFF bytes = NaN)
 *   'F' id:u32                            free
 *   'R' id:u32                            read → bytes:u64 data
 *   'L' name:str grid:3×u32 block:3×u32 dyn:u32 reverse:u8 n:u16 args  launch → 0:u8
 *        arg: 'p' id:u32 (0xffffffff = NULL) off:u64 | 'i' i32 | 'u' u32 | 'q' u64 | 'f' f32 |
 *             's' len:u16 bytes |
 *             'r' len:u16 bytes n:u16 n×(at:u32 id:u32): a struct whose 8 bytes at `at` are set
 *                 to buffer `id`'s address (0xffffffff = NULL), then passed as 's'
 *   'C' n:u64 n×f32                       cvt.rn.f16.f32 of each → n×u16
 *   'T'                                   fragment-layout self-test → 0:u8
 *   'Q'                                   quit
 * Every buffer is its own malloc of exactly its size, so AddressSanitizer reports any access
 * outside it. Any error ends the process with a message on stderr and exit status 3. */
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "ls_emu_rt.h"

namespace {

using ls_emu::fail;

void read_exact(void *p, size_t n)
{
    if (n && std::fread(p, 1, n, stdin) != n)
        fail("request truncated");
}

template <class T> T rd()
{
    T v;
    read_exact(&v, sizeof v);
    return v;
}

void write_exact(const void *p, size_t n)
{
    if (n && std::fwrite(p, 1, n, stdout) != n)
        fail("reply write failed");
}

struct Buffer {
    unsigned char *p;
    size_t n;
};

std::map<uint32_t, Buffer> buffers;

void cmd_alloc()
{
    const uint32_t id = rd<uint32_t>();
    const uint64_t n = rd<uint64_t>();
    const uint8_t fill = rd<uint8_t>();
    if (buffers.count(id))
        fail("buffer %u allocated twice", id);
    if (n > (uint64_t)1 << 32)
        fail("buffer %u: %llu bytes is more than the emulator allows", id, (unsigned long long)n);
    unsigned char *p = static_cast<unsigned char *>(std::malloc(n));
    if (!p && n)
        fail("out of memory for buffer %u", id);
    if (fill == 0)
        read_exact(p, n);
    else
        std::memset(p, 0xff, n);
    buffers[id] = Buffer{p, n};
}

Buffer &buffer(uint32_t id)
{
    auto it = buffers.find(id);
    if (it == buffers.end())
        fail("no buffer %u", id);
    return it->second;
}

void cmd_free()
{
    const uint32_t id = rd<uint32_t>();
    std::free(buffer(id).p);
    buffers.erase(id);
}

void cmd_read()
{
    const Buffer &b = buffer(rd<uint32_t>());
    const uint64_t n = b.n;
    write_exact(&n, 8);
    write_exact(b.p, n);
}

void cmd_launch()
{
    const uint16_t len = rd<uint16_t>();
    std::string name(len, '\0');
    read_exact(&name[0], len);
    ls_emu::LaunchCfg cfg{};
    cfg.grid = ls_emu::Dim3{rd<uint32_t>(), rd<uint32_t>(), rd<uint32_t>()};
    cfg.block = ls_emu::Dim3{rd<uint32_t>(), rd<uint32_t>(), rd<uint32_t>()};
    cfg.dyn_smem = rd<uint32_t>();
    cfg.reverse = rd<uint8_t>() != 0;
    const uint16_t n = rd<uint16_t>();
    std::vector<ls_emu::Arg> args(n);
    for (auto &a : args) {
        a.tag = (char)rd<uint8_t>();
        switch (a.tag) {
        case 'p': {
            const uint32_t id = rd<uint32_t>();
            const uint64_t off = rd<uint64_t>();
            if (id == 0xffffffffu) {
                a.bits = 0;
            } else {
                const Buffer &b = buffer(id);
                if (off > b.n)
                    fail("pointer offset %llu past buffer %u", (unsigned long long)off, id);
                a.bits = (uint64_t)(uintptr_t)(b.p + off);
            }
            break;
        }
        case 'i':
        case 'u':
        case 'f': a.bits = rd<uint32_t>(); break;
        case 'q': a.bits = rd<uint64_t>(); break;
        case 's':
            a.bytes.resize(rd<uint16_t>());
            read_exact(a.bytes.data(), a.bytes.size());
            break;
        case 'r': {
            a.tag = 's';
            a.bytes.resize(rd<uint16_t>());
            read_exact(a.bytes.data(), a.bytes.size());
            const uint16_t ptrs = rd<uint16_t>();
            for (uint16_t k = 0; k < ptrs; ++k) {
                const uint32_t at = rd<uint32_t>(), id = rd<uint32_t>();
                if ((uint64_t)at + 8 > a.bytes.size())
                    fail("pointer field at %u past a %zu-byte struct", at, a.bytes.size());
                const uint64_t addr = id == 0xffffffffu ? 0 : (uint64_t)(uintptr_t)buffer(id).p;
                std::memcpy(a.bytes.data() + at, &addr, 8);
            }
            break;
        }
        default: fail("unknown argument tag '%c'", a.tag);
        }
    }
    auto it = ls_emu::registry().find(name);
    if (it == ls_emu::registry().end())
        fail("no kernel named %s", name.c_str());
    it->second(cfg, args);
    write_exact("\0", 1);
}

void cmd_convert()
{
    /* The whole request first: replying while the host still writes would fill both pipes. */
    const uint64_t n = rd<uint64_t>();
    if (n > ((uint64_t)1 << 28))
        fail("%llu conversions requested", (unsigned long long)n);
    std::vector<float> in(n);
    read_exact(in.data(), n * sizeof(float));
    std::vector<uint16_t> out(n);
    for (uint64_t i = 0; i < n; ++i)
        out[i] = ls_emu::f32_to_f16_rn(in[i]);
    write_exact(out.data(), n * 2);
}

/* The m16n8k16 layouts against an independent table: ggml's `tile<I, J, T>::get_i/get_j` for
 * Turing+ (ggml-cuda/mma.cuh, as vendored in ollama/ollama ml/backend/ggml/ggml/src/ggml-cuda/
 * mma.cuh at 13b76f73817944d4d3cb07a412838ccd734c37bc). ggml counts J in 32-bit units (two
 * halves) for half2 tiles: A = tile<16, 8, half2>, B = tile<8, 8, half2> with I = n, and
 * C = tile<16, 8, float>; l is the 32-bit register index. */
void cmd_selftest()
{
    for (int lane = 0; lane < 32; ++lane) {
        for (int l = 0; l < 4; ++l) { /* A registers a[l] = halves 2l, 2l+1 */
            const int gi = ((l % 2) * 8) + (lane / 4), gj = ((l / 2) * 4) + (lane % 4);
            for (int h = 0; h < 2; ++h) {
                const int i = 2 * l + h;
                if (ls_emu::mma_a_row(lane, i) != gi || ls_emu::mma_a_col(lane, i) != 2 * gj + h)
                    fail("A layout differs from ggml at lane %d a%d", lane, i);
            }
        }
        for (int l = 0; l < 2; ++l) { /* B registers b[l]: ggml I = n, J = k pair */
            const int gi = lane / 4, gj = (l * 4) + (lane % 4);
            for (int h = 0; h < 2; ++h) {
                const int i = 2 * l + h;
                if (ls_emu::mma_b_col(lane, i) != gi || ls_emu::mma_b_row(lane, i) != 2 * gj + h)
                    fail("B layout differs from ggml at lane %d b%d", lane, i);
            }
        }
        for (int l = 0; l < 4; ++l) { /* C floats */
            const int gi = ((l / 2) * 8) + (lane / 4), gj = ((lane % 4) * 2) + (l % 2);
            if (ls_emu::mma_c_row(lane, l) != gi || ls_emu::mma_c_col(lane, l) != gj)
                fail("C layout differs from ggml at lane %d c%d", lane, l);
        }
    }
    /* Every element of each matrix is owned by exactly one (lane, index). */
    int a[16][16] = {}, b[16][8] = {}, c[16][8] = {};
    for (int lane = 0; lane < 32; ++lane) {
        for (int i = 0; i < 8; ++i)
            ++a[ls_emu::mma_a_row(lane, i)][ls_emu::mma_a_col(lane, i)];
        for (int i = 0; i < 4; ++i) {
            ++b[ls_emu::mma_b_row(lane, i)][ls_emu::mma_b_col(lane, i)];
            ++c[ls_emu::mma_c_row(lane, i)][ls_emu::mma_c_col(lane, i)];
        }
    }
    for (int r = 0; r < 16; ++r)
        for (int k = 0; k < 16; ++k)
            if (a[r][k] != 1 || (k < 8 && (b[r][k] != 1 || c[r][k] != 1)))
                fail("fragment layouts do not cover each element once");
    write_exact("\0", 1);
}

} // namespace

int main()
{
    for (;;) {
        int op = std::fgetc(stdin);
        switch (op) {
        case EOF:
        case 'Q': return 0;
        case 'A': cmd_alloc(); break;
        case 'F': cmd_free(); break;
        case 'R': cmd_read(); break;
        case 'L': cmd_launch(); break;
        case 'C': cmd_convert(); break;
        case 'T': cmd_selftest(); break;
        default: fail("unknown request %d", op);
        }
        std::fflush(stdout);
    }
}
