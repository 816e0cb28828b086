// volume_uncertainty (C++17, lungseg.hpp): a host that already holds decoded pixels (a DICOM
// series in a PACS) makes a volume from memory, asks for the MC-dropout uncertainty of the
// model's patch around a point, and puts the mean probability back onto the scan's own grid.
//
//   volume_uncertainty [model.safetensors]   (default: the installed default model)
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "lungseg.hpp"

#ifndef LUNGSEG_DEFAULT_MODEL
#error "build with -DLUNGSEG_DEFAULT_MODEL=\"<prefix>/share/lungseg/lungseg-default.safetensors\""
#endif

namespace {

constexpr size_t NX = 48, NY = 40, NZ = 32;

// A CT as a scanner stores it: int16 with the DICOM rescale, soft tissue ball in lung.
std::vector<int16_t> synthetic_ct() {
    std::vector<int16_t> ct(NX * NY * NZ);
    for (size_t z = 0; z < NZ; z++)
        for (size_t y = 0; y < NY; y++)
            for (size_t x = 0; x < NX; x++) {
                double dx = (double(x) - 24) * 0.7, dy = (double(y) - 20) * 0.7,
                       dz = (double(z) - 16) * 1.25;
                bool ball = dx * dx + dy * dy + dz * dz < 5.0 * 5.0;
                ct[(z * NY + y) * NX + x] = int16_t((ball ? 40 : -850) + 1024);
            }
    return ct;
}

// A host that decoded DICOM passes its Slice Thickness (0018,0050) too: a slice thicker than
// the step between slices makes the scan that coarse for the model's intended use.
lungseg::Volume volume_from_memory(const std::vector<int16_t> &ct, double slice_thickness_mm) {
    auto desc = lungseg::options<lungseg_volume_desc>();
    desc.slice_thickness_mm = slice_thickness_mm;
    desc.pixel_type = LUNGSEG_PIXEL_INT16;
    desc.dims[0] = NX, desc.dims[1] = NY, desc.dims[2] = NZ;
    desc.spacing[0] = desc.spacing[1] = 0.7, desc.spacing[2] = 1.25;
    desc.origin[0] = -20.0, desc.origin[1] = -15.0, desc.origin[2] = -30.0;
    desc.rescale_slope = 1.0;
    desc.rescale_intercept = -1024.0;
    return lungseg::Volume::create(desc, ct.data(), ct.size() * sizeof(int16_t));
}

}  // namespace

