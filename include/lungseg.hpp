/*
 * lungseg.hpp: a header-only C++17 wrapper over the C API of lungseg.h.
 *
 * - Handles are owning, move-only types (Volume, Model, ScanMap) that free on destruction.
 * - A failing call throws lungseg::Error, which carries the lungseg_status and the message
 *   lungseg_last_error() gave on the calling thread.
 * - Methods whose C function takes a const handle are const members, so a `const Model &`
 *   may be shared by many threads, as the C API allows.
 * - Buffers are pointer + length; under C++20 every buffer also takes a std::span.
 * - Options and descriptions are the C structs themselves: lungseg::options<T>() gives one
 *   zeroed with struct_size set, so a field added to a struct in lungseg.h is usable at once.
 *
 * Link with the library as for the C API (pkg-config lungseg, or CMake lungseg::lungseg).
 */
#ifndef LUNGSEG_HPP
#define LUNGSEG_HPP

#include <array>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if __cplusplus >= 202002L && __has_include(<span>)
#include <span>
#define LUNGSEG_HPP_SPAN 1
#endif

#include "lungseg.h"

namespace lungseg {

// A world point or a continuous voxel index: x, y, z.
using Point3 = std::array<double, 3>;

// The calling thread's last error message (empty when there is none).
inline std::string last_error() {
    std::string msg(lungseg_last_error(nullptr, 0), '\0');
    if (!msg.empty()) {
        // The message may not grow between the two calls: it belongs to this thread.
        std::string buf(msg.size() + 1, '\0');
        lungseg_last_error(buf.data(), buf.size());
        msg.assign(buf.data(), msg.size());
    }
    return msg;
}

// A failed lungseg call: status(), the library's message(), and what() = "call: STATUS: message".
class Error : public std::runtime_error {
public:
    Error(lungseg_status status, const char *call, std::string message)
        : std::runtime_error(std::string(call) + ": " + lungseg_status_name(status) + ": " +
                             message),
          status_(status), message_(std::move(message)) {}
    lungseg_status status() const noexcept { return status_; }
    const std::string &message() const noexcept { return message_; }

private:
    lungseg_status status_;
    std::string message_;
};

namespace detail {
inline void check(lungseg_status status, const char *call) {
    if (status != LUNGSEG_OK) throw Error(status, call, last_error());
}

// Owns one C handle; the derived class names its free function.
template <class T, void (*Free)(T *)>
class Handle {
public:
    Handle() noexcept = default;
    explicit Handle(T *raw) noexcept : raw_(raw) {}
    Handle(const Handle &) = delete;
    Handle &operator=(const Handle &) = delete;
    Handle(Handle &&other) noexcept : raw_(std::exchange(other.raw_, nullptr)) {}
    Handle &operator=(Handle &&other) noexcept {
        if (this != &other) reset(std::exchange(other.raw_, nullptr));
        return *this;
    }
    ~Handle() { reset(); }

    // The C handle, for calls this wrapper does not cover; const objects give a const handle.
    T *get() noexcept { return raw_; }
    const T *get() const noexcept { return raw_; }
    explicit operator bool() const noexcept { return raw_ != nullptr; }
    // Gives up ownership: the caller frees the returned handle.
    T *release() noexcept { return std::exchange(raw_, nullptr); }
    void reset(T *raw = nullptr) noexcept {
        if (raw_) Free(raw_);
        raw_ = raw;
    }

private:
    T *raw_ = nullptr;
};
}  // namespace detail

// An options struct or description zeroed (every field its default) with struct_size set.
template <class T>
T options() noexcept {
    static_assert(std::is_trivially_copyable_v<T> &&
                      std::is_same_v<decltype(T::struct_size), uint32_t>,
                  "lungseg::options<T> is for the C options structs that start with struct_size");
    T value{};
    value.struct_size = sizeof(T);
    return value;
}

// The library's version string, e.g. "0.1.0".
inline const char *version() noexcept { return lungseg_version(); }

// Where a patch map goes in `Model::predict_uncertainty*`: any map may be null; non-null maps
// hold `len` floats (the model's patch voxel count).
struct UncertaintyMaps {
    float *mean = nullptr;
    float *variance = nullptr;
    float *entropy = nullptr;
    float *mutual_info = nullptr;
    size_t len = 0;
};

// An opened CT volume. Immutable: every read is a const member.
class Volume : public detail::Handle<lungseg_volume, lungseg_volume_free> {
public:
    using Handle::Handle;

