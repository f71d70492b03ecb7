"""Run a study's points (cv folds, sweep points) side by side: local processes or a SLURM job array.

    emoscale cv --config run.yaml --launcher local --parallel 2 --devices 0,1,2,3   # 2 GPUs a point
    emoscale sweep ... --grid seed=1,2,3 --launcher slurm --max-running 2 -- --partition=gpu --gres=gpu:1
    emoscale cv --status runs/my-cv         # each point's state; writes cv.json/cv.md once all are done

Each point runs in its own process, `python -m emoscale.studies.launchers point PARENT NAME`, which
trains it with `emoscale/train.py` (through `accelerate launch` when it is given several devices),
logs to <parent>/logs/<name>.log and records its state in <parent>/points/<name>.json
(study_record.py). A failed point stops nothing else; starting the study again keeps the finished
points and reruns the failed or missing ones (from their last checkpoint when they have one). The
last point to finish writes the summary, under the parent's lock.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from emoscale.errors import ConfigError, EmoscaleError
from emoscale.studies import study_record

LAUNCHERS = ("local", "slurm")
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding emoscale/
TRAIN_SCRIPT = PACKAGE_ROOT / "emoscale" / "train.py"


def finished(entry: dict) -> bool:
    return (Path(entry["run_dir"]) / "metrics.json").is_file()


def device_groups(devices: str | None, parallel: int) -> list[str | None]:
    """One device set per parallel slot: '0,1,2,3' with 2 slots -> ['0,1', '2,3']. Without
    --devices every slot sees what the machine has (CPU runs, or one GPU set per SLURM task)."""
    if devices is None:
        return [None] * parallel
    ids = [item.strip() for item in devices.split(",")]
    if not all(item.isdigit() for item in ids) or len(set(ids)) != len(ids):
        raise ConfigError(f"--devices {devices!r}: expected distinct GPU numbers, e.g. 0,1,2,3")
    import torch

    available = torch.cuda.device_count()
    if max(int(item) for item in ids) >= available:
        raise ConfigError(
            f"--devices {devices}: this machine has {available} GPU(s)"
            + (f" (0 to {available - 1})" if available else "")
        )
    if len(ids) % parallel:
        raise ConfigError(
            f"--devices {devices}: {len(ids)} GPUs do not split evenly over --parallel {parallel}"
        )
    size = len(ids) // parallel
    return [",".join(ids[slot * size : (slot + 1) * size]) for slot in range(parallel)]


def point_command(parent: Path, name: str, overwrite: bool) -> list[str]:
    command = [sys.executable, "-m", "emoscale.studies.launchers", "point", str(parent.resolve())]
    return [*command, name, *(["--overwrite"] if overwrite else [])]


def child_env(devices: str | None = None) -> dict[str, str]:
    """The point sees only its devices, and imports this emoscale (a checkout need not be installed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    if devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = devices
    return env


# --- local ---------------------------------------------------------------------------------------


def run_local(parent: Path, record: dict, parallel: int, devices: str | None, overwrite: bool):
    """Run every unfinished point, `parallel` at a time; returns the names of the failed ones."""
    slots = device_groups(devices, parallel)
    for folder in ("points", "logs"):
        (parent / folder).mkdir(exist_ok=True)
    todo = [entry["name"] for entry in record["points"] if overwrite or not finished(entry)]
    for entry in record["points"]:
        if entry["name"] not in todo:
            print(f"{entry['name']}: finished earlier, kept ({entry['run_dir']})")
    running: dict[int, tuple[str, subprocess.Popen, float]] = {}
    failed = []
    while todo or running:
        for slot in range(parallel):
            if slot not in running and todo:
                name = todo.pop(0)
                command = [*point_command(parent, name, overwrite)]
                process = subprocess.Popen(command, env=child_env(slots[slot]))
                shown = f" on GPUs {slots[slot]}" if slots[slot] else ""
                print(f"{name}: started{shown}, log {parent / 'logs' / f'{name}.log'}", flush=True)
                running[slot] = (name, process, time.monotonic())
        time.sleep(0.2)
        for slot, (name, process, started) in list(running.items()):
            if process.poll() is None:
                continue
            del running[slot]
            seconds = time.monotonic() - started
            if process.returncode == 0:
                print(f"{name}: done in {seconds:.1f} s", flush=True)
            else:
                failed.append(name)
                line = study_record.last_line(parent / "logs" / f"{name}.log")
                print(f"{name}: failed after {seconds:.1f} s: {line}", flush=True)
    return failed


# --- SLURM ---------------------------------------------------------------------------------------


def submit_slurm(
    parent: Path, record: dict, max_running: int | None, sbatch_options: list[str], overwrite: bool
) -> str | None:
    """Submit one job array over the unfinished points; returns its job id (None: nothing to do)."""
    sbatch = shutil.which("sbatch") or "sbatch"  # checked in LaunchOptions.check
    indices = [i for i, entry in enumerate(record["points"]) if overwrite or not finished(entry)]
    if not indices:
        return None
    parent = parent.resolve()
    script = parent / "slurm" / "points.sh"
    for folder in (script.parent, parent / "points", parent / "logs"):
        folder.mkdir(exist_ok=True)
    runner = " ".join(shlex.quote(part) for part in point_command(parent, "NAME", overwrite))
    runner = runner.replace(" NAME", ' "$name"')
    names = " ".join(shlex.quote(entry["name"]) for entry in record["points"])
    study_record.write_text(
        script,
        "#!/bin/bash\n# One point of the study per array task (emoscale/studies/launchers.py).\n"
        f"cd {shlex.quote(str(Path.cwd()))}\n"
        f"export PYTHONPATH={shlex.quote(str(PACKAGE_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}\n"
        f'names=({names})\nname="${{names[$SLURM_ARRAY_TASK_ID]}}"\nexec {runner}\n',
    )
    spec = ",".join(map(str, indices)) + (f"%{max_running}" if max_running else "")
    command = [sbatch, "--parsable", f"--array={spec}", f"--job-name=emoscale-{record['kind']}"]
    command += [f"--output={parent / 'logs' / 'slurm-%A_%a.out'}", *sbatch_options, str(script)]
    result = subprocess.run(command, capture_output=True, text=True, env=child_env())
    if result.returncode != 0:
        message = (result.stderr.strip() or result.stdout.strip() or "no message").splitlines()[-1]
        raise EmoscaleError(f"sbatch refused the job array: {message}")
    job_id = result.stdout.strip().split(";")[0]
    names = [record["points"][i]["name"] for i in indices]
    job = {"launcher": "slurm", "job_id": job_id, "points": names, "submitted": time.time()}
    study_record.add_job(parent, job)
    return job_id


def slurm_tasks(record: dict) -> dict[str, str]:
    """'<job>_<index>' -> SLURM state, for the study's jobs still known to squeue."""
    jobs = [job["job_id"] for job in record.get("jobs", []) if job["launcher"] == "slurm"]
    squeue = shutil.which("squeue")
    if not jobs or squeue is None:
        return {}
    result = subprocess.run(
        [squeue, "-h", "-r", "-j", ",".join(jobs), "-o", "%i %T"], capture_output=True, text=True
    )
    return dict(line.split() for line in result.stdout.splitlines() if len(line.split()) == 2)


# --- status and summary --------------------------------------------------------------------------


def point_states(parent: Path, record: dict) -> list[tuple[str, str, str]]:
    """(name, state, detail) per point; state is done, running, pending, failed or missing."""
    tasks = slurm_tasks(record)
    queued = {}
    for job in record.get("jobs", []):
        for name in job["points"]:
            index = [entry["name"] for entry in record["points"]].index(name)
            if f"{job['job_id']}_{index}" in tasks:
                queued[name] = tasks[f"{job['job_id']}_{index}"]
    rows = []
    for entry in record["points"]:
        name, state = entry["name"], study_record.read_state(parent, entry["name"])
        log = parent / "logs" / f"{name}.log"
        if finished(entry):
            rows.append((name, "done", entry["run_dir"]))
        elif state and state["state"] == "failed":
            rows.append((name, "failed", study_record.last_line(log)))
        elif state and state["state"] == "running":
            gone = state["host"] == socket.gethostname() and not study_record.pid_alive(
                state["pid"]
            )
            if gone and name not in queued:
                rows.append(
                    (name, "failed", f"ended without a result: {study_record.last_line(log)}")
                )
            else:
                rows.append((name, "running", f"on {state['host']}, log {log}"))
        elif name in queued:
            rows.append((name, "pending", f"SLURM {queued[name].lower()}"))
        else:
            rows.append((name, "missing", "not started, or its job ended before it ran"))
    return rows


def write_summary(parent: Path, record: dict) -> str:
    """The study's summary (cv.json/cv.md or sweep.json/sweep.md); every point must be done."""
    module = importlib.import_module(f"emoscale.studies.{record['kind']}")
    return module.write_summary(parent, record)


def summarize_if_done(parent: Path) -> str | None:
    record = study_record.read(parent)
    if all(finished(entry) for entry in record["points"]):
        return write_summary(parent, record)
    return None


def status(parent: Path, kind: str) -> tuple[str, bool]:
    """A line per point and whether all are done (then the summary is (re)written)."""
    parent = Path(parent)
    record = study_record.read(parent, kind)
    rows = point_states(parent, record)
    width = max(len(name) for name, _, _ in rows)
    lines = [f"{name.ljust(width)}  {state:8} {detail}" for name, state, detail in rows]
    counts = {state: sum(row[1] == state for row in rows) for state in ("done", "failed")}
    lines.append(f"{counts['done']} of {len(rows)} done, {counts['failed']} failed")
    if counts["done"] == len(rows):
        table = write_summary(parent, record)
        lines.append(f"\n{table}\n{kind}.json and {kind}.md written to {parent}")
    return "\n".join(lines), counts["done"] == len(rows)


# --- one point (its own process) -----------------------------------------------------------------


def train_command(record: dict, entry: dict, flags: list[str]) -> list[str]:
    """emoscale/train.py on this point's config; on several visible GPUs, through accelerate launch."""
    arguments = (["--config", record["config"]] if record["config"] else []) + entry["overrides"]
    visible = [item for item in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if item]
    if len(visible) < 2:
        return [sys.executable, str(TRAIN_SCRIPT), *arguments, *flags]
    with socket.socket() as probe:  # each point its own rendezvous port: points share the machine
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    launch += ["--num_processes", str(len(visible)), "--num_machines", "1"]
    launch += ["--main_process_port", str(port), "--dynamo_backend", "no"]
    return [*launch, str(TRAIN_SCRIPT), *arguments, *flags]


def run_point(parent: Path, name: str, overwrite: bool = False) -> int:
    from emoscale.training.checkpoints import latest

    parent = Path(parent)
    record = study_record.read(parent)
    entry = study_record.point(record, name)
    run_dir = Path(entry["run_dir"])
    if finished(entry) and not overwrite:
        study_record.write_state(parent, name, {"state": "done"})
        summarize_if_done(parent)
        return 0
    # A point that broke off: from its last checkpoint if it has one, else afresh (its folder
    # holds only what this study's earlier try wrote).
    flags = []
    if overwrite:
        flags = ["--overwrite"]
    elif (run_dir / "config.yaml").is_file():
        flags = ["--resume"] if latest(run_dir) else ["--overwrite"]
    job = os.environ.get("SLURM_JOB_ID")
    state = {"state": "running", "host": socket.gethostname(), "pid": os.getpid(), "job": job}
    state["started"] = time.time()
    study_record.write_state(parent, name, state)
    log = parent / "logs" / f"{name}.log"
    log.parent.mkdir(exist_ok=True)
    with open(log, "a") as handle:
        handle.write(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(flags)}\n")
        handle.flush()
        code = subprocess.call(
            train_command(record, entry, flags), stdout=handle, stderr=subprocess.STDOUT
        )
    done = code == 0 and finished(entry)
    state |= {"state": "done" if done else "failed", "exit_code": code, "ended": time.time()}
    if not done:
        state["last_line"] = study_record.last_line(log)
    study_record.write_state(parent, name, state)
    if done:
        summarize_if_done(parent)
    return 0 if done else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emoscale.studies.launchers")
    commands = parser.add_subparsers(dest="command", required=True)
    point = commands.add_parser("point", help="train one point of a study (the launchers' worker)")
    point.add_argument("parent")
    point.add_argument("name")
    point.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        return run_point(Path(args.parent), args.name, args.overwrite)
    except EmoscaleError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


# --- a study from the command line ---------------------------------------------------------------


@dataclass
class LaunchOptions:
    """How `emoscale cv|sweep` runs its points: None (one after another, in this process),
    'local' (`parallel` processes) or 'slurm' (one job array)."""

    launcher: str | None = None
    parallel: int | None = None
    devices: str | None = None
    max_running: int | None = None
    sbatch_options: list[str] = field(default_factory=list)

    def check(self) -> None:
        """Every option that does not fit the launcher, named, before anything is built."""
        if self.launcher not in (None, *LAUNCHERS):
            raise ConfigError(
                f"--launcher {self.launcher!r}: expected one of {', '.join(LAUNCHERS)}"
            )
        if self.parallel is not None and self.parallel < 1:
            raise ConfigError(f"--parallel {self.parallel}: expected at least 1")
        if self.launcher != "local" and (self.parallel is not None or self.devices is not None):
            raise ConfigError("--parallel and --devices go with --launcher local")
        if self.launcher != "slurm" and (self.max_running is not None or self.sbatch_options):
            raise ConfigError("--max-running and sbatch options after -- go with --launcher slurm")
        if self.launcher == "local":
            device_groups(self.devices, self.parallel or 1)
        if self.launcher == "slurm" and shutil.which("sbatch") is None:
            raise EmoscaleError(
                "--launcher slurm: sbatch not found on PATH (is SLURM installed here?)"
            )


def execute(parent: Path, record: dict, options: LaunchOptions, overwrite: bool) -> str:
    """Run or submit the claimed study's points (sequential runs stay in cv.py/sweep.py);
    returns what to print."""
    if options.launcher == "local":
        failed = run_local(parent, record, options.parallel or 1, options.devices, overwrite)
        if failed:
            raise EmoscaleError(
                f"{len(failed)} of {len(record['points'])} points failed ({', '.join(failed)}); "
                f"their logs are in {parent / 'logs'}; run the same command again to rerun them"
            )
        table = write_summary(parent, record)
        return (
            table
            + f"\n{record['kind']}.json, {record['kind']}.md and one run folder per point: {parent}"
        )
    job_id = submit_slurm(parent, record, options.max_running, options.sbatch_options, overwrite)
    if job_id is None:
        table = write_summary(parent, record)
        return table + f"\nevery point had finished earlier; summary in {parent}"
    return (
        f"submitted SLURM job array {job_id} ({parent / 'slurm' / 'points.sh'}); parent folder {parent}\n"
        f"follow it with: emoscale {record['kind']} --status {parent}"
    )
