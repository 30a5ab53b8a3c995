"""One ordinary checkpoint file from a sharded ``torch.distributed.checkpoint`` folder.

``ModelParallelStrategy`` (FSDP2) saves ``last.ckpt`` as a folder: tensor shards, a pickled
``.metadata`` and Lightning's ``meta.pt`` (hyperparameters, loops, callbacks). Lightning's own
``consolidate_checkpoint`` script reads ``FSDPStrategy`` folders only. Reading ``.metadata``
unpickles it, so this is only for folders you wrote yourself; the result is a plain checkpoint
that ``load_checkpoint`` / ``--ckpt_path`` read with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from nl_lightning._io import atomic_output
from nl_lightning.models.checkpoint import CheckpointError


def consolidate_dcp(folder: str | Path, output: str | Path) -> Path:
    """Gather every shard of ``folder`` into ``output`` (written atomically); returns ``output``."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    folder, output = Path(folder), Path(output)
    if not (folder / ".metadata").is_file():
        raise CheckpointError(f"{folder} is not a sharded torch.distributed.checkpoint folder (no .metadata).")
    meta_path = folder / "meta.pt"
    meta = torch.load(meta_path, weights_only=True) if meta_path.is_file() else {}  # plain data: safe
    with atomic_output(output) as tmp:
        dcp_to_torch_save(folder, tmp)
        shards = torch.load(tmp, weights_only=True)
        state = shards.get("state_dict", shards.get("model", shards))
        torch.save({**meta, **{k: v for k, v in shards.items() if k not in ("state_dict", "model")},
                    "state_dict": state}, tmp)
    return output