    static Volume open(const char *path) {
        lungseg_volume *raw = nullptr;
        detail::check(lungseg_volume_open(path, &raw), "lungseg_volume_open");
        return Volume(raw);
    }
    static Volume open(const char *path, const lungseg_open_options &opts) {
        lungseg_volume *raw = nullptr;
        detail::check(lungseg_volume_open_ex(path, &opts, &raw), "lungseg_volume_open_ex");
        return Volume(raw);
    }
    // Copies `pixels` (`pixels_len` bytes) described by `desc`.
    static Volume create(const lungseg_volume_desc &desc, const void *pixels, size_t pixels_len) {
        lungseg_volume *raw = nullptr;
        detail::check(lungseg_volume_create(&desc, pixels, pixels_len, &raw),
                      "lungseg_volume_create");
        return Volume(raw);
    }
    // Reads `pixels` in place: they must outlive the volume, unchanged.
    static Volume create_borrowed(const lungseg_volume_desc &desc, const void *pixels,
                                  size_t pixels_len) {
        lungseg_volume *raw = nullptr;
        detail::check(lungseg_volume_create_borrowed(&desc, pixels, pixels_len, &raw),
                      "lungseg_volume_create_borrowed");
        return Volume(raw);
    }

    lungseg_volume_info info() const {
        lungseg_volume_info out{};
        detail::check(lungseg_volume_get_info(get(), &out), "lungseg_volume_get_info");
        return out;
    }
    // The reconstructed slice thickness along z in mm (DICOM Slice Thickness, or the
    // description's); 0 when the source states none.
    double slice_thickness_mm() const {
        double t = 0.0;
        detail::check(lungseg_volume_get_slice_thickness(get(), &t),
                      "lungseg_volume_get_slice_thickness");
        return t;
    }
    void copy_hu(float *dst, size_t dst_len) const {
        detail::check(lungseg_volume_copy_hu(get(), dst, dst_len), "lungseg_volume_copy_hu");
    }
    Point3 world_to_voxel(const Point3 &world) const {
        Point3 voxel{};
        detail::check(lungseg_world_to_voxel(get(), world.data(), voxel.data()),
                      "lungseg_world_to_voxel");
        return voxel;
    }
    Point3 voxel_to_world(const Point3 &voxel) const {
        Point3 world{};
        detail::check(lungseg_voxel_to_world(get(), voxel.data(), world.data()),
                      "lungseg_voxel_to_world");
        return world;
    }
    // `spec` null = 64³ at 1 mm.
    void extract_patch(const Point3 &center, const lungseg_patch_spec *spec, float *dst,
                       size_t dst_len) const {
        detail::check(lungseg_volume_extract_patch(get(), center.data(), spec, dst, dst_len),
                      "lungseg_volume_extract_patch");
    }
    void write(const char *path, uint32_t flags = 0) const {
        detail::check(lungseg_volume_write(get(), path, flags), "lungseg_volume_write");
    }

#ifdef LUNGSEG_HPP_SPAN
    void copy_hu(std::span<float> dst) const { copy_hu(dst.data(), dst.size()); }
    void extract_patch(const Point3 &center, const lungseg_patch_spec *spec,
                       std::span<float> dst) const {
        extract_patch(center, spec, dst.data(), dst.size());
    }
#endif
};

// A loaded model. Predictions are const: one `const Model &` may serve many threads.
class Model : public detail::Handle<lungseg_model, lungseg_model_free> {
public:
    using Handle::Handle;

