"""Autoregressive sampling from a causal stack, with a fast whole-stack step for SaShiMi.

SaShiMi (arXiv 2202.09729) generates audio one sample at a time, so generation speed is the cost
of one whole-stack step, which at small widths is dominated by per-operation overhead rather than
arithmetic. ``SaShiMi.step`` (the reference) calls every layer's ``step``; ``FastStepper`` computes
the same function with far fewer operations:

- every SSM layer's step (S4 DPLR, S4D / S4-PTD diagonal, S5) is taken from its core's one
  ``step_form()`` (ssm/kernels/base.py ``StepForm``) and rewritten as ``y = psi(x) + d * u`` and
  ``x' = E x + sum_j psi_j(x) U_j + u V`` with a few real-linear functionals psi of the state
  (``forms``). The state-only parts (psi and the update)
  do not wait for the layer's input, so they run batched over all layers of a tier, outside the
  depth-sequential chain, and for S4/S4D/S4-PTD in chunks of T samples: one ``bmm`` gives
  Re(F E^j X0) for the whole chunk, each step adds the feedback of the chunk's earlier steps with
  m ``addcmul_``, and the state is written once per chunk (``banks.ChannelBank``). Only the per-channel
  ``d * u`` stays in the chain;
- on CPU, each tier's depth-sequential chain (layer norms, skip terms, activations, output
  linears, feed-forward blocks: about seven ATen calls per block) is one call of the compiled op
  ``ssm.ops.step.residual_chain``, and the S4/S4D/S4-PTD bank's chunk work is done by ``siso_bank_begin``
  / ``_end`` (``backend="auto"`` or ``"cpp"``); ``backend="torch"`` runs the PyTorch versions,
  which are the reference the compiled ones are tested against;
- states, pooling buffers, queues and logits are preallocated and updated in place;
- parameters are pre-transposed for ``addmm``; everything runs under ``torch.inference_mode``,
  on CPU with oneDNN switched off for the step (its per-call setup dominates small GELUs);
- optionally each tier's chain is ``torch.compile``-d (``compile=True``), and on CUDA the whole
  step of each of the prod(pool) phases is captured in a CUDA graph (``cuda_graph=True``) and
  replayed (one launch per sample).

Modules, one concept each: ``forms`` (the bank-ready step algebra from ``StepForm``), ``banks``
(stacked state banks), ``tiers`` (a run of blocks at one width: the chain over named per-block
plans), ``stepper`` (``FastStepper``, ``ReferenceStepper``, ``make_stepper``), ``sampling``
(``sample_token``, ``sample``).

``sample`` is the sampling loop (temperature, nucleus/top-p, prompt continuation) over either
stepper, and returns the exact log-likelihood of each sampled sequence under the model.
"""

from .sampling import sample, sample_token
from .stepper import FastStepper, ReferenceStepper, make_stepper

__all__ = ["FastStepper", "ReferenceStepper", "make_stepper", "sample", "sample_token"]
