"""Parity of an exported model against eager PyTorch, with a stated tolerance that raises when exceeded.

The criterion is ``torch.testing``'s: every element must satisfy ``|out - ref| <= atol + rtol * |ref|``.
For quantized models ``relative=True`` scales ``atol`` by the largest reference logit, so one
setting ("within 10% of the logit range") works for models of any output scale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

Runner = Callable[[Tensor], Tensor]


class ParityError(AssertionError):
    """An exported model disagrees with eager beyond the stated tolerance."""


@dataclass
class Tolerance:
    atol: float = 1e-4
    rtol: float = 1e-3
    relative: bool = False
    """Scale ``atol`` by max |reference| (for INT8 / FP16 artifacts)."""

    def __post_init__(self) -> None:
        if self.atol < 0 or self.rtol < 0:
            raise ValueError(f"Tolerance atol={self.atol} and rtol={self.rtol} must be >= 0.")


def compare(reference: Tensor, output: Tensor, tol: Tolerance) -> dict[str, float | bool]:
    """Errors of ``output`` against ``reference`` and whether they are within ``tol``."""
    ref, out = reference.detach().float().cpu(), output.detach().float().cpu()
    if ref.shape != out.shape:
        raise ParityError(f"Output shape {tuple(out.shape)} differs from eager {tuple(ref.shape)}.")
    diff = (out - ref).abs()
    atol = tol.atol * float(ref.abs().max()) if tol.relative else tol.atol
    excess = float((diff - (atol + tol.rtol * ref.abs())).max())
    return {
        "max_abs_err": float(diff.max()),
        "mean_abs_err": float(diff.mean()),
        "max_rel_err": float((diff / ref.abs().clamp_min(1e-6)).max()),
        "atol_used": atol,
        "ok": excess <= 0 and bool(torch.isfinite(out).all()),
    }


def check_parity(
    reference: Runner, candidate: Runner, inputs: Sequence[Tensor], tol: Tolerance, name: str = "export",
    strict: bool = True,
) -> list[dict[str, object]]:
    """Run both on every input; one record per input. Raises ``ParityError`` if any fails and ``strict``."""
    records = []
    with torch.inference_mode():
        for x in inputs:
            record = {"batch_size": x.size(0), "seq_len": x.size(1), **compare(reference(x), candidate(x), tol)}
            records.append(record)
    failed = [r for r in records if not r["ok"]]
    if failed and strict:
        worst = max(failed, key=lambda r: r["max_abs_err"])
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
