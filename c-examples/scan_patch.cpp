// scan_patch (C++17): the same job as scan_patch.c with RAII ownership of lungseg handles,
// the way a C++ PACS plug-in would hold them.
//
//   scan_patch_cpp <scan.mhd> <x_mm> <y_mm> <z_mm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "lungseg.h"

namespace {

struct VolumeDeleter {
    void operator()(lungseg_volume *v) const noexcept { lungseg_volume_free(v); }
};
using Volume = std::unique_ptr<lungseg_volume, VolumeDeleter>;

void check(lungseg_status st, const char *what) {
    if (st == LUNGSEG_OK) return;
    std::string msg(lungseg_last_error(nullptr, 0) + 1, '\0');
    lungseg_last_error(msg.data(), msg.size());
    msg.pop_back();
    throw std::runtime_error(std::string(what) + ": " + lungseg_status_name(st) + ": " + msg);
}

Volume open_volume(const char *path) {
    lungseg_volume *raw = nullptr;
    check(lungseg_volume_open(path, &raw), "lungseg_volume_open");
    return Volume(raw);
}

}  // namespace

int main(int argc, char **argv) try {
    if (argc != 5) {
        std::fprintf(stderr, "usage: %s <scan.mhd> <x_mm> <y_mm> <z_mm>\n", argv[0]);
        return 2;
    }
    std::printf("lungseg %s (header %d.%d.%d)\n", lungseg_version(), LUNGSEG_VERSION_MAJOR,
                LUNGSEG_VERSION_MINOR, LUNGSEG_VERSION_PATCH);
    Volume vol = open_volume(argv[1]);
    lungseg_volume_info info{};
    check(lungseg_volume_get_info(vol.get(), &info), "lungseg_volume_get_info");
    std::printf("dims %lu %lu %lu\n", (unsigned long)info.dims[0], (unsigned long)info.dims[1],
                (unsigned long)info.dims[2]);
    std::printf("spacing %.6f %.6f %.6f\n", info.spacing[0], info.spacing[1], info.spacing[2]);
    std::printf("origin %.6f %.6f %.6f\n", info.origin[0], info.origin[1], info.origin[2]);
    std::printf("direction");
    for (double d : info.direction) std::printf(" %g", d);
    std::printf("\nelement_type %u channels %u%s\n", info.element_type, info.channels,
                info.element_type == LUNGSEG_MET_SHORT ? " (int16)" : "");

    std::array<double, 3> world{}, voxel{}, back{};
    for (int i = 0; i < 3; i++) world[i] = std::strtod(argv[2 + i], nullptr);
    check(lungseg_world_to_voxel(vol.get(), world.data(), voxel.data()), "lungseg_world_to_voxel");
    check(lungseg_voxel_to_world(vol.get(), voxel.data(), back.data()), "lungseg_voxel_to_world");
    std::printf("world %.3f %.3f %.3f -> voxel %.4f %.4f %.4f\n", world[0], world[1], world[2],
                voxel[0], voxel[1], voxel[2]);

    constexpr size_t P = 64;
    lungseg_patch_spec spec{};
    spec.struct_size = sizeof spec;
    spec.size[0] = spec.size[1] = spec.size[2] = P;
    spec.spacing_mm[0] = spec.spacing_mm[1] = spec.spacing_mm[2] = 1.0;
    spec.outside_hu = -1000.0f;
    std::vector<float> patch(P * P * P);
    check(lungseg_volume_extract_patch(vol.get(), world.data(), &spec, patch.data(), patch.size()),
          "lungseg_volume_extract_patch");
    std::printf("patch centre HU %.1f\n", patch[(P / 2 * P + P / 2) * P + P / 2]);
    check(lungseg_normalize_hu(patch.data(), patch.size(), -1000.0f, 400.0f, patch.data()),
          "lungseg_normalize_hu");
    float lo = 1e30f, hi = -1e30f;
    for (float v : patch) {
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    double mean = std::accumulate(patch.begin(), patch.end(), 0.0) / double(patch.size());
    std::printf("normalised patch min %.4f mean %.4f max %.4f\n", lo, mean, hi);

    // A failing call must throw with a readable message and leave the process intact.
    try {
        open_volume("/nonexistent/scan.mhd");
        std::fprintf(stderr, "opening a missing file did not fail\n");
        return 1;
    } catch (const std::runtime_error &e) {
        std::printf("bad input ok: %s\n", e.what());
    }
    std::printf("ok\n");
    return 0;
} catch (const std::exception &e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
}
