// lungseg patch (see LUNGSEG-PATCH.md): libtorch's fused batch-norm backward for Burn's
// batch_norm_train_backward. Burn's generic backward records ~15 full-tensor passes (swaps,
// reshapes, sums, means, products); libtorch's native kernel reads the input and output
// gradient twice. tch 0.22 binds the forward (`native_batch_norm`) but not this.
#include <ATen/ATen.h>

#include <array>
#include <exception>

#include "native_error.h"

using lungseg_tch::copy_message;

extern "C" {

// Gradients of a training-mode batch norm of `input` (statistics of the batch) with `weight`,
// given the output gradient and the batch's `save_mean` and `save_invstd` (1/sqrt(var + eps)).
// Writes three new heap `at::Tensor*` (input, weight, bias gradients) to `out` and returns 1,
// or returns 0 with the message in `err`. All pointers in are tch's `at::Tensor*`.
int lungseg_tch_batch_norm_backward(void *grad_output, void *input, void *weight,
                                    void *save_mean, void *save_invstd, double eps, void **out,
                                    char *err, size_t err_len) {
    try {
        const at::Tensor &g = *static_cast<at::Tensor *>(grad_output);
        const at::Tensor &x = *static_cast<at::Tensor *>(input);
        const at::Tensor &w = *static_cast<at::Tensor *>(weight);
        const at::Tensor &mean = *static_cast<at::Tensor *>(save_mean);
        const at::Tensor &invstd = *static_cast<at::Tensor *>(save_invstd);
        std::array<bool, 3> mask = {true, true, true};
        auto r = at::native_batch_norm_backward(g, x, w, c10::nullopt, c10::nullopt, mean, invstd,
                                                /*train=*/true, eps, mask);
        out[0] = new at::Tensor(std::get<0>(r));
        out[1] = new at::Tensor(std::get<1>(r));
        out[2] = new at::Tensor(std::get<2>(r));
        return 1;
    } catch (const std::exception &e) {
        copy_message(e.what(), err, err_len);
        return 0;
    }
}
}
