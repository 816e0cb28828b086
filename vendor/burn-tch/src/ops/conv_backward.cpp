// lungseg patch (see LUNGSEG-PATCH.md): libtorch's own convolution backward for Burn's
// conv*_x_backward / conv*_weight_backward. Burn's generic weight gradient is a convolution of
// the swapped input with the swapped output gradient (a kernel the size of the image), which
// libtorch runs far slower than its backward-weights primitive (oneDNN on the CPU).
#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <exception>

#include "native_error.h"

using lungseg_tch::copy_message;

extern "C" {

// One gradient of a (transposed) convolution, as a new heap `at::Tensor*` that the caller owns
// (tch frees it), or NULL with the message in `err`. `which`: 0 = input, 1 = weight.
// `grad_output`, `input`, `weight` are tch's `at::Tensor*`; the int arrays hold `dims` values.
void *lungseg_tch_conv_backward(void *grad_output, void *input, void *weight,
                                const int64_t *stride, const int64_t *padding,
                                const int64_t *dilation, const int64_t *output_padding,
                                int64_t dims, int transposed, int64_t groups, int which,
                                char *err, size_t err_len) {
    try {
        const at::Tensor &g = *static_cast<at::Tensor *>(grad_output);
        const at::Tensor &x = *static_cast<at::Tensor *>(input);
        const at::Tensor &w = *static_cast<at::Tensor *>(weight);
        std::array<bool, 3> mask = {which == 0, which == 1, false};
        auto r = at::convolution_backward(
            g, x, w, c10::nullopt, at::IntArrayRef(stride, dims), at::IntArrayRef(padding, dims),
            at::IntArrayRef(dilation, dims), transposed != 0,
            at::IntArrayRef(output_padding, dims), groups, mask);
        return new at::Tensor(which == 0 ? std::get<0>(r) : std::get<1>(r));
    } catch (const std::exception &e) {
        copy_message(e.what(), err, err_len);
        return nullptr;
    }
}
}
