// lungseg patch (see LUNGSEG-PATCH.md): how the native-op shims hand a C++ exception's message
// to Rust.
#pragma once
#include <cstddef>
#include <cstring>

namespace lungseg_tch {
inline void copy_message(const char *what, char *err, size_t err_len) {
    if (err_len == 0) return;
    std::strncpy(err, what, err_len - 1);
    err[err_len - 1] = '\0';
}
}  // namespace lungseg_tch
