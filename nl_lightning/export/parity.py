"""Parity of an exported model against eager PyTorch, with a stated tolerance that raises when exceeded.

fp32 artifacts: ``torch.testing``'s criterion, every element within ``atol + rtol * |ref|``, at a
grid of (batch, seq) shapes. INT8 artifacts cannot meet an elementwise bound that means anything
on every input, so they are judged as a user sees them: on real batches, the share of top-1
predictions that agree with eager, and the RMS error relative to the spread of the logits
(``check_agreement``). On the shape grid they must only run and stay finite.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from nl_lightning.errors import ConfigError, NLUserError

Runner = Callable[[Tensor], Tensor]


class ParityError(NLUserError, AssertionError):
    """An exported model disagrees with eager beyond the stated tolerance."""


@dataclass
class Tolerance:
    """Elementwise bound of an fp32 artifact against eager: ``|out - ref| <= atol + rtol * |ref|``."""

    atol: float = 1e-4
    rtol: float = 1e-3
    relative: bool = False
    """Scale ``atol`` by ``max |reference|`` (for INT8 / FP16 artifacts)."""

    def __post_init__(self) -> None:
        if self.atol < 0 or self.rtol < 0:
            raise ConfigError(f"Tolerance atol={self.atol} and rtol={self.rtol} must be >= 0.")


@dataclass
class AgreementTolerance:
    """What an INT8 artifact must reach on real batches."""

    min_agreement: float = 95.0
    """Percent of top-1 predictions (argmax over the last axis) equal to eager's."""
    max_relative_error: float = 0.2
    """Bound on RMS(out - ref) / RMS(ref - its mean over the last axis)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_agreement <= 100.0:
            raise ConfigError(f"min_agreement={self.min_agreement} is a percentage: use a value in [0, 100].")
        if self.max_relative_error <= 0:
            raise ConfigError(f"max_relative_error={self.max_relative_error} must be > 0 (e.g. 0.2).")


def compare(reference: Tensor, output: Tensor, tol: Tolerance | None) -> dict[str, float | bool | None]:
    """Errors of ``output`` against ``reference`` and whether they are within ``tol``
    (``None``: record only; ``ok`` means finite)."""
    ref, out = reference.detach().float().cpu(), output.detach().float().cpu()
    if ref.shape != out.shape:
        raise ParityError(f"Output shape {tuple(out.shape)} differs from eager {tuple(ref.shape)}.")
    diff = (out - ref).abs()
    finite = bool(torch.isfinite(out).all())
    atol = None if tol is None else tol.atol * float(ref.abs().max()) if tol.relative else tol.atol
    within = tol is None or float((diff - (atol + tol.rtol * ref.abs())).max()) <= 0
    return {
        "max_abs_err": float(diff.max()),
        "mean_abs_err": float(diff.mean()),
        "max_rel_err": float((diff / ref.abs().clamp_min(1e-6)).max()),
        "atol_used": atol,
        "ok": within and finite,
    }


def check_agreement(
    reference: Runner, candidate: Runner, inputs: Sequence[Tensor], tol: AgreementTolerance, data: str = "validation",
) -> dict[str, object]:
    """Top-1 agreement (percent) and relative RMS error of ``candidate`` against ``reference``.

    ``data`` names where ``inputs`` came from; only real data (anything but ``"random"``) is held
    to ``min_agreement``: on random inputs near-tied logits flip for no reason a user would see.
    A single output (regression) has no top-1, and is judged by the error alone.
    """
    same = total = 0
    err2 = spread2 = 0.0
    finite = True
    with torch.inference_mode():
        for x in inputs:
            ref, out = reference(x).detach().float().cpu(), candidate(x).detach().float().cpu()
            if ref.shape != out.shape:
                raise ParityError(f"Output shape {tuple(out.shape)} differs from eager {tuple(ref.shape)}.")
            finite = finite and bool(torch.isfinite(out).all())
            same += int((out.argmax(-1) == ref.argmax(-1)).sum())
            total += ref[..., 0].numel()
            err2 += float(((out - ref) ** 2).sum())
            centered = ref - ref.mean(-1, keepdim=True) if ref.size(-1) > 1 else ref  # softmax ignores a shift
            spread2 += float((centered**2).sum())
    if total == 0:
        raise ConfigError("check_agreement() got no inputs; pass at least one batch.")
    classes = ref.size(-1)
    agreement = 100.0 * same / total if classes > 1 else None
    relative_error = (err2 / spread2) ** 0.5 if spread2 > 0 else float(err2 > 0)
    held = data != "random" and agreement is not None
    ok = finite and relative_error <= tol.max_relative_error and (not held or agreement >= tol.min_agreement)
    return {
        "data": data, "batches": len(inputs), "predictions": total, "top1_agreement": agreement,
        "relative_error": relative_error, "agreement_checked": held, "ok": ok,
    }


def check_parity(
    reference: Runner, candidate: Runner, inputs: Sequence[Tensor], tol: Tolerance | None, name: str = "export",
    strict: bool = True,
) -> list[dict[str, object]]:
    """Run both on every input; one record per input. Raises ``ParityError`` if any fails and ``strict``.

    ``tol=None`` records the errors and only requires a finite output of the right shape."""
    records = []
    with torch.inference_mode():
        for x in inputs:
            record = {"batch_size": x.size(0), "seq_len": x.size(1), **compare(reference(x), candidate(x), tol)}
            records.append(record)
    failed = [r for r in records if not r["ok"]]
    if failed and strict:
        worst = max(failed, key=lambda r: r["max_abs_err"])
        if tol is None:
            raise ParityError(
                f"{name} gives non-finite outputs at batch {worst['batch_size']}, seq {worst['seq_len']}."
            )
        raise ParityError(
            f"{name} disagrees with eager PyTorch: max |diff| = {worst['max_abs_err']:.3g} at batch "
            f"{worst['batch_size']}, seq {worst['seq_len']}, beyond atol={worst['atol_used']:.3g} + "
            f"rtol={tol.rtol:g}*|ref|. The artifact is not faithful: check the export, or loosen the "
            "tolerance if this loss of precision is expected (e.g. INT8)."
        )
    return records


def parity_inputs(
    make: Callable[[int, int], Tensor], batch_sizes: Sequence[int], seq_lens: Sequence[int],
) -> list[Tensor]:
    """One input per (batch, seq) pair: the grid the parity check covers."""
    return [make(b, t) for b in batch_sizes for t in seq_lens]
