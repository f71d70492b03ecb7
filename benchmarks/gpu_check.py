"""One GPU check in one command: emoscale's product path on CUDA, within a short GPU loan (issue 18).

    python benchmarks/gpu_check.py --out runs/gpu_check --wheels .whl --time-limit 540   # one GPU
    python benchmarks/gpu_check.py --out runs/gpu_check_dry --dry-run                    # CPU, tiny

Parts, each its own process with its own timeout (benchmarks/gpu_check_parts.py):
  install   `pip install -e .` offline (--wheels: what the machine lacks), timed; refuses to
            replace the machine's torch
  prepare   the demo corpus; random bf16 models: Llama-3.2-1B's shape, ChatGLM2-6B's at 4 layers
  train:*   `accelerate launch emoscale/train.py`, 90 steps: bf16 / 8-bit / 4-bit, LoRA /
            P-Tuning v2, DeepSpeed ZeRO-2 on one GPU; each must finish, learn, and its adapter,
            reloaded by `emoscale eval`, must predict the same labels
  scoring   one-pass label scoring vs the KV-cache route vs prompt + answer alone (SDPA, and
            flash-attention when installed; fp32 and bf16): the largest difference
  memory    benchmarks/gpu_llm_memory.py, ChatGLM2-6B's shape, LoRA r=8 and P-Tuning v2, batch
            16 x 128, bf16 / 8-bit / 4-bit: peak memory beside `emoscale estimate`'s prediction

--out gets results.json and results.md, rewritten after every part, so a run stopped at
--time-limit (or by SIGTERM) keeps what it measured; parts not started by then are "skipped".
Each part's output goes to --logs (default: <out>/logs); a failed part's last lines are also in
results.json. Exit code 0 when every part passed, else 1. This file uses the standard library
only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARTS_SCRIPT = REPO / "benchmarks" / "gpu_check_parts.py"
TRAIN_RUNS = (
    "llama-bf16-lora",
    "llama-8bit-lora",
    "llama-4bit-lora",
    "llama-bf16-ptuning_v2",
    "glm-bf16-lora",
    "glm-4bit-ptuning_v2",
    "llama-bf16-lora-zero2",
)  # fmt: skip  (gpu_check_parts.TRAIN_RUNS holds what each one is)
# Seconds each part should take on one H200 (estimates: see the README's table), and on the CPU
# dry run. A part's timeout is TIMEOUT_FACTOR x its budget, cut to the time left.
GPU_BUDGET = {"install": 60, "prepare": 45, "scoring": 60, "memory": 240}
GPU_BUDGET |= {f"train:{name}": 60 for name in TRAIN_RUNS} | {"train:llama-8bit-lora": 90}
CPU_BUDGET = {"install": 30, "prepare": 40, "scoring": 60, "memory": 80}
CPU_BUDGET |= {f"train:{name}": 120 for name in TRAIN_RUNS}
TIMEOUT_FACTOR = 2.5
LOG_TAIL_LINES = 40


@dataclass
class Part:
    name: str
    needs: tuple[str, ...] = ()
    alone: bool = False  # runs with no other part beside it
    status: str = "pending"  # running, then passed | failed | timeout | stopped | skipped
    seconds: float | None = None
    cpu_seconds: float | None = None  # user + system time of the part and all it waited for
    result: dict = field(default_factory=dict)
    error: str | None = None
    log_tail: list[str] = field(default_factory=list)

    def command(self, args, result_file: Path) -> list[str]:
        kind, _, name = self.name.partition(":")
        command = [sys.executable, str(PARTS_SCRIPT), kind, "--work", args.work]
        command += ["--result", str(result_file)] + ["--dry-run"] * args.dry_run
        command += ["--name", name] if name else []
        command += ["--wheels", args.wheels] if kind == "install" and args.wheels else []
        return command

    def report(self, budget: int) -> dict:
        return {"name": self.name, "status": self.status, "seconds": self.seconds,
                "cpu_seconds": self.cpu_seconds, "budget_s": budget, "result": self.result, "error": self.error,
                "log_tail": self.log_tail}  # fmt: skip


def all_parts() -> list[Part]:
    """In the order they start; the longest of those that may overlap (memory) first."""
    parts = [Part("install", alone=True), Part("prepare", ("install",), alone=True)]
    parts.append(Part("memory", ("install",)))
    parts += [Part(f"train:{name}", ("prepare",)) for name in TRAIN_RUNS]
    parts.append(Part("scoring", ("prepare",)))
    return parts


def select(parts: list[Part], only: str | None) -> list[Part]:
    """--only: comma-separated part names, or a kind ending in ':' (`train:`); what they need is
    kept too."""
    if not only:
        return parts
    wanted = [item.strip() for item in only.split(",") if item.strip()]

    def chosen(part: Part, item: str) -> bool:
        return part.name == item or (item.endswith(":") and part.name.startswith(item))

    unknown = [item for item in wanted if not any(chosen(part, item) for part in parts)]
    if unknown:
        names = ", ".join(part.name for part in parts)
        raise ValueError(f"--only: no part named {unknown[0]!r}; parts: {names}")
    keep = {part.name for part in parts if any(chosen(part, item) for item in wanted)}
    for part in reversed(parts):
        if part.name in keep:
            keep.update(part.needs)
    return [part for part in parts if part.name in keep]


# --- results -------------------------------------------------------------------------------------


def gpu_name() -> str | None:
    try:
        found = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=20)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip() or None


def write_results(out: Path, header: dict, parts: list[Part], budgets: dict) -> dict:
    summary = {**header, "elapsed_s": round(time.time() - header["started_at"], 1)}
    summary["parts"] = [part.report(budgets[part.name]) for part in parts]
    summary["passed"] = all(part.status == "passed" for part in parts)
    temporary = out / "results.json.tmp"  # replaced in one step: never a half-written file
    temporary.write_text(json.dumps(summary, indent=2))
    temporary.replace(out / "results.json")
    temporary = out / "results.md.tmp"
    temporary.write_text(markdown(summary))
    temporary.replace(out / "results.md")
    return summary


def number(value, digits: int = 3) -> str:
    return (
        "-" if value is None else f"{value:.{digits}g}" if isinstance(value, float) else str(value)
    )


def markdown(summary: dict) -> str:
    parts = {part["name"]: part for part in summary["parts"]}
    lines = [
        f"# GPU check: {'passed' if summary['passed'] else 'NOT passed'}",
        "",
        f"{summary['device']}; {'dry run (tiny shapes, CPU); ' * summary['dry_run']}"
        f"{summary['elapsed_s']:.0f} s of a {summary['time_limit_s']} s limit, {summary['jobs']} parts at a time.",
        "",
        "| part | status | seconds | CPU s | budget (s) | what |",
        "|---|---|---|---|---|---|",
    ]
    for part in parts.values():
        lines.append(f"| {part['name']} | {part['status']} | {number(part['seconds'])} | "
                     f"{number(part['cpu_seconds'])} | {part['budget_s']} | {headline(part)} |")  # fmt: skip
    trains = [p for p in parts.values() if p["name"].startswith("train:") and p["result"]]
    if trains:
        lines += ["", "| run | steps | loss first -> last | test acc | reload same labels | "
                  "max score gap | train s | reload s |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for part in trains:
            r = part["result"]
            lines.append(
                f"| {part['name'][6:]} | {r['steps']} | {r['first_loss']:.3f} -> {r['last_loss']:.3f} "
                f"| {r['test_accuracy']:.3f} | {r['reload_agreement']:.3f} | {r['reload_max_score_gap']:.2g} "
                f"| {r['train_seconds']} | {r['reload_seconds']} |"
            )
    scoring = parts.get("scoring", {}).get("result", {}).get("rows", [])
    if scoring:
        lines += ["", "| model | attention | dtype | method | one-pass vs cache | one-pass vs alone | "
                  "cache vs alone | same argmax |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in scoring:
            lines.append(
                f"| {r['model']} | {r['attention']} | {r['dtype']} | {r['method']} | "
                f"{number(r.get('one_pass_vs_kv_cache'))} | {number(r.get('one_pass_vs_alone'))} | "
                f"{number(r.get('kv_cache_vs_alone'))} | {r['same_argmax']:.3f} |"
            )
    memory = parts.get("memory", {}).get("result", {}).get("rows", [])
    if memory:
        lines += ["", "| model | precision | method | peak GiB | `emoscale estimate` GiB | "
                  "estimate / peak | tokens/s |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in memory:
            lines.append(
                f"| {r['model']} | {r['precision']} | {r['method']} | {r['peak_gib']:.3g} | "
                f"{r['predicted_gib']:.3g} | {r['predicted_gib'] / r['peak_gib']:.3f} | {r['tokens_per_s']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def headline(part: dict) -> str:
    """The part's result in a few words, for the first table and the printed summary."""
    r, name = part["result"], part["name"]
    if part["status"] not in ("passed", "failed") or not r:
        return part["error"] or ""
    if name == "install":
        seconds = r.get("install_seconds")
        done = f"pip install -e . {seconds} s" if seconds is not None else "pip dry run only"
        return f"{done}; would install {len(r.get('would_install', {}))} packages, replace {r.get('would_replace', '-')}"
    if name == "prepare":
        made = ", ".join(f"{name} {seconds} s" for name, seconds in r["seconds_to_make"].items())
        return f"models {', '.join(r['models'])} ({'made: ' + made if made else 'reused'}); {r['device']}"
    if name.startswith("train:"):
        failed = [check for check, ok in r["checks"].items() if not ok]
        return (f"acc {r['test_accuracy']:.3f}, loss {r['first_loss']:.2f} -> {r['last_loss']:.2f}, "
                f"reload agrees {r['reload_agreement']:.3f}" + (f"; failed: {failed}" if failed else ""))  # fmt: skip
    if name == "scoring":
        return f"largest difference {r['largest']:.3g} over {len(r['rows'])} settings"
    if name == "memory":
        ratios = [row["predicted_gib"] / row["peak_gib"] for row in r["rows"]]
        return (
            f"{len(ratios)} rows; estimate / peak {min(ratios):.3f} .. {max(ratios):.3f}"
            if ratios
            else ""
        )
    return ""


