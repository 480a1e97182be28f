"""The training loop: Adam, EMA, gradient clipping, checkpoints, previews, logs, resume.

Read top to bottom: load the data, take the run directory's lock, restore the latest good
checkpoint if there is one, set up (schedule, model, optimizer), then loop: batch → loss → step →
EMA → log / checkpoint / preview.

Run directory layout: ``.lock`` (while training), ``config.yaml`` (resolved), ``schedule.json``,
``checkpoints/``, ``previews/``, ``metrics.csv`` and ``tb/`` (TensorBoard, when installed).
Failures and what they can cost are described in docs/conventions.md, "Failures and recovery".
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ncsn import (
    checkpoint,
    config,
    distributed,
    fokker_planck,
    nonfinite,
    runlock,
    schedule,
    train_log,
    train_state,
)
from ncsn.data import load_dataset
from ncsn.data.dataset import Dataset
from ncsn.devices import check_compile, resolve_device
from ncsn.errors import NCSNError
from ncsn.model import ScoreModel, build_model, count_parameters
from ncsn.nets import experts
from ncsn.objectives import dsm_loss, ssm_loss
from ncsn.samplers.langevin import annealed_langevin
from ncsn.viz import save_grid, save_scatter

MAX_ROLLBACKS = 10  # then the run stops: the learning rate has been divided by ~1000 already
_SCAN_EVERY = 1024  # read the guard's flags at least this often, whatever log_every is


def preview(model: ScoreModel, sched: schedule.Schedule, shape, n: int, seed: int, path: Path):
    """Draw ``n`` samples with annealed Langevin (fixed seed) and save a grid or scatter plot."""
    device = next(model.parameters()).device
    gen = torch.Generator(device).manual_seed(seed)
    init = "uniform" if len(shape) == 3 else "gaussian"
    x = annealed_langevin(
        model,
        (n, *shape),
        sched.sigmas,
        generator=gen,
        eps=sched.step_size,
        n_steps_each=sched.steps_per_level,
        init=init,
    )
    (save_grid if len(shape) == 3 else save_scatter)(x, path)


def train(cfg: config.Config, *, progress: bool = True, log=print) -> dict:
    """Train (or resume) the run in ``cfg.run_dir``; returns a summary dict."""
    t = cfg.train
    w = distributed.world()
    device = resolve_device(t.device)
    if device.type == "cuda" and w.size > 1:
        device = torch.device("cuda", w.local_rank)
    if t.compile:  # before anything is written
        check_compile(device, "train.compile = true")
    if t.deterministic:
        torch.use_deterministic_algorithms(True)
    data = load_dataset(cfg.data, seed=t.seed)
    if t.batch_size > len(data):
        raise NCSNError(
            f"train.batch_size = {t.batch_size}: larger than the data set ({len(data)} examples)"
        )
    if t.batch_size % (w.size * t.grad_accum):
        raise NCSNError(
            f"train.batch_size = {t.batch_size}: expected a multiple of the number of processes "
            f"({w.size}) × train.grad_accum ({t.grad_accum})"
        )
    if not w.main:
        log, progress = (lambda *_: None), False
    lock = runlock.hold(cfg.run_dir, warn=log) if w.main else contextlib.nullcontext()
    with distributed.process_group(w, device), lock:
        try:
            return _train(cfg, data, device, progress, log, w)
        except (torch.OutOfMemoryError, MemoryError) as e:
            raise _out_of_memory(cfg, device, e) from None
        except RuntimeError as e:
            if "can't allocate memory" not in str(e):
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


def _train(
    cfg: config.Config,
    data: Dataset,
    device: torch.device,
    progress: bool,
    log,
    w: distributed.World,
) -> dict:
    t = cfg.train
    run_dir = Path(cfg.run_dir)
    ckpt_dir = run_dir / "checkpoints"
    if w.main:  # housekeeping first, then every rank reads the same checkpoint
        for folder in (run_dir, ckpt_dir):
            if n := checkpoint.remove_stale_temporaries(folder):
                log(f"removed {n} temporary files left by an interrupted run in {folder}")
        found = _resume_point(cfg, data, ckpt_dir, log)
    distributed.barrier(w)
    if not w.main:
        found = _resume_point(cfg, data, ckpt_dir, log, set_aside=False)
    if found is not None:
        sched = train_state.parse_meta(found[1], found[2])[1]
    else:
        sched = schedule.resolve(cfg.schedule, data.as_float() if _needs_data(cfg) else None)

    torch.manual_seed(t.seed)
    model = build_model(cfg.model, data.shape, sched.sigmas).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    if w.rank:  # per-rank stream for dropout, derived from the run seed
        torch.manual_seed(t.seed + 7919 * w.rank)
    opt = nonfinite.adam(model.parameters(), t)
    data_gen = torch.Generator().manual_seed(t.seed + 1)
    noise_gen = torch.Generator(device).manual_seed(t.seed + 2)
    guard = nonfinite.Guard()
    step, initial = 0, None
    if found is not None:
        tensors, meta, path = found
        train_state.restore(tensors, meta, path, model, ema, opt, data_gen, noise_gen)
        guard.load(meta.get("nonfinite", {}), path)
        step = meta["step"]
        log(f"resumed from {path} at step {step}")
    else:  # the rollback target until the first checkpoint exists
        tensors, extra = train_state.collect(model, ema, opt, data_gen, noise_gen)
        initial = ({k: v.detach().clone().cpu() for k, v in tensors.items()}, extra)

    if w.main:
        checkpoint.atomic_write_bytes(run_dir / "config.yaml", config.dumps(cfg).encode())
        checkpoint.atomic_write_bytes(
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
    metrics_path = run_dir / "metrics.csv"

    def open_metrics(step: int):
        return train_log.open_metrics(metrics_path, step, log) if w.main else open(os.devnull, "w")

    metrics_file = open_metrics(step)
    writer = train_log.tensorboard(run_dir / "tb") if w.main else None
    # DDP averages the gradients over ranks; the objectives call net(x, σ), i.e. its forward.
    layout = torch.preserve_format
    if t.channels_last and len(data.shape) == 3:
        layout = torch.channels_last
        model.to(memory_format=layout)
    # (with experts, a batch or a band may leave an expert without examples: unused parameters)
    net = (
        torch.nn.parallel.DistributedDataParallel(
            model, find_unused_parameters=cfg.model.experts > 1
        )
        if w.size > 1
        else model
    )
    if t.compile:
        net = torch.compile(net)  # the C++ compiler was checked in train()
    micro = t.batch_size // (w.size * t.grad_accum)

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
    loss_fn = dsm_loss if t.objective == "dsm" else ssm_loss
    loss_kwargs = {"power": t.loss_power}
    if t.objective == "ssm":
        loss_kwargs["projections"] = t.ssm_projections
    params = list(model.parameters())
    ema_params = list(ema.parameters())
    max_norm = t.grad_clip if t.grad_clip > 0 else float("inf")  # inf: measure, do not clip
    ema_rate = torch.tensor(1.0 - t.ema, device=device)

    def save_checkpoint() -> None:
        tensors, extra = train_state.collect(model, ema, opt, data_gen, noise_gen)
        meta = {
            "step": step,
            "config": config.to_dict(cfg),
            "schedule": sched.to_dict(),
            "data_shape": list(data.shape),
            "data_name": data.name,
            "parameters": count_parameters(model),
            "nonfinite": guard.state(),
        } | extra
        path = checkpoint.path_for(ckpt_dir, step)
        if not w.main:  # same weights on every rank: the same decision, no file
            checkpoint.check_finite(tensors, path)
            return
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.save(path, tensors, meta)
        checkpoint.prune(ckpt_dir, t.keep_last)

    def roll_back(reason: str) -> int:
        """Restore the last good state, lower the learning rate; returns the step restored."""
        nonlocal metrics_file
        if guard.rollbacks >= MAX_ROLLBACKS:
            raise NCSNError(
                f"{reason}; still failing after {MAX_ROLLBACKS} rollbacks with the learning "
                f"rate lowered to {t.lr * guard.lr_scale:.3g}: lower train.lr or "
                "train.grad_clip, or check the data and the model settings"
            )
        back = checkpoint.latest(ckpt_dir, warn=log, check=train_state.check_meta)
        if back is None and initial is None:
            raise NCSNError(f"{reason}; and no usable checkpoint in {ckpt_dir} to roll back to")
        tensors, meta, path = back if back is not None else (*initial, "the initial weights")
        train_state.restore(tensors, meta, Path(path), model, ema, opt, data_gen, noise_gen)
        guard.rolled_back(t.nonfinite_lr_factor)
        restored = meta.get("step", 0)
        log(
            f"warning: {reason}: rolled back to step {restored} ({path}) and lowered the "
            f"learning rate to {t.lr * guard.lr_scale:.3g} (× {t.nonfinite_lr_factor})"
        )
        metrics_file.close()
        metrics_file = open_metrics(restored)
        bar.n = restored
        bar.refresh()
        return restored

    bar = tqdm(total=t.steps, initial=step, disable=not progress, unit="step", dynamic_ncols=True)
    grad_norm = torch.zeros((), device=device)
    window_start, window_step, start_time = time.perf_counter(), step, time.perf_counter()
    model.train()
    try:
        while step < t.steps:
            # The global batch is drawn the same on every rank; each takes its micro-batches.
            index = torch.randint(len(data), (t.batch_size,), generator=data_gen)
            x = data.batch(
                index, generator=data_gen, dequantize=cfg.data.dequantize, hflip=cfg.data.hflip
            )
            parts = x.view(w.size, t.grad_accum, micro, *x.shape[1:])[w.rank]
            lr = t.lr * guard.lr_scale * (min(1.0, (step + 1) / t.warmup) if t.warmup else 1.0)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            noise_state = noise_gen.get_state() if t.grad_accum > 1 else None
            loss = torch.zeros((), device=device)
            for k in range(t.grad_accum):
                if noise_state is not None:  # every micro-step slices the same global draws
                    noise_gen.set_state(noise_state)
                xk = parts[k].to(device, non_blocking=True, memory_format=layout)
                sync = k == t.grad_accum - 1 or w.size == 1
                with (
                    contextlib.nullcontext() if sync else net.no_sync(),
                    torch.autocast(
                        device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16"
                    ),
                ):
                    part = loss_fn(
                        net,
                        xk,
                        sigmas,
                        generator=noise_gen,
                        shard=(w.rank * t.grad_accum + k, w.size * t.grad_accum),
                        **loss_kwargs,
                    )
                    if t.fp_weight > 0:  # in fp32: it differentiates the network twice
                        with torch.autocast(device.type, enabled=False):
                            fp = fokker_planck.regulariser(
                                model,  # not the compiled net: compile has no double backward
                                xk[: t.fp_examples],
                                sigmas,
                                generator=noise_gen,
                                probes=t.fp_probes,
                            )
                        part = part + t.fp_weight * fp
                    part = _fault(step, part, model, ema) / t.grad_accum
                    part.backward()
                loss = loss + part.detach()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
            skip = guard.flag(loss, grad_norm)  # on the device: no host sync
            nonfinite.optimizer_step(opt, skip)
            if t.ema_warmup:  # tf.train.ExponentialMovingAverage's num_updates rule
                ema_rate.fill_(1.0 - min(t.ema, (1 + step) / (10 + step)))
            nonfinite.ema_update(ema_params, params, ema_rate, skip)
            step += 1
            bar.update(1)

            at_log = step % t.log_every == 0 or step == t.steps
            at_checkpoint = step % t.checkpoint_every == 0 or step == t.steps
            if at_log or at_checkpoint or guard.unread() >= _SCAN_EVERY:
                run, skipped = guard.read(step)
                if skipped:
                    log(
                        f"warning: skipped {len(skipped)} step(s) with a non-finite loss or "
                        f"gradient norm (steps {skipped[0]}–{skipped[-1]}; {guard.skipped} in "
                        "this run)"
                    )
                if run >= t.nonfinite_patience:
                    step = window_step = roll_back(
                        f"non-finite loss or gradient norm in {run} consecutive steps"
                    )
                    window_start = time.perf_counter()
                    continue
            if at_log:
                now = time.perf_counter()
                row = {
                    "step": step,
                    "loss": distributed.mean(w, guard.take_mean_loss(), device),
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
                    save_checkpoint()
                    distributed.barrier(w)  # a rollback on any rank reads complete files
                except checkpoint.NonFiniteError as e:
                    step = window_step = roll_back(str(e))
                    window_start = time.perf_counter()
                    continue
                initial = None
            if w.main and t.preview_every and (step % t.preview_every == 0 or step == t.steps):
                (run_dir / "previews").mkdir(exist_ok=True)
                ema.eval()
                preview(
                    ema,
                    sched,
                    data.shape,
                    t.preview_n,
                    t.seed,
                    run_dir / "previews" / f"step-{step:08d}.png",
                )
    finally:
        bar.close()
        metrics_file.close()
        if writer is not None:
            writer.close()
    if guard.skipped:
        log(f"{guard.skipped} steps skipped for non-finite values, {guard.rollbacks} rollbacks")
    return {"step": step, "run_dir": str(run_dir), "parameters": count_parameters(model)}


def _resume_point(cfg: config.Config, data: Dataset, ckpt_dir: Path, log, set_aside: bool = True):
    """The checkpoint to resume from (None for a new run); newer unusable ones are set aside
    (renamed ``*.corrupt``) when ``set_aside``."""
    files = checkpoint.list_checkpoints(ckpt_dir)
    skipped: list[str] = []
    found = checkpoint.latest(ckpt_dir, warn=skipped.append, check=train_state.check_meta)
    if files and found is None:
        raise NCSNError(
            f"{ckpt_dir}: none of its {len(files)} checkpoints is usable: move them away to "
            "start this run afresh" + "".join(f"\n  {w}" for w in skipped)
        )
    for w in skipped:
        log(w)
    if found is None:
        return None
    for _, p in files[[p for _, p in files].index(found[2]) + 1 :] if set_aside else []:
        p.replace(p.with_name(p.name + ".corrupt"))
        log(f"warning: set aside unusable checkpoint {p} as {p.name}.corrupt")
    train_state.check_compatible(cfg, found[1], data.shape, found[2])
    return found


def _needs_data(cfg: config.Config) -> bool:
    return cfg.schedule.sigma_max == "auto" or cfg.schedule.num_levels == "auto"
