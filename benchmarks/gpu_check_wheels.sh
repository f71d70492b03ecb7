#!/usr/bin/env bash
# Wheels for what the lent GPU machine lacks (it reaches no registry), into .whl/ at the repository
# root, for `python benchmarks/gpu_check.py --wheels .whl` there. Run here, where pip reaches PyPI:
#
#   bash benchmarks/gpu_check_wheels.sh          # then carry .whl in the device call
#
# The machine (Python 3.12, x86-64) has torch 2.11.0+cu130, transformers, peft, accelerate and most
# of emoscale's other requirements; it lacks these (KINDS.md's package list, 2026-11-17). Versions
# are the ones this project's venv runs. deepspeed ships only a source archive: built here into a
# pure-Python wheel (its CUDA ops are compiled on first use, not at install).
set -euo pipefail
cd "$(dirname "$0")/.."
exclude="$(git rev-parse --git-path info/exclude)"  # .git/info/exclude, also from a worktree
grep -qxF '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
mkdir -p .whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
    manylinux2014_x86_64 manylinux1_x86_64; do platforms+=(--platform "$p"); done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d .whl \
    bitsandbytes==0.50.2 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
    typing-inspection==0.4.5 typing-extensions==4.16.0 hjson==3.1.0 soundfile==0.14.0 \
    cffi==2.1.1 pycparser==3.12 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 evaluate==0.4.6
ls .whl/deepspeed-0.19.8-*.whl >/dev/null 2>&1 || python3 -m pip wheel --quiet --no-deps -w .whl deepspeed==0.19.8
du -sh .whl && ls .whl
