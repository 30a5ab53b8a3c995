"""Messages from the libraries we build on that tell an nl_lightning user nothing they can act on,
each silenced where it comes from, by its exact text (never a blanket filter; never ours).

- torch >= 2.10 deprecates ``LeafSpec``; Lightning 2.6 still builds one per batch
  (``lightning/pytorch/utilities/_pytree.py``) and torch's own ``copy`` of a tree spec re-creates
  one: a ``FutureWarning`` on every fit and export that only a Lightning release can fix.
- Lightning's "💡 Tip: ... try installing litlogger / litmodels" lines (advertising, at INFO).
"""

from __future__ import annotations

import logging
import warnings

__all__ = ["quiet_third_party"]

_LEAFSPEC = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
_TIP = "💡 Tip:"


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_TIP)


_DROP_TIPS = _DropTips()


def quiet_third_party() -> None:
    """Install the filters above (idempotent); called by ``nl-lightning`` and by tune's trial processes."""
    warnings.filterwarnings("ignore", message=_LEAFSPEC, category=FutureWarning)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _DROP_TIPS not in logger.filters:
            logger.addFilter(_DROP_TIPS)
