"""ncsn: score-based generative modeling with Noise Conditional Score Networks.

    import ncsn
    run = ncsn.load("runs/digits")                       # a trained run (EMA weights)
    x = run.sample(16, sampler="ode", steps=10, seed=0)  # images in [0, 1]
    run = ncsn.train("digits", train={"steps": 200}, run_dir="runs/quick")
    ncsn.evaluate(x, reference, extractor="classifier:clf.safetensors")

The names below are the public API: ``load``/``Run``/``train``/``evaluate`` (:mod:`ncsn.api`);
the samplers, which share one signature ``sampler(model, shape, sigmas, *, generator,
callback=None, **options)`` (``annealed_langevin``, ``langevin``, ``pc_sampler``,
``heun_sampler``, ``restart_sampler``, ``ipndm_sampler``, ``dpmpp_2m_sampler``,
``dpmpp_2m_sde_sampler``, ``unipc_sampler``; ``sample`` and ``draw`` run any of them by name on
a run's schedule, with ``labels``/``guidance`` for class-conditional runs); ``Run.likelihood``
(log p and bits/dim through the probability-flow ODE, :mod:`ncsn.likelihood`); the σ ladders
(``geometric_sigmas``, ``karras_sigmas``) and ``Schedule``; ``ScoreModel`` with ``score(x, σ)``
and ``denoise(x, σ)``; ``Config`` and ``load_config``; ``NCSNError``.
Conventions (σ ordering, the ε convention, data range) are in docs/conventions.md.
"""

from ncsn.api import Run, evaluate, load, train
from ncsn.config import Config
from ncsn.config import load as load_config
from ncsn.errors import NCSNError
from ncsn.model import ScoreModel
from ncsn.samplers.langevin import annealed_langevin, langevin
from ncsn.samplers.multistep import dpmpp_2m_sampler, dpmpp_2m_sde_sampler, ipndm_sampler
from ncsn.samplers.ode import heun_sampler
from ncsn.samplers.pc import pc_sampler
from ncsn.samplers.restart import restart_sampler
from ncsn.samplers.run import SAMPLERS, draw, sample
from ncsn.samplers.unipc import unipc_sampler
from ncsn.schedule import Schedule, geometric_sigmas, karras_sigmas

__all__ = [
    "SAMPLERS",
    "Config",
    "NCSNError",
    "Run",
    "Schedule",
    "ScoreModel",
    "annealed_langevin",
    "dpmpp_2m_sampler",
    "dpmpp_2m_sde_sampler",
    "draw",
    "evaluate",
    "geometric_sigmas",
    "heun_sampler",
    "ipndm_sampler",
    "karras_sigmas",
    "langevin",
    "load",
    "load_config",
    "pc_sampler",
    "restart_sampler",
    "sample",
    "train",
    "unipc_sampler",
]
