"""The training loop: Adam, EMA, gradient clipping, checkpoints, previews, logs, resume.

Read top to bottom: :func:`train` loads the data (holding out ``train.holdout`` examples,
measuring σ_data) and takes the run directory's lock; :func:`_start` restores the latest good
checkpoint if there is one and sets up (schedule, model, EMA and power-EMA profiles, optimizer,
how σ is drawn); :func:`_loop` then repeats batch → :func:`_step` (loss, clipping, guarded
optimizer step, EMAs) → log / checkpoint with per-σ diagnostics (``run_state.save``) / power-EMA
snapshot / preview, and ``run_state.roll_back`` after non-finite steps.

The run directory's layout is in ARCHITECTURE.md; failures and what they can cost in
docs/conventions.md, "Failures and recovery".
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from pathlib import Path

import torch

import ncsn.checkpoint as checkpoint
import ncsn.config as config
import ncsn.consistency as consistency
import ncsn.files as files
import ncsn.fokker_planck as fokker_planck
import ncsn.noise_levels as noise_levels
import ncsn.progress as progress
import ncsn.schedule as schedule
from ncsn.data import load_dataset
from ncsn.data.dataset import Dataset
from ncsn.devices import check_compile, resolve_device, resolve_precision
from ncsn.errors import NCSNError
from ncsn.model import ScoreModel, build_model, check_training_memory, count_parameters
from ncsn.nets import experts
from ncsn.objectives import dsm_loss, ssm_loss
from ncsn.training import (
    data_prep,
    distributed,
    init_from,
    lock,
    optim,
    per_sigma,
    run_state,
    state,
)
from ncsn.training import log as train_log
from ncsn.training.checks import check_data
from ncsn.training.guard import Guard
from ncsn.training.labels import drop_labels
from ncsn.training.power_ema import SNAPSHOT_DIR, PowerEMA
from ncsn.training.preview import save_preview
from ncsn.training.run_state import MAX_ROLLBACKS, TrainingRun  # noqa: F401 (tests read it)

_SCAN_EVERY = 1024  # read the guard's flags at least this often, whatever log_every is
RUN_FILES = {  # what training writes into the run directory, checked before anything is
    "checkpoints": "folder", "previews": "folder", "tb": "folder", "config.yaml": "file",
    "schedule.json": "file", "metrics.csv": "file", lock.LOCK_NAME: "file",
    SNAPSHOT_DIR: "folder", per_sigma.FILE: "file", per_sigma.PLOT: "file",
}  # fmt: skip


def train(
    cfg: config.Config, *, progress: bool = True, log=print, minutes: float | None = None
) -> dict:
    """Train (or resume) the run in ``cfg.run_dir``; returns a summary dict. ``minutes``: stop
    after that much wall time of training steps (a checkpoint is written where it stops;
    rerunning resumes), at ``train.steps`` at the latest."""
    t = cfg.train
    w = distributed.world()
    device = resolve_device(t.device)
    if device.type == "cuda" and w.size > 1:
        device = torch.device("cuda", w.local_rank)
    if t.compile:  # before anything is written
        check_compile(device, "train.compile = true")
    if t.compile_teacher:
        check_compile(device, "train.compile_teacher = true")
    if t.deterministic:
        torch.use_deterministic_algorithms(True)
    data, held_out = data_prep.split(cfg, load_dataset(cfg.data, seed=t.seed))
    check_data(cfg, data, w.size)
    cfg, data_std = data_prep.resolve_sigma_data(cfg, data)
    if not w.main:
        log, progress = (lambda *_: None), False
    cfg = resolve_precision(cfg, device, log)  # the run's config.yaml records the choice
    if Path(cfg.run_dir).exists() and not Path(cfg.run_dir).is_dir():
        raise NCSNError(f"run_dir = {cfg.run_dir!r}: is a file; expected a directory")
    files.check_kinds(Path(cfg.run_dir), RUN_FILES, f"run_dir = {cfg.run_dir!r}")
    levels = cfg.schedule.num_levels if cfg.schedule.num_levels != "auto" else 2
    check_training_memory(cfg.model, data.shape, levels, device)
    held = lock.hold(cfg.run_dir) if w.main else contextlib.nullcontext()
    with distributed.process_group(w, device), held:
        try:
            run = _start(cfg, data, device, log, w, data_std)
            run.held = held_out  # the per-σ diagnostics' examples
            return _loop(run, progress, minutes)
        except (MemoryError, RuntimeError) as e:  # torch.OutOfMemoryError is a RuntimeError
            oom = isinstance(e, (MemoryError, torch.OutOfMemoryError))
            if not oom and "can't allocate memory" not in str(e):  # the CPU allocator's words
                raise
            raise _out_of_memory(cfg, device, e) from None


def _out_of_memory(cfg: config.Config, device: torch.device, e: BaseException) -> NCSNError:
    return NCSNError(
        f"out of memory on {device} with train.batch_size = {cfg.train.batch_size} "
        f"({type(e).__name__}): lower train.batch_size (or the model size, e.g. model.channels) "
        "and rerun; training resumes from the last checkpoint"
    )


def _fault(step: int, loss: torch.Tensor, model: ScoreModel, ema: ScoreModel) -> torch.Tensor:
    """Test seam, called once per step with the loss: returns it unchanged. Tests replace it to
    inject a NaN, corrupt weights or raise an error at a chosen step."""
    return loss


def _start(
    cfg: config.Config,
    data: Dataset,
    device: torch.device,
    log,
    w: distributed.World,
    data_std: float,
) -> TrainingRun:
    """Housekeeping, the resume point, schedule, model, EMA, optimizer and generators."""
    t = cfg.train
    run_dir = Path(cfg.run_dir)
    ckpt_dir = run_dir / "checkpoints"
    if w.main:  # housekeeping first, then every rank reads the same checkpoint
        for folder in (run_dir, ckpt_dir):
            if n := files.remove_stale_temporaries(folder):
                log(f"removed {n} temporary files left by an interrupted run in {folder}")
        found = state.resume_point(cfg, data.shape, ckpt_dir, log)
    distributed.barrier(w)
    if not w.main:
        found = state.resume_point(cfg, data.shape, ckpt_dir, log, set_aside=False)
    if found is not None:
        sched = state.parse_meta(found[1], found[2])[1]
    else:
        sched = schedule.resolve_for_data(cfg.schedule, data.x, data.as_float)

    torch.manual_seed(t.seed)
    model = build_model(cfg.model, data.shape, sched.sigmas).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    if w.rank:  # per-rank stream for dropout, derived from the run seed
        torch.manual_seed(t.seed + 7919 * w.rank)
    opt = optim.adam(model.parameters(), t)
    data_gen = torch.Generator().manual_seed(t.seed + 1)
    noise_gen = torch.Generator(device).manual_seed(t.seed + 2)
    guard = Guard()
    pema = PowerEMA(list(model.parameters()), t.ema_stds) if t.ema_stds else None
    names = [name for name, _ in model.named_parameters()]
    step, initial = 0, None
    if found is not None:
        tensors, meta, path = found
        state.restore(tensors, meta, path, model, ema, opt, data_gen, noise_gen)
        if pema is not None:
            pema.load(tensors, names, path)
        guard.load(meta.get("nonfinite", {}), path)
        step = meta["step"]
        log(f"resumed from {path} at step {step}")
    else:
        if t.init_from is not None:  # a new run that starts from another run's weights
            init_from.load_initial(t.init_from, data.shape, model, ema, log)
        tensors, extra = state.collect(model, ema, opt, data_gen, noise_gen)
        tensors |= pema.tensors(names) if pema is not None else {}
        initial = ({k: v.detach().clone().cpu() for k, v in tensors.items()}, extra)

    if w.main:
        files.atomic_write_bytes(run_dir / "config.yaml", config.dumps(cfg).encode())
        files.atomic_write_bytes(
            run_dir / "schedule.json", json.dumps(sched.to_dict(), indent=1).encode()
        )
    log(f"data: {data.name}, {len(data)} examples of shape {data.shape}")
    log(f"model: {cfg.model.net}, {count_parameters(model):,} parameters, device {device}")
    if w.size > 1:
        log(
            f"distributed: {w.size} processes, global batch {t.batch_size}, "
            f"{t.batch_size // (w.size * t.grad_accum)} per process and micro-step"
        )
    log(sched.describe())

    layout = torch.preserve_format
    if t.channels_last and len(data.shape) == 3:
        layout = torch.channels_last
        model.to(memory_format=layout)
    net = model  # what the objectives call as net(x, σ), i.e. its forward
    if w.size > 1:  # DDP averages the gradients; with experts, a batch may leave one unused
        unused = cfg.model.experts > 1
        net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=unused)
    if t.compile:
        net = torch.compile(net)  # the C++ compiler was checked in train()

    sigmas = sched.tensor(device)
    if t.band is not None:  # one expert at a time: only its levels are drawn, so only it learns
        starts = experts.band_starts(cfg.model.expert_bands, cfg.model.experts, len(sigmas))
        sigmas = sigmas[experts.band_slices(starts, len(sigmas))[t.band]]
        log(f"training expert {t.band} alone: levels σ = {sigmas[0]:.4g} … {sigmas[-1]:.4g}")
    if t.fp_weight > 0 and (len(sigmas) < 2 or w.size > 1):
        raise NCSNError(
            f"train.fp_weight = {t.fp_weight}: the Fokker–Planck regulariser needs at least two "
            f"noise levels (here {len(sigmas)}) and one process (here {w.size}); set it to 0"
        )
    levels = noise_levels.from_config(
        t, sigmas, cfg.model.parameterization, model.sigma_data, data_std
    )
    ect = None
    if t.objective == "ect":
        teacher = init_from.teacher(t, data.shape, device, layout, log)  # None: ect_pair noise
        ect = consistency.from_config(t, sched.sigmas, model.sigma_data, data.x[0].numel(), teacher)
    log(ect.describe() if ect is not None else levels.describe())
    return TrainingRun(
        cfg, data, device, w, log, sched, model, ema, net, opt, data_gen, noise_gen, guard,
        sigmas, layout, step, initial, levels, pema, data_std, ect=ect,
    )  # fmt: skip


def _step(run: TrainingRun, ema_rate: torch.Tensor, max_norm: float) -> tuple[torch.Tensor, float]:
    """One optimizer step on a fresh global batch: returns (gradient norm, learning rate).

    The global batch is drawn the same on every rank; each rank takes its micro-batches. The
    guard's skip flag stays on the device and gates the optimizer and the EMA (no host sync).
    """
    cfg, t, w, step = run.cfg, run.cfg.train, run.world, run.step
    micro = t.batch_size // (w.size * t.grad_accum)
    index = torch.randint(len(run.data), (t.batch_size,), generator=run.data_gen)
    x = run.data.batch(
        index, generator=run.data_gen, dequantize=cfg.data.dequantize, hflip=cfg.data.hflip
    )
    parts = x.view(w.size, t.grad_accum, micro, *x.shape[1:])[w.rank]
    label_parts = None
    if k := cfg.model.num_classes:  # the global batch's labels, some dropped, sliced as x is
        labels = drop_labels(run.data.labels[index], t.label_dropout, k, run.data_gen)
        label_parts = labels.view(w.size, t.grad_accum, micro)[w.rank]
    lr = t.lr * run.guard.lr_scale * (min(1.0, (step + 1) / t.warmup) if t.warmup else 1.0)
    for group in run.opt.param_groups:
        group["lr"] = lr
    run.opt.zero_grad(set_to_none=True)
    noise_state = run.noise_gen.get_state() if t.grad_accum > 1 else None
    loss = torch.zeros((), device=run.device)
    for k in range(t.grad_accum):
        if noise_state is not None:  # every micro-step slices the same global draws
            run.noise_gen.set_state(noise_state)
        xk = parts[k].to(run.device, non_blocking=True, memory_format=run.layout)
        sync = k == t.grad_accum - 1 or w.size == 1
        with (
            contextlib.nullcontext() if sync else run.net.no_sync(),
            torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16"),
        ):
            yk = None if label_parts is None else label_parts[k].to(run.device)
            part = _loss(run, xk, yk, shard=(w.rank * t.grad_accum + k, w.size * t.grad_accum))
            part = _fault(step, part, run.model, run.ema) / t.grad_accum
            part.backward()
        loss = loss + part.detach()
    grad_norm = torch.nn.utils.clip_grad_norm_(run.params, max_norm)
    skip = run.guard.flag(loss, grad_norm)  # on the device: no host sync
    optim.optimizer_step(run.opt, skip)
    if t.ema_warmup:  # tf.train.ExponentialMovingAverage's num_updates rule
        ema_rate.fill_(1.0 - min(t.ema, (1 + step) / (10 + step)))
    optim.ema_update(run.ema_params, run.params, ema_rate, skip)
    if run.pema is not None:
        run.pema.update(run.params, step + 1, skip)
    run.step += 1
    return grad_norm, lr


def _loss(run: TrainingRun, x: torch.Tensor, labels, shard: tuple[int, int]) -> torch.Tensor:
    """The objective (DSM, SSM or ECT) on one micro-batch (and its labels, for a
    class-conditional model), plus the Fokker–Planck term if asked."""
    t = run.cfg.train
    if t.objective == "ect":
        return consistency.ect_loss(run.net, x, run.ect, step=run.step, generator=run.noise_gen,
                                    shard=shard, labels=labels)  # fmt: skip
    loss_fn, extra = (
        (dsm_loss, {}) if t.objective == "dsm" else (ssm_loss, {"projections": t.ssm_projections})
    )
    extra |= {"labels": labels, "shard": shard}
    levels = run.levels if t.objective == "dsm" else run.sigmas
    loss = loss_fn(run.net, x, levels, generator=run.noise_gen, power=t.loss_power, **extra)
    if t.fp_weight > 0:  # in fp32: it differentiates the network twice
        with torch.autocast(run.device.type, enabled=False):
            fp = fokker_planck.regulariser(
                run.model,  # not the compiled net: compile has no double backward
                x[: t.fp_examples],
                run.sigmas,
                generator=run.noise_gen,
                probes=t.fp_probes,
            )
        loss = loss + t.fp_weight * fp
    return loss


def _loop(run: TrainingRun, show_progress: bool, minutes: float | None = None) -> dict:
    """Train from ``run.step`` to ``train.steps`` (or for ``minutes``): step, log, checkpoint,
    preview, roll back."""
    t, w, guard = run.cfg.train, run.world, run.guard
    run_dir = Path(run.cfg.run_dir)
    metrics_file = train_log.open_metrics(
        run_dir / "metrics.csv", run.step, run.log, run.world.main
    )
    writer = train_log.tensorboard(run_dir / "tb") if w.main else None
    max_norm = t.grad_clip if t.grad_clip > 0 else float("inf")  # inf: measure, do not clip
    ema_rate = torch.tensor(1.0 - t.ema, device=run.device)
    bar = progress.bar(total=t.steps, initial=run.step, disable=not show_progress, unit="step")
    window_start, window_step, start_time = time.perf_counter(), run.step, time.perf_counter()
    deadline = None if minutes is None else start_time + 60.0 * minutes

    def roll_back(reason: str) -> None:
        nonlocal metrics_file, window_start, window_step
        run_state.roll_back(run, reason)
        metrics_file.close()
        metrics_file = train_log.open_metrics(
            run_dir / "metrics.csv", run.step, run.log, run.world.main
        )
        bar.n = window_step = run.step
        bar.refresh()
        window_start = time.perf_counter()

    run.model.train()
    try:
        while run.step < t.steps:
            grad_norm, lr = _step(run, ema_rate, max_norm)
            step = run.step
            bar.update(1)

            # every rank stops at the same step: rank 0's clock decides
            stop = deadline is not None and distributed.flag(w, time.perf_counter() >= deadline,
                                                             run.device)  # fmt: skip
            at_log = step % t.log_every == 0 or step == t.steps or stop
            at_checkpoint = step % t.checkpoint_every == 0 or step == t.steps or stop
            if at_log or at_checkpoint or guard.unread() >= _SCAN_EVERY:
                longest, skipped = guard.read(step)
                if skipped:
                    run.log(
                        f"warning: skipped {len(skipped)} step(s) with a non-finite loss or "
                        f"gradient norm (steps {skipped[0]}–{skipped[-1]}; {guard.skipped} in "
                        "this run)"
                    )
                if longest >= t.nonfinite_patience:
                    roll_back(f"non-finite loss or gradient norm in {longest} consecutive steps")
                    continue
            if at_log:
                now = time.perf_counter()
                row = {
                    "step": step,
                    "loss": distributed.mean(w, guard.take_mean_loss(), run.device),
                    "lr": lr,
                    "grad_norm": float(grad_norm),
                    "skipped": guard.skipped,
                    "steps_per_s": (step - window_step) / (now - window_start),
                    "elapsed_s": now - start_time,
                }
                train_log.write_row(metrics_file, row, writer)
                bar.set_postfix(loss=f"{row['loss']:.4g}")
                window_start, window_step = now, step
            if at_checkpoint:
                try:
                    run_state.save(run)
                    distributed.barrier(w)  # a rollback on any rank reads complete files
                except checkpoint.NonFiniteError as e:
                    roll_back(str(e))
                    continue
                run.initial = None
                if w.main and t.per_sigma_levels:
                    run_state.measure_per_sigma(run)
            every = t.ema_snapshot_every or t.checkpoint_every
            if w.main and run.pema is not None and (step % every == 0 or step == t.steps):
                run.pema.snapshot(run_dir, run.param_names, step)
            if w.main and t.preview_every and (step % t.preview_every == 0 or step == t.steps):
                (run_dir / "previews").mkdir(exist_ok=True)
                run.ema.eval()
                path = run_dir / "previews" / f"step-{step:08d}.png"
                mid = consistency.trained_mid(t)
                save_preview(run.ema, run.sched, run.data.shape, t.preview_n, t.seed, path, mid)
            if stop:
                run.log(f"stopped after {minutes:g} minutes at step {step}; rerun to resume")
                break
    finally:
        bar.close()
        metrics_file.close()
        if writer is not None:
            writer.close()
    if guard.skipped:
        run.log(f"{guard.skipped} steps skipped for non-finite values, {guard.rollbacks} rollbacks")
    return {"step": run.step, "run_dir": str(run_dir), "parameters": count_parameters(run.model)}
