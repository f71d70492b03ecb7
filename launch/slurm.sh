#!/usr/bin/env bash
# Two nodes x 8 GPUs, DeepSpeed ZeRO-3 (accelerate_configs/two_nodes_8gpu_zero3.yaml); arguments go to
# emoscale/train.py. srun starts one `accelerate launch` per node; each starts one process per GPU.
#
#   sbatch launch/slurm.sh --config run.yaml
#   sbatch --nodes=4 launch/slurm.sh ...          # any node count; GPUS_PER_NODE=4 for smaller nodes
#   DRY_RUN=1 sbatch launch/slurm.sh ...          # each node prints its accelerate command, trains nothing
#
# Without GPUs (two CPU nodes, one process each, DeepSpeed ZeRO-3 or DDP over gloo), as the tests run it:
#
#   DS_ACCELERATOR=cpu ACCELERATE_CONFIG=accelerate_configs/cpu_two_nodes_zero3.yaml GPUS_PER_NODE=1 \
#       MIXED_PRECISION=no sbatch --gpus-per-node=0 --cpus-per-task=1 launch/slurm.sh --config run.yaml
#
#SBATCH --job-name=emoscale
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
set -euo pipefail

# sbatch runs a copy of this file from its spool folder, so its own path does not lead to the
# repository; fall back to EMOSCALE_ROOT or the folder sbatch was called from.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ -f "$root/emoscale/train.py" ]] || root="${EMOSCALE_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}"
if [[ ! -f "$root/emoscale/train.py" ]]; then
  echo "error: emoscale repository not found; submit from its root or set EMOSCALE_ROOT" >&2
  exit 2
fi
cd "$root"

: "${SLURM_JOB_NODELIST:?not inside a SLURM allocation: submit with sbatch}"
num_nodes="${SLURM_NNODES:?not inside a SLURM allocation: submit with sbatch}"
gpus_per_node="${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-8}}"
hosts="$(scontrol show hostnames "$SLURM_JOB_NODELIST")"
main_host="${hosts%%$'\n'*}"  # the first node runs rank 0 and the rendezvous
# Its address: NodeAddr where slurm.conf sets one (several nodes on one machine: 127.0.0.1), else
# the node name itself.
main_addr="$(scontrol show node "$main_host" -o 2> /dev/null | grep -o 'NodeAddr=[^ ]*' | cut -d= -f2)" || true
main_addr="${main_addr:-$main_host}"
main_port="${MAIN_PORT:-29500}"

launch_args=(
  --config_file "${ACCELERATE_CONFIG:-accelerate_configs/two_nodes_8gpu_zero3.yaml}"
  --num_machines "$num_nodes"
  --num_processes "$((num_nodes * gpus_per_node))"
  --main_process_ip "$main_addr"
  --main_process_port "$main_port"
  --mixed_precision "${MIXED_PRECISION:-bf16}"  # here, not in the YAML: see multi_gpu_zero3.sh
  emoscale/train.py "$@"
)
# Single quotes: $SLURM_NODEID must be read on each node (0, 1, ...). Expanded here, in the batch
# script, it is the first node's 0, and every node would claim machine rank 0.
node_command='cmd=(accelerate launch --machine_rank "$SLURM_NODEID" "$@"); '
node_command+='if [[ "${DRY_RUN:-0}" == 1 ]]; then printf -v line " %q" "${cmd[@]}"; echo "node $SLURM_NODEID:$line"; '
node_command+='else exec "${cmd[@]}"; fi'

if [[ "${DRY_RUN:-0}" == 1 ]]; then
  printf '%q' srun
  printf ' %q' --nodes="$num_nodes" --ntasks-per-node=1 bash -c "$node_command" emoscale-node "${launch_args[@]}"
  printf '\n'
fi
exec srun --nodes="$num_nodes" --ntasks-per-node=1 bash -c "$node_command" emoscale-node "${launch_args[@]}"
