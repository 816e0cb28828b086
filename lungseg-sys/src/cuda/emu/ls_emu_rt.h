/* The emulator's launch interface and kernel registry (used by driver.cpp and by the
 * registration lines emu.rs appends to every kernel translation unit). */
#ifndef LS_EMU_RT_H
#define LS_EMU_RT_H

#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "ls_emu.h"

namespace ls_emu {

struct LaunchCfg {
    Dim3 grid, block;
    size_t dyn_smem;
    bool reverse; /* blocks and threads in reverse order */
};

/* Runs `body` as every thread of every block of the grid; aborts (fail) on an invalid
 * configuration, a divergent collective or a barrier that cannot complete. */
void launch(const LaunchCfg &cfg, const std::function<void()> &body);

/* m16n8k16 fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point
 * type"): element `i` of lane `lane` (A: 8 halves a0..a7, B: 4 halves b0..b3, C/D: 4 floats). */
int mma_a_row(int lane, int i);
int mma_a_col(int lane, int i);
int mma_b_row(int lane, int i); /* k */
int mma_b_col(int lane, int i); /* n */
int mma_c_row(int lane, int i);
int mma_c_col(int lane, int i);

/* One kernel argument as the host sent it: tag 'p' pointer, 'i' int, 'u' u32, 'q' u64,
 * 'f' float, 's' a by-value struct of `bytes.size()` bytes. */
struct Arg {
    char tag;
    uint64_t bits;
    std::vector<unsigned char> bytes;
};

using Invoker = std::function<void(const LaunchCfg &, const std::vector<Arg> &)>;

inline std::map<std::string, Invoker> &registry()
{
    static std::map<std::string, Invoker> r;
    return r;
}

template <class T> T arg_as(const Arg &a, size_t index, const char *name)
{
    T v{};
    auto want = [&](char tag) {
        if (a.tag != tag)
            fail("%s: argument %zu has tag '%c', the kernel's parameter needs '%c'", name, index,
                 a.tag, tag);
    };
    if constexpr (std::is_pointer<T>::value) {
        want('p');
        v = reinterpret_cast<T>(static_cast<uintptr_t>(a.bits));
    } else if constexpr (std::is_same<T, int>::value) {
        want('i');
        std::memcpy(&v, &a.bits, sizeof v);
    } else if constexpr (std::is_same<T, unsigned>::value) {
        want('u');
        std::memcpy(&v, &a.bits, sizeof v);
    } else if constexpr (std::is_same<T, unsigned long long>::value) {
        want('q');
        std::memcpy(&v, &a.bits, sizeof v);
    } else if constexpr (std::is_same<T, float>::value) {
        want('f');
        std::memcpy(&v, &a.bits, sizeof v);
    } else {
        static_assert(std::is_trivially_copyable<T>::value, "kernel parameter type");
        want('s');
        if (a.bytes.size() != sizeof(T))
            fail("%s: argument %zu is a %zu-byte struct, the kernel's is %zu bytes", name, index,
                 a.bytes.size(), sizeof(T));
        std::memcpy(&v, a.bytes.data(), sizeof v);
    }
    return v;
}

template <class... P, size_t... I>
void invoke(void (*fn)(P...), const char *name, const LaunchCfg &cfg, const std::vector<Arg> &args,
            std::index_sequence<I...>)
{
    if (args.size() != sizeof...(P))
        fail("%s: %zu arguments sent, the kernel takes %zu", name, args.size(), sizeof...(P));
    std::tuple<std::decay_t<P>...> values{arg_as<std::decay_t<P>>(args[I], I, name)...};
    launch(cfg, [&] { std::apply(fn, values); });
}

struct Registrar {
    template <class... P> Registrar(const char *name, void (*fn)(P...))
    {
        registry()[name] = [fn, name](const LaunchCfg &cfg, const std::vector<Arg> &args) {
            invoke(fn, name, cfg, args, std::index_sequence_for<P...>{});
        };
    }
};

} // namespace ls_emu

#endif /* LS_EMU_RT_H */
