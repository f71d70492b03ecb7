# Sourced by the launch scripts: run from the repository root (so paths in the arguments are
# relative to it), and DRY_RUN=1 prints the command instead of running it.

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Print the command, shell-quoted, exactly as it would run (DRY_RUN=1), or replace this shell with it.
run() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    printf '%q' "$1"
    shift
    printf ' %q' "$@"
    printf '\n'
  else
    exec "$@"
  fi
}

# The GPUs this process may use: CUDA_VISIBLE_DEVICES when set, else what nvidia-smi lists, else 1.
visible_gpus() {
  local count
  local -a ids
  if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
    IFS=, read -ra ids <<< "$CUDA_VISIBLE_DEVICES"
    echo "${#ids[@]}"
  elif command -v nvidia-smi > /dev/null && count=$(nvidia-smi --list-gpus 2> /dev/null | grep -c '^GPU') \
      && ((count > 0)); then
    echo "$count"
  else
    echo 1
  fi
}