    static Model open(const char *path) { return open_raw(path, nullptr); }
    static Model open(const char *path, const lungseg_model_options &opts) {
        return open_raw(path, &opts);
    }

    lungseg_model_info info() const {
        lungseg_model_info out{};
        detail::check(lungseg_model_get_info(get(), &out), "lungseg_model_get_info");
        return out;
    }
    // Why predictions do not run on a GPU although they might (AUTO found none usable, or the
    // GPU faulted during a prediction); empty when the CPU was asked for or a GPU is in use.
    std::string device_note() const {
        std::vector<char> buf(lungseg_model_get_device_note(get(), nullptr, 0) + 1);
        lungseg_model_get_device_note(get(), buf.data(), buf.size());
        return std::string(buf.data());
    }
    // The CPU kernel predictions run on, chosen at open (never AUTO).
    lungseg_cpu_kernel cpu_kernel() const {
        uint32_t k = 0;
        detail::check(lungseg_model_get_cpu_kernel(get(), &k), "lungseg_model_get_cpu_kernel");
        return static_cast<lungseg_cpu_kernel>(k);
    }
    // The probability at or above which the model calls a voxel foreground.
    float mask_threshold() const {
        float t = 0.0f;
        detail::check(lungseg_model_get_mask_threshold(get(), &t),
                      "lungseg_model_get_mask_threshold");
        return t;
    }
    // How many mirrored orientations the MC samples cycle through (1, 2, 4 or 8).
    uint32_t test_time_flips() const {
        uint32_t f = 0;
        detail::check(lungseg_model_get_test_time_flips(get(), &f),
                      "lungseg_model_get_test_time_flips");
        return f;
    }
    // The final mask drops 26-connected components below this volume (mm3) ...
    double min_component_mm3() const {
        double v = 0.0;
        detail::check(lungseg_model_get_min_component_mm3(get(), &v),
                      "lungseg_model_get_min_component_mm3");
        return v;
    }
    // ... unless one of their voxels is closer than this (mm) to the patch centre.
    double min_component_spare_radius_mm() const {
        double r = 0.0;
        detail::check(lungseg_model_get_min_component_spare_radius_mm(get(), &r),
                      "lungseg_model_get_min_component_spare_radius_mm");
        return r;
    }
    // The lesion at the requested point is cut at this lower threshold ...
    float point_mask_threshold() const {
        float t = 0.0f;
        detail::check(lungseg_model_get_point_mask_threshold(get(), &t),
                      "lungseg_model_get_point_mask_threshold");
        return t;
    }
    // ... when its component comes closer than this (mm) to the patch centre (0: no rule).
    double point_radius_mm() const {
        double r = 0.0;
        detail::check(lungseg_model_get_point_radius_mm(get(), &r),
                      "lungseg_model_get_point_radius_mm");
        return r;
    }
    // The coarsest voxel spacing (mm, any axis) of the scans the model is meant for (0: any).
    double max_scan_spacing_mm() const {
        double v = 0.0;
        detail::check(lungseg_model_get_max_scan_spacing_mm(get(), &v),
                      "lungseg_model_get_max_scan_spacing_mm");
        return v;
    }
    // Whether `volume` is within that (its spacing, and its slice thickness where stated): if
    // not, every patch of it comes back needing review.
    bool admits(const Volume &volume) const {
        bool ok = false;
        detail::check(lungseg_model_admits_volume(get(), volume.get(), &ok),
                      "lungseg_model_admits_volume");
        return ok;
    }
    // The final mask of a mean map (0/1 per voxel), the one summary.foreground_voxels counts.
    std::vector<uint8_t> final_mask(const std::vector<float> &mean) const {
        std::vector<uint8_t> mask(mean.size());
        detail::check(
            lungseg_final_mask(get(), mean.data(), mean.size(), mask.data(), nullptr),
            "lungseg_final_mask");
        return mask;
    }
    // Whether the model file carries a probability map (calibrated_probability maps the mean).
    bool has_probability_map() const {
        uint8_t has = 0;
        detail::check(lungseg_model_has_probability_map(get(), &has),
                      "lungseg_model_has_probability_map");
        return has != 0;
    }
    // Calibrated probabilities of a mean map (the mean itself without a probability map).
    std::vector<float> calibrated_probability(const std::vector<float> &mean) const {
        std::vector<float> out(mean.size());
        detail::check(
            lungseg_calibrated_probability(get(), mean.data(), mean.size(), out.data()),
            "lungseg_calibrated_probability");
        return out;
    }
    // Deterministic prediction (dropout off) of one HU patch.
    void predict(const float *patch_hu, size_t len, float *prob, size_t prob_len) const {
        detail::check(lungseg_predict(get(), patch_hu, len, prob, prob_len), "lungseg_predict");
    }
    // MC-dropout prediction of one HU patch; `opts` null = 20 samples, seed 0.
    lungseg_patch_summary predict_uncertainty(const float *patch_hu, size_t len,
                                              const UncertaintyMaps &maps,
                                              const lungseg_mc_options *opts = nullptr) const {
        lungseg_uncertainty out = to_c(maps);
        detail::check(lungseg_predict_uncertainty(get(), patch_hu, len, opts, &out),
                      "lungseg_predict_uncertainty");
        return out.summary;
    }
    // As predict_uncertainty, on the model's patch around a world point of `volume`.
    lungseg_patch_summary predict_uncertainty_at(const Volume &volume, const Point3 &center,
                                                 const UncertaintyMaps &maps,
                                                 const lungseg_mc_options *opts = nullptr) const {
        lungseg_uncertainty out = to_c(maps);
        detail::check(
            lungseg_predict_uncertainty_at(get(), volume.get(), center.data(), opts, &out),
            "lungseg_predict_uncertainty_at");
        return out.summary;
    }

