"""Crash safety: the run lock, and training that survives SIGKILL at any moment.

The SIGKILL test runs every training "life" in a child process forked from one helper process
(the "zygote", started once with ``python -c``), so torch is imported once, not per life. The
zygote reads one JSON job per line on stdin, forks, and either

- kills the child with SIGKILL after a seeded random delay, counted from the fork (kills while
  starting: lock, clean-up, resume) or from the first training step, which the child reports
  through a pipe (kills among steps, log rows and checkpoint writes, at most ~10 steps in, so
  every life is killed before the run could finish), or
- arms a kill plan inside the child before it trains: ``os.fsync``, ``os.replace`` or
  ``Path.unlink`` are wrapped, in the child only, so the child SIGKILLs itself at a chosen point
  of a chosen file write (a half-written temporary checkpoint, just before or just after the
  rename, in the middle of pruning, while rewriting metrics.csv or config.yaml).

Production code has no hook for this (the child only wraps ``ncsn.training.loop._fault``, the
seam the non-finite tests use, to report its first step). After 20 kills a last life trains to
the end, and every tensor of the final checkpoint must equal (``torch.equal``) that of an
uninterrupted run of the same seed, with the same logged losses, no temporary files and no lock
left.
"""

import csv
import json
import os
import random
import signal
import socket
import subprocess
import sys

import pytest
from tiny import TINY_TOY

from ncsn import checkpoint, config
from ncsn.errors import NCSNError
from ncsn.training import lock
from ncsn.training.loop import train

QUIET = {"progress": False, "log": lambda *_: None}

TOY = [*TINY_TOY, "train.deterministic=true"]

ZYGOTE = r"""
import json, os, pathlib, re, select, signal, sys, time, traceback
import torch
torch.set_num_threads(1)
import ncsn.training.loop
from ncsn import config
from ncsn.training.loop import train

# Warm up once here, not in every child: the first optimizer step imports torch._dynamo (~2 s).
_p = torch.nn.Parameter(torch.zeros(1))
_p.grad = torch.zeros(1)
torch.optim.Adam([_p], fused=True).step()

def arm(plan):
    pattern, nth = re.compile(plan["match"]), plan["nth"]
    seen = [0]
    def hit(name):
        if pattern.search(os.path.basename(str(name))):
            seen[0] += 1
            return seen[0] == nth
        return False
    def die():
        os.kill(os.getpid(), signal.SIGKILL)
    if plan["at"] == "torn":  # the temporary file is half written when the process dies
        real_fsync = os.fsync
        def fsync(fd):
            if hit(os.readlink(f"/proc/self/fd/{fd}")):
                os.ftruncate(fd, os.fstat(fd).st_size // 2)
                die()
            return real_fsync(fd)
        os.fsync = fsync
    elif plan["at"] in ("before-rename", "after-rename"):
        real_replace = os.replace
        def replace(src, dst):
            if plan["at"] == "after-rename":
                real_replace(src, dst)
            if hit(dst):
                die()
            if plan["at"] == "before-rename":
                real_replace(src, dst)
        os.replace = replace
    elif plan["at"] == "prune":
        real_unlink = pathlib.Path.unlink
        def unlink(self, missing_ok=False):
            real_unlink(self, missing_ok=missing_ok)
            if hit(self.name):
                die()
        pathlib.Path.unlink = unlink

def child(job, first_step):
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    try:
        if job.get("plan"):
            arm(job["plan"])
        real_fault, told = ncsn.training.loop._fault, []

        def fault(step, loss, model, ema):  # tell the zygote when the first step runs
            if not told:
                told.append(os.write(first_step, b"."))
            return real_fault(step, loss, model, ema)

        ncsn.training.loop._fault = fault
        train(config.load(None, job["overrides"]), progress=False, log=lambda *a: None)
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)

for line in sys.stdin:
    job = json.loads(line)
    readable, first_step = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(readable)
        child(job, first_step)
    os.close(first_step)
    if job.get("from") == "first-step":  # the pipe turns readable at the first step or on exit
        select.select([readable], [], [], 120)
    first = time.monotonic() - start
    deadline = time.monotonic() + job.get("delay", 1e9)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(0.0005)
    os.close(readable)
    code = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - start
    print(json.dumps({"code": code, "first": first, "seconds": seconds}), flush=True)
"""

KILL_PLANS = [
    {"at": "torn", "match": r"^\.ckpt-.*\.tmp-", "nth": 2},
    {"at": "before-rename", "match": r"^ckpt-", "nth": 2},
    {"at": "after-rename", "match": r"^ckpt-", "nth": 2},
    {"at": "prune", "match": r"^ckpt-\d+\.safetensors$", "nth": 1},
    {"at": "before-rename", "match": r"^metrics\.csv$", "nth": 1},
    {"at": "torn", "match": r"^\.config\.yaml\.tmp-", "nth": 1},
    {"at": "after-rename", "match": r"^ckpt-", "nth": 3},
    {"at": "torn", "match": r"^\.ckpt-.*\.tmp-", "nth": 3},
]


def _cfg(tmp_path, name, steps=6, extra=()):
    return config.load(None, [*TOY, f"train.steps={steps}", f"run_dir={tmp_path / name}", *extra])


