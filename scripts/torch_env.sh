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
# torch-sys runs `python` when VIRTUAL_ENV is set: put only that name first on PATH, so that
# `python3` stays the system one the tests use for SimpleITK.
mkdir -p "$TORCH_VENV/shim"
ln -sf "$TORCH_VENV/bin/python" "$TORCH_VENV/shim/python"
export VIRTUAL_ENV=$TORCH_VENV
export PATH=$TORCH_VENV/shim:$PATH
export LIBTORCH_USE_PYTORCH=1
# Binaries of other crates that link lungseg-train (the workspace's cross-crate tests) have no
# rpath to libtorch; lungseg-train's own get one from its build script.
TORCH_LIB=$("$TORCH_VENV/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH=$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