    // What predict_final_mask_at returns: the summary (its mask size is the mask's), the final
    // mask (0/1 on the model's patch grid) and how it was made (a lungseg_mask_source).
    struct PointMask {
        lungseg_patch_summary summary;
        std::vector<uint8_t> mask;
        uint32_t source;
    };
    // As predict_uncertainty_at, also returning the final mask the call writes
    // (lungseg_mc_options V5): the model's mask, joined with its second look where the model
    // has one and the scan is thin enough. `opts` is copied; its mask fields are set here.
    PointMask predict_final_mask_at(const Volume &volume, const Point3 &center,
                                    const UncertaintyMaps &maps,
                                    lungseg_mc_options opts = options<lungseg_mc_options>()) const {
        const lungseg_model_info i = info();
        PointMask r{};
        r.mask.resize(size_t(i.patch_size[0]) * i.patch_size[1] * i.patch_size[2]);
        opts.final_mask = r.mask.data();
        opts.final_mask_len = r.mask.size();
        opts.mask_source = &r.source;
        lungseg_uncertainty out = to_c(maps);
        detail::check(
            lungseg_predict_uncertainty_at(get(), volume.get(), center.data(), &opts, &out),
            "lungseg_predict_uncertainty_at");
        r.summary = out.summary;
        return r;
    }

    // MC dropout at many world points of `volume` in one call (summaries only; for maps or
    // the partial results of a cancelled batch, call lungseg_predict_uncertainty_batch).
    // `opts->run` may carry a cancel flag, progress and log callbacks (lungseg_run_options).
    std::vector<lungseg_patch_summary>
    predict_uncertainty_batch(const Volume &volume, const std::vector<Point3> &centers,
                              const lungseg_mc_options *opts = nullptr) const {
        const std::vector<lungseg_uncertainty> out = batch(volume, centers, opts);
        std::vector<lungseg_patch_summary> summaries;
        summaries.reserve(out.size());
        for (const lungseg_uncertainty &u : out) summaries.push_back(u.summary);
        return summaries;
    }

