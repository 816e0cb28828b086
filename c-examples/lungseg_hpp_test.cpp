// lungseg_hpp_test: checks what lungseg.hpp promises (ownership, const correctness, errors,
// buffer lengths), compiled as C++17 and C++20 (std::span overloads) and run by
// scripts/check_c_examples.sh and, under ASan/UBSan, scripts/check_c_sanitizers.sh.
//
//   lungseg_hpp_test          prints "ok" when every check passes
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "lungseg.hpp"

namespace {

int failures = 0;
void expect(bool cond, const char *what) {
    if (!cond) {
        std::fprintf(stderr, "FAIL %s\n", what);
        failures++;
    }
}

// Handles own their C object: moved, never copied.
template <class H>
constexpr bool move_only = !std::is_copy_constructible_v<H> && !std::is_copy_assignable_v<H> &&
                           std::is_nothrow_move_constructible_v<H> &&
                           std::is_nothrow_move_assignable_v<H>;
static_assert(move_only<lungseg::Volume>);
static_assert(move_only<lungseg::Model>);
static_assert(move_only<lungseg::ScanMap>);

// A const handle gives only the const C handle, as the C API's const parameters.
static_assert(std::is_same_v<decltype(std::declval<const lungseg::Volume &>().get()),
                             const lungseg_volume *>);
static_assert(std::is_same_v<decltype(std::declval<const lungseg::Model &>().get()),
                             const lungseg_model *>);
static_assert(std::is_same_v<decltype(std::declval<lungseg::ScanMap &>().get()),
                             lungseg_scan_map *>);

// Adding to a map mutates it: not callable on a const map; reading is.
template <class M, class = void>
struct can_add_patch : std::false_type {};
template <class M>
struct can_add_patch<M, std::void_t<decltype(std::declval<M>().add_patch(
                            nullptr, lungseg::Point3{}, static_cast<const float *>(nullptr),
                            size_t{0}, 1.0f))>> : std::true_type {};
static_assert(can_add_patch<lungseg::ScanMap &>::value);
static_assert(!can_add_patch<const lungseg::ScanMap &>::value);

lungseg_volume_desc small_desc() {
    auto d = lungseg::options<lungseg_volume_desc>();
    d.pixel_type = LUNGSEG_PIXEL_FLOAT32;
    d.dims[0] = 4, d.dims[1] = 3, d.dims[2] = 2;
    d.spacing[0] = d.spacing[1] = d.spacing[2] = 1.0;
    return d;
}

void test_options() {
    const auto o = lungseg::options<lungseg_mc_options>();
    expect(o.struct_size == sizeof(lungseg_mc_options), "options<T> sets struct_size");
    expect(o.n_samples == 0 && o.seed == 0, "options<T> zeroes the fields");
}

void test_errors() {
    try {
        lungseg::Volume::open("/nonexistent/lungseg/scan.mhd");
        expect(false, "opening a missing file throws");
    } catch (const lungseg::Error &e) {
        expect(e.status() == LUNGSEG_IO, "a missing file is LUNGSEG_IO");
        expect(e.message() == lungseg::last_error(), "the message is lungseg_last_error's");
        expect(e.message().find("/nonexistent/lungseg/scan.mhd") != std::string::npos,
               "the message names the file");
        expect(std::strstr(e.what(), "lungseg_volume_open: LUNGSEG_IO: ") == e.what(),
               "what() names the call and the status");
    }
    try {
        lungseg::Volume::create(lungseg::options<lungseg_volume_desc>(), nullptr, 0);
        expect(false, "a zeroed description throws");
    } catch (const lungseg::Error &e) {
        expect(e.status() == LUNGSEG_INVALID_ARGUMENT, "a zeroed description is INVALID_ARGUMENT");
    }
}

void test_ownership() {
    std::vector<float> px(4 * 3 * 2, -500.0f);
    lungseg::Volume a = lungseg::Volume::create(small_desc(), px.data(), px.size() * 4);
    const lungseg_volume *raw = std::as_const(a).get();
    lungseg::Volume b = std::move(a);
    expect(!a && b && std::as_const(b).get() == raw, "a move hands the handle over");
    lungseg::Volume c = lungseg::Volume::create(small_desc(), px.data(), px.size() * 4);
    c = std::move(b);  // frees c's own volume: LeakSanitizer sees it when it does not
    expect(std::as_const(c).get() == raw && !b, "move assignment takes the handle");
    lungseg_volume *released = c.release();
    expect(!c && released == raw, "release gives up ownership");
    lungseg::Volume d(released);
    expect(d.info().dims[0] == 4 && d.info().dims[2] == 2, "an adopted handle works");
}

void test_buffers() {
    std::vector<float> px(4 * 3 * 2);
    for (size_t i = 0; i < px.size(); i++) px[i] = float(i);
    const lungseg::Volume v = lungseg::Volume::create(small_desc(), px.data(), px.size() * 4);
    std::vector<float> hu(px.size());
    v.copy_hu(hu.data(), hu.size());
    expect(hu == px, "copy_hu gives the pixels");
    try {
        v.copy_hu(hu.data(), hu.size() - 1);
        expect(false, "a short buffer throws");
    } catch (const lungseg::Error &e) {
        expect(e.status() == LUNGSEG_INVALID_ARGUMENT, "a short buffer is INVALID_ARGUMENT");
    }
    const lungseg::Point3 w = v.voxel_to_world({1, 2, 1});
    const lungseg::Point3 back = v.world_to_voxel(w);
    expect(back[0] == 1 && back[1] == 2 && back[2] == 1, "voxel -> world -> voxel");

    lungseg::ScanMap map(v, LUNGSEG_SCAN_MAP_MAX);
    auto spec = lungseg::options<lungseg_patch_spec>();
    spec.size[0] = spec.size[1] = spec.size[2] = 2;
    spec.spacing_mm[0] = spec.spacing_mm[1] = spec.spacing_mm[2] = 1.0;
    const std::vector<float> ones(8, 1.0f);
    map.add_patch(&spec, w, ones.data(), ones.size());
    std::vector<float> out(px.size());
    std::as_const(map).read(out.data(), out.size());
    size_t set = 0;
    for (float x : out) set += x == 1.0f;
    expect(set > 0 && set <= 8, "the scan map holds the patch");
#ifdef LUNGSEG_HPP_SPAN
    std::vector<float> out20(px.size());
    std::as_const(map).read(std::span<float>(out20));
    expect(out20 == out, "read(span) = read(pointer, length)");
    try {
        std::vector<float> norm(hu.size() - 1);
        lungseg::normalize_hu(std::span<const float>(hu), -1000.0f, 400.0f, std::span<float>(norm));
        expect(false, "a short span throws");
    } catch (const lungseg::Error &e) {
        expect(e.status() == LUNGSEG_INVALID_ARGUMENT, "a short span is INVALID_ARGUMENT");
    }
    std::printf("C++20 span overloads checked\n");
#endif
}

}  // namespace

int main() {
    try {
        test_options();
        test_errors();
        test_ownership();
        test_buffers();
    } catch (const std::exception &e) {
        std::fprintf(stderr, "FAIL unexpected exception: %s\n", e.what());
        failures++;
    }
    if (failures) return 1;
    std::printf("ok\n");
    return 0;
}