# --- running -------------------------------------------------------------------------------------


class Stop(Exception):
    pass


def tail(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    except OSError:
        return []


def end_process_group(process: subprocess.Popen) -> None:
    """The part and everything it started (accelerate's child, pip): SIGTERM, then SIGKILL."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=10)  # train.py saves a checkpoint on SIGTERM (preemption.py)
    except subprocess.TimeoutExpired:
        pass
    try:  # whatever is left of the group, the part itself included
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def run(args, parts: list[Part]) -> dict:
    out, logs = Path(args.out), Path(args.logs or Path(args.out) / "logs")
    out.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    budgets = CPU_BUDGET if args.dry_run else GPU_BUDGET
    started = time.time()
    deadline = time.monotonic() + args.time_limit
    header = {
        "started_at": started, "time_limit_s": args.time_limit, "dry_run": args.dry_run,
        "jobs": args.jobs, "device": ("CPU" if args.dry_run else gpu_name() or "no GPU found"),
        "host": platform.node(), "python": platform.python_version(), "command": sys.argv,
    }  # fmt: skip

    def on_signal(number, frame):
        raise Stop(f"stopped by signal {number}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    by_name = {part.name: part for part in parts}
    running: dict = {}  # name -> (process, started at, kill at), by time.monotonic()

    def finish(part: Part, status: str, error: str | None = None) -> None:
        process, began, _ = running.pop(part.name)
        part.seconds = round(time.monotonic() - began, 1)
        result_file = Path(args.work) / "results" / f"{part.name.replace(':', '-')}.json"
        if result_file.is_file():
            part.result = json.loads(result_file.read_text())
        part.status = status
        if status == "passed" and not part.result.get("passed", False):
            part.status = "failed"  # the part ran to its end, but a check did not hold
        part.error = error
        if part.status != "passed":
            part.log_tail = tail(logs / f"{part.name.replace(':', '-')}.log")
        print(f"[{time.time() - started:6.0f} s] {part.name}: {part.status} in {part.seconds} s; "
              f"{headline(part.report(0))}", flush=True)  # fmt: skip
        write_results(out, header, parts, budgets)

    try:
        while any(part.status == "pending" for part in parts) or running:
            for name, (process, _, kill_at) in list(running.items()):
                # wait4, not poll: the part's CPU time too (its children's, once it waited for them)
                pid, wait_status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    code = process.returncode = os.waitstatus_to_exitcode(wait_status)
                    by_name[name].cpu_seconds = round(usage.ru_utime + usage.ru_stime, 1)
                    finish(by_name[name], "passed" if code == 0 else "failed",
                           None if code == 0 else f"exit code {code}")  # fmt: skip
                elif time.monotonic() > kill_at:
                    end_process_group(process)
                    over = time.monotonic() >= deadline
                    finish(by_name[name], "stopped" if over else "timeout",
                           "at the time limit" if over else "past its own timeout")  # fmt: skip
            for part in parts:
                if part.status != "pending" or len(running) >= args.jobs:
                    continue
                needed = [by_name[n] for n in part.needs if n in by_name]
                if any(n.status not in ("pending", "running", "passed") for n in needed):
                    part.status, part.error = (
                        "skipped",
                        f"needs {part.needs[0]}, which did not pass",
                    )
                    write_results(out, header, parts, budgets)
                    continue
                if any(n.status != "passed" for n in needed) or (running and part.alone):
                    continue
                if any(by_name[n].alone for n in running):
                    break
                left = deadline - time.monotonic()
                if left < budgets[part.name] / 2:  # too little time to finish: keep the rest clean
                    part.status, part.error = "skipped", f"time limit: {left:.0f} s left"
                    write_results(out, header, parts, budgets)
                    continue
                log_name = part.name.replace(":", "-")
                result_file = Path(args.work) / "results" / f"{log_name}.json"
                result_file.parent.mkdir(parents=True, exist_ok=True)
                result_file.unlink(missing_ok=True)
                with open(logs / f"{log_name}.log", "w") as log:
                    process = subprocess.Popen(
                        part.command(args, result_file), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                        start_new_session=True,  # its own process group: ended as a whole
                    )  # fmt: skip
                timeout = min(budgets[part.name] * TIMEOUT_FACTOR, left)
                part.status = "running"
                running[part.name] = (process, time.monotonic(), time.monotonic() + timeout)
                print(f"[{time.time() - started:6.0f} s] {part.name}: started "
                      f"(timeout {timeout:.0f} s)", flush=True)  # fmt: skip
            time.sleep(0.2)
    except Stop as stop:
        for number in (signal.SIGTERM, signal.SIGINT):  # a second signal must not cut the cleanup
            signal.signal(number, signal.SIG_IGN)
        for name, (process, _, _) in list(running.items()):
            end_process_group(process)
            finish(by_name[name], "stopped", str(stop))
        for part in parts:
            if part.status == "pending":
                part.status, part.error = "skipped", str(stop)
    return write_results(out, header, parts, budgets)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="results.json and results.md go here")
    parser.add_argument("--logs", help="each part's output (default: <out>/logs)")
    parser.add_argument(
        "--work", default="/tmp/emoscale-gpu-check", help="models, data and runs (reused)"
    )
    parser.add_argument(
        "--wheels", help="install: a folder of wheels for the packages the GPU machine lacks"
    )
    parser.add_argument(
        "--time-limit", type=float, default=480, help="seconds; then stop, keeping results"
    )
    parser.add_argument("--jobs", type=int, help="parts at a time (default: 4 on a GPU, 1 dry)")
    parser.add_argument("--only", help="comma-separated parts, or train: for all training runs")
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on CPU (the CI test)")
    args = parser.parse_args(argv)
    args.jobs = args.jobs or (1 if args.dry_run else 4)
    args.work = str(Path(args.work).resolve())
    if args.wheels:
        args.wheels = str(Path(args.wheels).resolve())
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:  # bad input: one line, exit code 2, before anything is written
        parts = select(all_parts(), args.only)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    summary = run(args, parts)
    print(markdown(summary))
    print(f"written: {Path(args.out) / 'results.json'} and results.md beside it")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
