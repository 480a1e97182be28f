"""The training loop: Adam, EMA, gradient clipping, checkpoints, previews, logs, resume.

Read top to bottom: set up (data, schedule, model, optimizer), restore the latest checkpoint if
there is one, then loop: batch → loss → step → EMA → log / checkpoint / preview.

Run directory layout: ``config.yaml`` (resolved), ``schedule.json``, ``checkpoints/``,
``previews/``, ``metrics.csv`` and ``tb/`` (TensorBoard, when installed).
"""

from __future__ import annotations

import copy
import csv
import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ncsn import checkpoint, config, schedule
from ncsn.data import load_dataset
from ncsn.errors import NCSNError
from ncsn.model import ScoreModel, build_model, count_parameters
from ncsn.objectives import dsm_loss, ssm_loss
from ncsn.samplers.langevin import annealed_langevin
from ncsn.viz import save_grid, save_scatter

CSV_FIELDS = ["step", "loss", "lr", "grad_norm", "steps_per_s", "elapsed_s"]


def resolve_device(name: str) -> torch.device:
    """'auto' → CUDA if available, else MPS, else CPU; anything else as given."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise NCSNError(
            f"train.device = {name!r}: expected auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NCSNError(f"train.device = {name!r}: CUDA is not available on this machine")
    return device


def _state(model, ema, opt, data_gen, noise_gen) -> tuple[dict, dict]:
    """All training state as (tensors, JSON-able metadata)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors |= {f"ema.{k}": v for k, v in ema.state_dict().items()}
    opt_state = opt.state_dict()
    for i, s in opt_state["state"].items():
        tensors |= {f"optim.{i}.{k}": torch.as_tensor(v) for k, v in s.items()}
    tensors["rng.data"] = data_gen.get_state()
    tensors["rng.noise"] = noise_gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    return tensors, {"param_groups": opt_state["param_groups"]}


def _restore(tensors, meta, model, ema, opt, data_gen, noise_gen) -> None:
    def part(prefix: str) -> dict:
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    model.load_state_dict(part("model."))
    ema.load_state_dict(part("ema."))
    state: dict[int, dict] = {}
    for k, v in part("optim.").items():
        i, name = k.split(".", 1)
        state.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    data_gen.set_state(tensors["rng.data"])
    noise_gen.set_state(tensors["rng.noise"])
    torch.set_rng_state(tensors["rng.torch"])