int main(int argc, char **argv) try {
    if (argc > 2) {
        std::fprintf(stderr, "usage: %s [model.safetensors]\n", argv[0]);
        return 2;
    }
    const char *model_path = argc == 2 ? argv[1] : LUNGSEG_DEFAULT_MODEL;
    auto model_opts = lungseg::options<lungseg_model_options>();
    model_opts.device = LUNGSEG_DEVICE_CPU;
    const lungseg::Model model = lungseg::Model::open(model_path, model_opts);
    const lungseg_model_info info = model.info();
    if (!model.device_note().empty()) throw std::runtime_error("a device note for a CPU model");
    {
        // AUTO says why it did not take a GPU exactly when it runs on the CPU.
        auto auto_opts = lungseg::options<lungseg_model_options>();
        auto_opts.device = LUNGSEG_DEVICE_AUTO;
        const lungseg::Model on_auto = lungseg::Model::open(model_path, auto_opts);
        const std::string note = on_auto.device_note();
        std::printf("AUTO: %s\n", note.empty() ? on_auto.info().device_name : note.c_str());
        if ((on_auto.info().device == LUNGSEG_DEVICE_CPU) == note.empty())
            throw std::runtime_error("AUTO's device and its note disagree");
    }
    std::printf("lungseg %s, model patch %u x %u x %u on %s\n", lungseg::version(),
                info.patch_size[0], info.patch_size[1], info.patch_size[2], info.device_name);

    const std::vector<int16_t> ct = synthetic_ct();
    const lungseg::Volume volume = volume_from_memory(ct, 1.25);
    if (volume.slice_thickness_mm() != 1.25) throw std::runtime_error("slice thickness lost");
    // The ball's centre, on a scan voxel so the map read back there is the patch's centre value.
    const lungseg::Point3 center = volume.voxel_to_world({24, 20, 16});

    const size_t voxels = size_t(info.patch_size[0]) * info.patch_size[1] * info.patch_size[2];
    std::vector<float> mean(voxels), entropy(voxels);
    lungseg::UncertaintyMaps maps;
    maps.mean = mean.data();
    maps.entropy = entropy.data();
    maps.len = voxels;
    if (model.cpu_kernel() == LUNGSEG_CPU_KERNEL_AUTO) throw std::runtime_error("kernel unresolved");
    auto mc = lungseg::options<lungseg_mc_options>();
    mc.n_samples = 8;
    mc.seed = 2026;
    // The structure-wise measures of the sample masks (Roy et al. 2019) come back here.
    auto structure = lungseg::options<lungseg_structure_measures>();
    mc.structure_measures = &structure;
    // 1.25 mm slices: within any model's intended use that names one (the default's 5 mm).
    const double max_spacing = model.max_scan_spacing_mm();
    std::printf("intended use: %s\n", max_spacing > 0.0
                                           ? (model.admits(volume) ? "this scan is within it"
                                                                   : "this scan is COARSER")
                                           : "any voxel spacing");
    if (max_spacing >= 1.25 && !model.admits(volume))
        throw std::runtime_error("a scan within the model's spacing limit was not admitted");
    // The same pixels reconstructed thicker than the limit (overlapping slices, same spacing).
    if (max_spacing > 0.0 && model.admits(volume_from_memory(ct, 2.0 * max_spacing)))
        throw std::runtime_error("slices twice the limit thick were admitted");
    const lungseg_patch_summary s = model.predict_uncertainty_at(volume, center, maps, &mc);
    std::printf("summary: %u samples, %lu foreground voxels, score %.5f vs %.5f -> %s\n",
                s.n_samples, (unsigned long)s.foreground_voxels, s.uncertainty_score,
                s.review_threshold, s.needs_review ? "NEEDS REVIEW" : "confident");
    // The mask the summary counts: the mean at the model's threshold without the small
    // components its rule drops.
    const std::vector<uint8_t> mask = model.final_mask(mean);
    uint64_t mask_voxels = 0;
    for (uint8_t m : mask) mask_voxels += m;
    std::printf("final mask: threshold %.3f, %lu voxels (minimum component %g mm3, spared "
                "within %g mm; point rule %.3f within %g mm; %u flips)\n",
                model.mask_threshold(), (unsigned long)mask_voxels, model.min_component_mm3(),
                model.min_component_spare_radius_mm(), model.point_mask_threshold(),
                model.point_radius_mm(), model.test_time_flips());
    if (mask_voxels != s.foreground_voxels)
        throw std::runtime_error("final mask and summary differ");
    // The mask as the call returns it: with the model's second look where it runs (1.25 mm
    // slices are thin enough for the default model's), else the same mask as above.
    lungseg_mc_options mc_mask = mc;
    mc_mask.structure_measures = nullptr;
    const lungseg::Model::PointMask pm = model.predict_final_mask_at(volume, center, maps, mc_mask);
    uint64_t pm_voxels = 0;
    for (uint8_t m : pm.mask) pm_voxels += m;
    std::printf("final mask from the call: %lu voxels (%s)\n", (unsigned long)pm_voxels,
                pm.source == LUNGSEG_MASK_JOINED            ? "joined with the second look"
                : pm.source == LUNGSEG_MASK_FIRST_LOOK_ONLY ? "second look: nothing to join"
                                                            : "the model's mask");
    if (pm_voxels != pm.summary.foreground_voxels)
        throw std::runtime_error("the call's mask and its summary differ");
    if (pm.source == LUNGSEG_MASK_MODEL && pm.mask != mask)
        throw std::runtime_error("without a second look the call's mask is not lungseg_final_mask's");
    // The probability a voxel is nodule, where the model carries a map calibrated on held-out
    // scans (the mean itself where it does not).
    const std::vector<float> calibrated = model.calibrated_probability(mean);
    double in_mask = 0.0;
    for (size_t i = 0; i < mask.size(); i++) in_mask += mask[i] ? calibrated[i] : 0.0;
    std::printf("calibrated probability (%s): mean %.4f inside the mask\n",
                model.has_probability_map() ? "probability map" : "no map: the MC mean",
                mask_voxels ? in_mask / mask_voxels : 0.0);
    if (!model.has_probability_map() && calibrated != mean)
        throw std::runtime_error("no probability map, yet the probabilities changed");
    std::printf("sample masks: Dice agreement %.4f, IoU %.4f, volume CV %.4f\n",
                structure.dice_agreement, structure.iou, structure.volume_cv);
    if (!(structure.iou >= 0.0f && structure.iou <= 1.0f) || structure.struct_size == 0)
        throw std::runtime_error("structure measures not written");

    // The mean probability back on the scan's grid, on the patch grid the model saw.
    auto spec = lungseg::options<lungseg_patch_spec>();
    for (int a = 0; a < 3; a++) {
        spec.size[a] = info.patch_size[a];
        spec.spacing_mm[a] = info.spacing_mm[a];
    }
    lungseg::ScanMap map(volume, LUNGSEG_SCAN_MAP_MEAN);
    map.add_patch(&spec, center, mean.data(), mean.size());
    std::vector<float> on_scan(NX * NY * NZ);
    static_cast<const lungseg::ScanMap &>(map).read(on_scan.data(), on_scan.size());

    int bad = 0;
    const float at_center = on_scan[(16 * NY + 20) * NX + 24];
    const size_t patch_center = (info.patch_size[2] / 2 * info.patch_size[1] +
                                 info.patch_size[1] / 2) * info.patch_size[0] +
                                info.patch_size[0] / 2;
    if (std::fabs(at_center - mean[patch_center]) > 1e-5f) {
        std::fprintf(stderr, "scan map at the centre %g, patch centre %g\n", at_center,
                     mean[patch_center]);
        bad = 1;
    }
    size_t covered = 0;
    for (float v : on_scan) {
        if (!(v >= 0.0f && v <= 1.0f)) bad = 1;
        covered += v != 0.0f;
    }
    // A scan corner outside the patch the model saw gets no value on the scan grid.
    const lungseg::Point3 corner = volume.voxel_to_world({0, 0, 0});
    bool outside = false;
    for (int a = 0; a < 3; a++)
        outside |= std::fabs(corner[a] - center[a]) > 0.5 * info.patch_size[a] * info.spacing_mm[a];
    if (outside && on_scan[0] != 0.0f) bad = 1;
    std::printf("scan map: centre %.4f, %lu of %lu voxels covered\n", at_center,
                (unsigned long)covered, (unsigned long)on_scan.size());

    // Candidate points in one batch call, with the host's logger: the first point gives the
    // summary above, bit for bit.
    auto run = lungseg::options<lungseg_run_options>();
    int log_lines = 0;
    run.log_level = LUNGSEG_LOG_INFO;
    run.log = [](void *user, uint32_t level, const char *message) {
        // One INFO line per point and one for the batch (WARN lines come when a patch
        // reaches outside the scan, which depends on the model's patch size).
        if (level == LUNGSEG_LOG_INFO) ++*static_cast<int *>(user);
        std::printf("  log[%u] %s\n", level, message);
    };
    run.user = &log_lines;
    mc.run = &run;
    mc.structure_measures = nullptr;
    const std::vector<lungseg::Point3> candidates = {center, volume.voxel_to_world({20, 20, 16})};
    const auto batch = model.predict_uncertainty_batch(volume, candidates, &mc);
    std::printf("batch: %zu points, first score %.5f, %d INFO log lines\n", batch.size(),
                batch[0].uncertainty_score, log_lines);
    if (batch.size() != 2 || batch[0].uncertainty_score != s.uncertainty_score ||
        batch[0].foreground_voxels != s.foreground_voxels || log_lines != 3)
        bad = 1;
    mc.run = nullptr;

    // The final masks of a batch are the single calls' (the same seed draws the same samples).
    const auto masks = model.predict_final_masks_batch(volume, {center}, mc_mask);
    std::printf("batch final mask: %zu points, source %u\n", masks.size(),
                masks.empty() ? 0u : masks[0].source);
    if (masks.size() != 1 || masks[0].mask != pm.mask || masks[0].source != pm.source ||
        masks[0].summary.foreground_voxels != pm.summary.foreground_voxels)
        bad = 1;

    // Bad input is an exception carrying the status and the library's message.
    mc.n_samples = 5000;
    try {
        model.predict_uncertainty_at(volume, center, maps, &mc);
        std::fprintf(stderr, "5000 samples were accepted\n");
        bad = 1;
    } catch (const lungseg::Error &e) {
        if (e.status() != LUNGSEG_INVALID_ARGUMENT || e.message().empty()) bad = 1;
        std::printf("bad input ok: %s\n", e.what());
    }
    if (bad) return 1;
    std::printf("ok\n");
    return 0;
} catch (const std::exception &e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
}
