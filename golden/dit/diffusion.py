"""Gaussian diffusion for the DiT: DDPM training loss and a deterministic DDIM sampler.

spec §7. The forward process is DDPM's (Ho et al., 2020) with the linear beta schedule from
1e-4 to 0.02 over 1000 steps that DiT uses; the model predicts the noise. Sampling is DDIM with
``eta = 0`` (Song et al., 2021) on 25 evenly spaced timesteps ``0, 40, ..., 960`` (DiT's
``"ddim25"`` respacing) with classifier-free guidance, the setting of the paper's evaluation
(25 timesteps). Given the seed, the sampler is deterministic: the only randomness is the initial
noise, drawn from a generator seeded per image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .model import DiT

__all__ = ["NUM_TRAIN_STEPS", "Schedule", "ddim_timesteps", "initial_noise", "ddim_sample"]

#: Diffusion steps of the training process.
NUM_TRAIN_STEPS = 1000


class Schedule:
    """Linear beta schedule and its cumulative products, in float64 for accuracy.

    Parameters
    ----------
    steps:
        Number of diffusion steps ``T``.
    """

    def __init__(self, steps: int = NUM_TRAIN_STEPS) -> None:
        betas = torch.linspace(1e-4 * 1000 / steps, 0.02 * 1000 / steps, steps, dtype=torch.float64)
        self.steps = steps
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Noise clean images ``x0`` to timesteps ``t``: ``sqrt(abar) x0 + sqrt(1 - abar) eps``."""
        abar = self.alphas_cumprod[t].float().view(-1, 1, 1, 1)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def loss(
        self, model: DiT, x0: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Simple DDPM loss: mean squared error of the predicted noise at uniform timesteps."""
        t = torch.randint(0, self.steps, (x0.shape[0],), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        out = model(self.q_sample(x0, t, noise), t, y)
        return torch.mean((out[:, : x0.shape[1]] - noise) ** 2)


def ddim_timesteps(num_steps: int = 25, train_steps: int = NUM_TRAIN_STEPS) -> list[int]:
    """Timesteps the sampler visits, from the noisiest down: ``[960, 920, ..., 0]`` for 25."""
    stride = train_steps // num_steps
    return list(range(0, train_steps, stride))[:num_steps][::-1]


def initial_noise(seeds: Sequence[int], shape: tuple[int, int, int]) -> torch.Tensor:
    """Starting noise ``[len(seeds), *shape]``; row ``i`` is drawn with the seed ``seeds[i]``.

    Drawing each row from its own seed makes an image depend only on its seed and label, not on
    the batch it was sampled in.
    """
    rows = [torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    return torch.stack(rows)


StepCallback = Callable[[int, int], None]


@torch.no_grad()
def ddim_sample(
    model: DiT,
    labels: Sequence[int],
    seeds: Sequence[int],
    guidance: float = 2.0,
    num_steps: int = 25,
    schedule: Schedule | None = None,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """Class-conditional DDIM sampling (``eta = 0``) with classifier-free guidance.

    Parameters
    ----------
    model:
        The noise-predicting DiT, in eval mode.
    labels, seeds:
        One class label and one noise seed per image.
    guidance:
        Classifier-free guidance scale; 1 is plain conditional sampling.
    num_steps:
        Sampler steps (25 in the paper's evaluation).
    schedule:
        The training schedule; the default is DiT's.
    on_step:
        Called as ``on_step(index, timestep)`` before each model evaluation; capture uses it to
        know which timestep the forward hooks are seeing.

    Returns
    -------
    torch.Tensor
        Images ``[batch, in_channels, size, size]`` clipped to ``[-1, 1]``.
    """
    if len(labels) != len(seeds):
        raise ValueError(f"{len(labels)} labels but {len(seeds)} seeds")
    schedule = schedule or Schedule()
    cfg = model.cfg
    x = initial_noise(seeds, (cfg.in_channels, cfg.input_size, cfg.input_size))
    y = torch.as_tensor(list(labels), dtype=torch.long)
    abar = schedule.alphas_cumprod
    steps = ddim_timesteps(num_steps, schedule.steps)
    for i, t in enumerate(steps):
        if on_step is not None:
            on_step(i, t)
        tt = torch.full((x.shape[0],), t, dtype=torch.long)
        eps = model.forward_with_cfg(x, tt, y, guidance).double()
        a_t = abar[t]
        last = i + 1 == len(steps)
        a_prev = torch.tensor(1.0, dtype=torch.float64) if last else abar[steps[i + 1]]
        xd = x.double()
        # Predict x0, clip it to the data range, and re-derive the noise from the clipped x0,
        # as guided-diffusion's ddim_sample does with clip_denoised=True.
        x0 = ((xd - (1 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-1, 1)
        eps = (xd - a_t.sqrt() * x0) / (1 - a_t).sqrt()
        x = (a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps).float()
    return x.clamp(-1, 1)
