#!/usr/bin/env bash
# Source this: installs (once) the PyTorch that lungseg-train's `tch` feature links against into
# a virtual environment and exports what the build needs (torch-sys reads LIBTORCH_USE_PYTORCH
# and asks the venv's python where libtorch is). The version is the one tch 0.22 (burn-tch
# 0.22.1) checks for; another one fails the build.
# TORCH_VENV (default ~/.cache/lungseg/venv-torch) picks the folder. The PyPI wheel is the CUDA
# build (~3 GB with its nvidia-* packages); it runs on CPUs too.
TORCH_VERSION=2.9.0
TORCH_VENV=${TORCH_VENV:-$HOME/.cache/lungseg/venv-torch}
if ! "$TORCH_VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  python3 -m venv "$TORCH_VENV"
  "$TORCH_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "torch==$TORCH_VERSION" numpy safetensors
fi
export VIRTUAL_ENV=$TORCH_VENV
export PATH=$TORCH_VENV/bin:$PATH
export LIBTORCH_USE_PYTORCH=1