class _Zygote:
    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, overrides, **job) -> dict:
        """One life: ``delay`` (s, counted from the fork or, with ``from="first-step"``, from
        the first training step) before SIGKILL, or a kill ``plan``; neither: run to the end."""
        self.proc.stdin.write(json.dumps({"overrides": overrides, **job}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses fork and /proc")
def test_training_killed_20_times_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    steps = 150
    common = [*TOY, f"train.steps={steps}", "train.checkpoint_every=3", "train.keep_last=2"]
    common += ["train.log_every=1"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    zygote = _Zygote()
    try:
        reference = zygote.run([*common, f"run_dir={straight}"], **{"from": "first-step"})
        assert reference["code"] == 0
        start_up = reference["first"]
        per_step = (reference["seconds"] - start_up) / steps
        rng = random.Random(0)
        lives = [{"plan": plan} for plan in KILL_PLANS]  # inside file writes
        lives += [{"delay": rng.uniform(0, start_up)} for _ in range(3)]  # while starting
        lives += [  # among steps, log rows and checkpoint writes, at most ~10 steps in
            {"delay": rng.uniform(0, 10 * per_step), "from": "first-step"} for _ in range(9)
        ]
        rng.shuffle(lives)
        codes = [zygote.run([*common, f"run_dir={killed}"], **life)["code"] for life in lives]
        last = zygote.run([*common, f"run_dir={killed}"])
    finally:
        zygote.close()
    assert last["code"] == 0
    assert codes == [-signal.SIGKILL] * 20  # every kill landed in a running trainer
    a, meta_a = checkpoint.load(checkpoint.path_for(straight / "checkpoints", steps))
    b, meta_b = checkpoint.load(checkpoint.path_for(killed / "checkpoints", steps))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    assert {**meta_a, "config": None} == {**meta_b, "config": None}
    assert _losses(straight) == _losses(killed)
    left = [p.name for p in killed.rglob("*") if ".tmp-" in p.name or p.name == ".lock"]
    assert left == []


def _losses(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [(r["step"], r["loss"], r["lr"], r["skipped"]) for r in csv.DictReader(f)]


HOLDER = r"""
import sys, time
from ncsn.training import lock
with lock.hold(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _holder(run_dir):
    """A process holding the run's lock (it says so on stdout once it does)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline() == "held\n"
    return proc


def test_a_second_trainer_is_refused_with_the_pid_and_host_of_the_first(tmp_path):
    holder = _holder(tmp_path / "run")
    try:
        with pytest.raises(NCSNError, match=f"pid {holder.pid} on host '{socket.gethostname()}'"):
            train(_cfg(tmp_path, "run"), **QUIET)
        assert not (tmp_path / "run" / "checkpoints").exists()
        assert json.loads((tmp_path / "run" / ".lock").read_text())["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_held_in_this_process_refuses_a_second_trainer(tmp_path):
    with lock.hold(tmp_path / "run"):
        with pytest.raises(NCSNError, match=f"pid {os.getpid()}"):
            train(_cfg(tmp_path, "run"), **QUIET)
    assert not (tmp_path / "run").exists()  # created for the lock, empty again: removed


def test_the_lock_of_a_sigkilled_trainer_is_free_at_once(tmp_path):
    holder = _holder(tmp_path / "run")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / "run" / ".lock").exists()  # left behind, but nobody holds it
    train(_cfg(tmp_path, "run"), **QUIET)
    assert checkpoint.list_checkpoints(tmp_path / "run" / "checkpoints")
    assert not (tmp_path / "run" / ".lock").exists()


def test_a_lock_file_with_junk_and_no_holder_is_taken_over(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".lock").write_bytes(b"\x00not json")
    train(_cfg(tmp_path, "run"), **QUIET)
    assert checkpoint.list_checkpoints(tmp_path / "run" / "checkpoints")


def test_the_lock_is_released_when_training_fails(tmp_path, monkeypatch):
    def fail(step, loss, model, ema):
        if step == 4:
            raise NCSNError("injected")
        return loss

    monkeypatch.setattr("ncsn.training.loop._fault", fail)
    with pytest.raises(NCSNError, match="injected"):
        train(_cfg(tmp_path, "run", extra=["train.checkpoint_every=2"]), **QUIET)
    assert not (tmp_path / "run" / ".lock").exists()
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path / "run" / "checkpoints")] == [2, 4]


def test_temporary_files_of_a_killed_writer_are_removed_on_the_next_start(tmp_path):
    train(_cfg(tmp_path, "run", steps=3), **QUIET)
    ckpts = tmp_path / "run" / "checkpoints"
    stale = ckpts / f".ckpt-00000006.safetensors.tmp-{_dead_pid()}"
    stale.write_bytes(b"half a checkpoint")
    train(_cfg(tmp_path, "run", steps=6), **QUIET)
    assert not stale.exists()


def test_newer_unusable_checkpoints_are_set_aside_on_resume(tmp_path):
    train(_cfg(tmp_path, "run", steps=6, extra=["train.checkpoint_every=3"]), **QUIET)
    ckpts = tmp_path / "run" / "checkpoints"
    (ckpts / "ckpt-00000006.safetensors").write_bytes(b"torn")
    messages = []
    train(_cfg(tmp_path, "run", steps=9), progress=False, log=messages.append)
    assert (ckpts / "ckpt-00000006.safetensors.corrupt").read_bytes() == b"torn"
    assert any("resumed" in m and "ckpt-00000003" in m for m in messages)
    assert [s for s, _ in checkpoint.list_checkpoints(ckpts)][-1] == 9


def test_resume_is_refused_when_no_checkpoint_is_usable(tmp_path):
    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "ckpt-00000003.safetensors").write_bytes(b"garbage")
    with pytest.raises(NCSNError, match="none of its 1 checkpoints is usable"):
        train(_cfg(tmp_path, "run"), **QUIET)
    assert (ckpts / "ckpt-00000003.safetensors").read_bytes() == b"garbage"