    // As predict_final_mask_at at many world points of `volume` in one call (summaries, final
    // masks and their sources; lungseg_mc_options V5 on the batch). `opts` is copied; its
    // mask fields are set here.
    std::vector<PointMask>
    predict_final_masks_batch(const Volume &volume, const std::vector<Point3> &centers,
                              lungseg_mc_options opts = options<lungseg_mc_options>()) const {
        const lungseg_model_info i = info();
        const size_t voxels = size_t(i.patch_size[0]) * i.patch_size[1] * i.patch_size[2];
        std::vector<uint8_t> masks(voxels * centers.size());
        std::vector<uint32_t> sources(centers.size());
        opts.final_mask = masks.empty() ? nullptr : masks.data();
        opts.final_mask_len = masks.size();
        opts.mask_source = sources.empty() ? nullptr : sources.data();
        const std::vector<lungseg_uncertainty> out = batch(volume, centers, &opts);
        std::vector<PointMask> r(centers.size());
        for (size_t k = 0; k < centers.size(); k++) {
            r[k].summary = out[k].summary;
            r[k].mask.assign(masks.begin() + k * voxels, masks.begin() + (k + 1) * voxels);
            r[k].source = sources[k];
        }
        return r;
    }

#ifdef LUNGSEG_HPP_SPAN
    void predict(std::span<const float> patch_hu, std::span<float> prob) const {
        predict(patch_hu.data(), patch_hu.size(), prob.data(), prob.size());
    }
    lungseg_patch_summary predict_uncertainty(std::span<const float> patch_hu,
                                              const UncertaintyMaps &maps,
                                              const lungseg_mc_options *opts = nullptr) const {
        return predict_uncertainty(patch_hu.data(), patch_hu.size(), maps, opts);
    }
#endif

private:
    // lungseg_predict_uncertainty_batch at `centers`, one result per point.
    std::vector<lungseg_uncertainty> batch(const Volume &volume,
                                           const std::vector<Point3> &centers,
                                           const lungseg_mc_options *opts) const {
        std::vector<lungseg_uncertainty> out(centers.size());
        size_t done = 0;
        static_assert(sizeof(Point3) == 3 * sizeof(double), "Point3 is three packed doubles");
        detail::check(lungseg_predict_uncertainty_batch(get(), volume.get(),
                                                        centers.empty() ? nullptr
                                                                        : centers[0].data(),
                                                        centers.size(), opts, out.data(), &done),
                      "lungseg_predict_uncertainty_batch");
        return out;
    }
    static Model open_raw(const char *path, const lungseg_model_options *opts) {
        lungseg_model *raw = nullptr;
        detail::check(lungseg_model_open(path, opts, &raw), "lungseg_model_open");
        return Model(raw);
    }
    static lungseg_uncertainty to_c(const UncertaintyMaps &maps) noexcept {
        lungseg_uncertainty out{};
        out.mean = maps.mean;
        out.variance = maps.variance;
        out.entropy = maps.entropy;
        out.mutual_info = maps.mutual_info;
        out.len = maps.len;
        return out;
    }
};

// Patches merged onto one scan's grid. Adding is the only mutation; reading is const.
class ScanMap : public detail::Handle<lungseg_scan_map, lungseg_scan_map_free> {
public:
    using Handle::Handle;

    // A map on `volume`'s grid (the geometry is copied: `volume` may go afterwards).
    ScanMap(const Volume &volume, lungseg_scan_map_kind kind) {
        lungseg_scan_map *raw = nullptr;
        detail::check(lungseg_scan_map_new(volume.get(), static_cast<uint32_t>(kind), &raw),
                      "lungseg_scan_map_new");
        reset(raw);
    }

