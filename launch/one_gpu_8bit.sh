#!/usr/bin/env bash
# Train on one GPU with the base model loaded in 8 bits (bitsandbytes); arguments go to emoscale/train.py.
#
#   launch/one_gpu_8bit.sh --config run.yaml
#   DRY_RUN=1 launch/one_gpu_8bit.sh ...     # print the command instead of running it
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Appended, so it wins over the arguments and `--config run.yaml key=value ...` still parses
# (emoscale/train.py's argparse rejects a key=value that follows an option after other key=values).
run accelerate launch --config_file accelerate_configs/single_gpu.yaml emoscale/train.py "$@" \
  model.load_in_8bit=true
