#!/usr/bin/env bash
# Train on one GPU with bf16 (accelerate_configs/single_gpu.yaml); arguments go to emoscale/train.py.
#
#   launch/one_gpu.sh --config run.yaml train.lr=3e-4
#   DRY_RUN=1 launch/one_gpu.sh ...     # print the command instead of running it
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

run accelerate launch --config_file accelerate_configs/single_gpu.yaml emoscale/train.py "$@"