def _check_compatible(cfg: config.Config, meta: dict, path: Path) -> None:
    """Resuming needs the same data, model and schedule settings as the checkpoint."""
    saved = meta["config"]
    now = config.to_dict(cfg)
    diffs = [
        f"{section}.{k}: checkpoint {saved[section].get(k)!r}, config {v!r}"
        for section in ("data", "model", "schedule")
        for k, v in now[section].items()
        if saved[section].get(k) != v
    ]
    if diffs:
        raise NCSNError(
            f"{path}: checkpoint was trained with a different config ("
            + "; ".join(diffs)
            + "); use a new run_dir or restore those settings"
        )


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
    run_dir = Path(cfg.run_dir)
    ckpt_dir = run_dir / "checkpoints"
    device = resolve_device(t.device)
    if t.deterministic:
        torch.use_deterministic_algorithms(True)

    data = load_dataset(cfg.data, seed=t.seed)
    if t.batch_size > len(data):
        raise NCSNError(
            f"train.batch_size = {t.batch_size}: larger than the data set ({len(data)} examples)"
        )
    found = checkpoint.latest(ckpt_dir, warn=log)
    if found is not None:
        _check_compatible(cfg, found[1], found[2])
        sched = schedule.Schedule(**found[1]["schedule"])
    else:
        sched = schedule.resolve(cfg.schedule, data.as_float() if _needs_data(cfg) else None)

    torch.manual_seed(t.seed)
    model = build_model(cfg.model, data.shape).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(
        model.parameters(),
        lr=t.lr,
        betas=(t.beta1, t.beta2),
        weight_decay=t.weight_decay,
    )
    data_gen = torch.Generator().manual_seed(t.seed + 1)
    noise_gen = torch.Generator(device).manual_seed(t.seed + 2)
    step = 0
    if found is not None:
        _restore(found[0], found[1], model, ema, opt, data_gen, noise_gen)
        step = found[1]["step"]
        log(f"resumed from {found[2]} at step {step}")

    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(cfg, run_dir / "config.yaml")
    checkpoint.atomic_write_bytes(
        run_dir / "schedule.json", json.dumps(sched.to_dict(), indent=1).encode()
    )
    log(f"data: {data.name}, {len(data)} examples of shape {data.shape}")
    log(f"model: {cfg.model.net}, {count_parameters(model):,} parameters, device {device}")
    log(sched.describe())
    metrics_file = _open_metrics(run_dir / "metrics.csv", step)
    writer = _tensorboard(run_dir / "tb")

    sigmas = sched.tensor(device)
    loss_fn = dsm_loss if t.objective == "dsm" else ssm_loss
    loss_kwargs = {"power": t.loss_power}
    if t.objective == "ssm":
        loss_kwargs["projections"] = t.ssm_projections
    params = [p for p in model.parameters()]
    ema_params = [p for p in ema.parameters()]

    def save_checkpoint() -> None:
        tensors, extra = _state(model, ema, opt, data_gen, noise_gen)
        meta = {
            "step": step,
            "config": config.to_dict(cfg),
            "schedule": sched.to_dict(),
            "data_shape": list(data.shape),
            "data_name": data.name,
            "parameters": count_parameters(model),
        } | extra
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.save(checkpoint.path_for(ckpt_dir, step), tensors, meta)
        checkpoint.prune(ckpt_dir, t.keep_last)

    bar = tqdm(total=t.steps, initial=step, disable=not progress, unit="step", dynamic_ncols=True)
    loss_sum = torch.zeros((), device=device)
    grad_norm = torch.zeros((), device=device)
    window_start, window_step, start_time = time.perf_counter(), step, time.perf_counter()
    model.train()
    while step < t.steps:
        index = torch.randint(len(data), (t.batch_size,), generator=data_gen)
        x = data.batch(
            index, generator=data_gen, dequantize=cfg.data.dequantize, hflip=cfg.data.hflip
        )
        x = x.to(device, non_blocking=True)
        lr = t.lr * min(1.0, (step + 1) / t.warmup) if t.warmup else t.lr
        for group in opt.param_groups:
            group["lr"] = lr
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16"):
            loss = loss_fn(model, x, sigmas, generator=noise_gen, **loss_kwargs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if t.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1.0 - t.ema)
        loss_sum += loss.detach()
        step += 1
        bar.update(1)

        if step % t.log_every == 0 or step == t.steps:
            now = time.perf_counter()
            row = {
                "step": step,
                "loss": loss_sum.item() / (step - window_step),
                "lr": lr,
                "grad_norm": float(grad_norm),
                "steps_per_s": (step - window_step) / (now - window_start),
                "elapsed_s": now - start_time,
            }
            _write_row(metrics_file, row, writer)
            bar.set_postfix(loss=f"{row['loss']:.4g}")
            loss_sum.zero_()
            window_start, window_step = now, step
        if step % t.checkpoint_every == 0 or step == t.steps:
            save_checkpoint()
        if t.preview_every and (step % t.preview_every == 0 or step == t.steps):
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
    bar.close()
    metrics_file.close()
    if writer is not None:
        writer.close()
    return {"step": step, "run_dir": str(run_dir), "parameters": count_parameters(model)}


def _needs_data(cfg: config.Config) -> bool:
    return cfg.schedule.sigma_max == "auto" or cfg.schedule.num_levels == "auto"


def _open_metrics(path: Path, step: int):
    """metrics.csv, with rows past ``step`` (lost with an unsaved crash) dropped on resume."""
    rows = []
    if path.exists() and step > 0:
        with open(path, newline="") as f:
            rows = [
                r
                for r in csv.DictReader(f)
                if r.get("step", "").isdigit() and int(r["step"]) <= step
            ]
    f = open(path, "w", newline="")
    writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    f.flush()
    return f


def _write_row(f, row: dict, tb) -> None:
    csv.DictWriter(f, fieldnames=CSV_FIELDS).writerow(row)
    f.flush()
    if tb is not None:
        for k in ("loss", "lr", "grad_norm", "steps_per_s"):
            tb.add_scalar(f"train/{k}", row[k], row["step"])


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))


def load_run(
    run_dir: str | Path, *, ema: bool = True, device: str | torch.device = "cpu", log=print
):
    """Model (EMA weights by default), schedule, config and metadata of the latest checkpoint."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise NCSNError(f"{run_dir}: run directory not found")
    found = checkpoint.latest(run_dir / "checkpoints", warn=log)
    if found is None:
        raise NCSNError(f"{run_dir}: no usable checkpoint in {run_dir / 'checkpoints'}")
    tensors, meta, path = found
    cfg = config.from_dict(meta["config"], source=str(path))
    model = build_model(cfg.model, tuple(meta["data_shape"]))
    prefix = "ema." if ema else "model."
    weights = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise NCSNError(
            f"{path}: weights do not fit the model its config describes ({e})"
        ) from None
    model.to(device).eval()
    return model, schedule.Schedule(**meta["schedule"]), cfg, meta | {"path": str(path)}
