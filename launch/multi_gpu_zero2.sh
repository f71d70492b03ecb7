#!/usr/bin/env bash
# Train on all GPUs of this machine with DeepSpeed ZeRO-2 (accelerate_configs/zero2.yaml);
# arguments go to emoscale/train.py.
#
#   launch/multi_gpu_zero2.sh --config run.yaml
#   NUM_GPUS=4 launch/multi_gpu_zero2.sh ...   # default: the visible GPUs (CUDA_VISIBLE_DEVICES, nvidia-smi), else 1
#   DRY_RUN=1 launch/multi_gpu_zero2.sh ...    # print the command instead of running it
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NUM_GPUS="${NUM_GPUS:-$(visible_gpus)}"
# bf16 as in single_gpu.yaml. On the command line because Accelerate refuses mixed_precision in an
# accelerate config that names a DeepSpeed config file; it fills bf16.enabled: "auto" in the JSON.
run accelerate launch --config_file accelerate_configs/zero2.yaml --num_processes "$NUM_GPUS" \
  --mixed_precision bf16 emoscale/train.py "$@"