    // `values` on the grid extract_patch cuts around `center` with `spec` (null = default).
    void add_patch(const lungseg_patch_spec *spec, const Point3 &center, const float *values,
                   size_t len, float weight = 1.0f) {
        detail::check(lungseg_scan_map_add_patch(get(), spec, center.data(), values, len, weight),
                      "lungseg_scan_map_add_patch");
    }
    // The merged map: `dst_len` = the scan's voxel count.
    void read(float *dst, size_t dst_len) const {
        detail::check(lungseg_scan_map_read(get(), dst, dst_len), "lungseg_scan_map_read");
    }

#ifdef LUNGSEG_HPP_SPAN
    void add_patch(const lungseg_patch_spec *spec, const Point3 &center,
                   std::span<const float> values, float weight = 1.0f) {
        add_patch(spec, center, values.data(), values.size(), weight);
    }
    void read(std::span<float> dst) const { read(dst.data(), dst.size()); }
#endif
};

// Maps HU to the model's input range; `dst` may be `hu` (in place).
inline void normalize_hu(const float *hu, size_t len, float window_lo, float window_hi,
                         float *dst) {
    detail::check(lungseg_normalize_hu(hu, len, window_lo, window_hi, dst),
                  "lungseg_normalize_hu");
}

// Rasterises a nodule ball on a patch grid; returns the voxels set.
inline uint64_t sphere_mask(const lungseg_patch_spec *spec, const Point3 &patch_center,
                            const Point3 &nodule, double diameter_mm, uint8_t *dst,
                            size_t dst_len) {
    uint64_t set = 0;
    detail::check(lungseg_sphere_mask(spec, patch_center.data(), nodule.data(), diameter_mm, dst,
                                      dst_len, &set),
                  "lungseg_sphere_mask");
    return set;
}

// Writes a float map on a patch grid as MetaImage placed on the scan.
inline void write_patch_map(const lungseg_patch_spec *spec, const Point3 &patch_center,
                            const float *data, size_t len, const char *path, uint32_t flags = 0) {
    detail::check(lungseg_write_patch_map(spec, patch_center.data(), data, len, path, flags),
                  "lungseg_write_patch_map");
}

// Writes a 0/1 mask on a patch grid as MetaImage MET_UCHAR placed on the scan.
inline void write_patch_mask(const lungseg_patch_spec *spec, const Point3 &patch_center,
                             const uint8_t *data, size_t len, const char *path,
                             uint32_t flags = 0) {
    detail::check(lungseg_write_patch_mask(spec, patch_center.data(), data, len, path, flags),
                  "lungseg_write_patch_mask");
}

#ifdef LUNGSEG_HPP_SPAN
inline void normalize_hu(std::span<const float> hu, float window_lo, float window_hi,
                         std::span<float> dst) {
    // The C call takes one length for both buffers: a shorter dst is refused here.
    if (dst.size() < hu.size())
        throw Error(LUNGSEG_INVALID_ARGUMENT, "lungseg::normalize_hu",
                    "dst holds fewer floats than hu");
    normalize_hu(hu.data(), hu.size(), window_lo, window_hi, dst.data());
}
inline uint64_t sphere_mask(const lungseg_patch_spec *spec, const Point3 &patch_center,
                            const Point3 &nodule, double diameter_mm, std::span<uint8_t> dst) {
    return sphere_mask(spec, patch_center, nodule, diameter_mm, dst.data(), dst.size());
}
inline void write_patch_map(const lungseg_patch_spec *spec, const Point3 &patch_center,
                            std::span<const float> data, const char *path, uint32_t flags = 0) {
    write_patch_map(spec, patch_center, data.data(), data.size(), path, flags);
}
inline void write_patch_mask(const lungseg_patch_spec *spec, const Point3 &patch_center,
                             std::span<const uint8_t> data, const char *path,
                             uint32_t flags = 0) {
    write_patch_mask(spec, patch_center, data.data(), data.size(), path, flags);
}
#endif

}  // namespace lungseg

#endif  // LUNGSEG_HPP
