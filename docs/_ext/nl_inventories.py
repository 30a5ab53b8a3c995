"""Intersphinx inventories written from the installed packages, so cross-links need no network.

No machine that builds these docs (a developer's, CI's) reaches the web, so the usual
``intersphinx_mapping = {"torch": ("https://.../", None)}`` would try to download ``objects.inv`` at
every build, wait for the time-out and warn — and ``-W`` turns that into a failure. Committing copies
of the sites' ``objects.inv`` files is no better: they would drift from the installed versions.

Instead, at the start of every build (``config-inited``) this extension imports each library the
docs link to, lists the public names of its documented modules (``__all__``, else the public
attributes) and their members, and writes a standard Sphinx inventory for each, mapping every name
to the URL of that library's own documentation page, built with the scheme the site uses for it
(``generated/<name>.html`` for PyTorch, ``api/<name>.html`` for Lightning, ...). The inventories go
to the build's doctree folder and are handed to ``sphinx.ext.intersphinx`` as local files, so
intersphinx works as usual, offline, and links follow the installed versions. A name listed under
its defining module too (``torch.nn.modules.module.Module`` for ``torch.nn.Module``, the form
autodoc writes in signatures and base classes) links to the same page.

LitServe has no API reference site; its names link to their source lines on GitHub at the installed
version's tag. A name that is not in the installed package gets no entry, so a reference to it
stays unresolved and ``nitpicky`` reports it.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import sys
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from nl_api import kind_of


@dataclass
class Site:
    """One library's documentation: where it lives and which modules it documents."""

    key: str
    distribution: str
    base_url: Callable[[str], str]  # installed version -> base URL
    modules: list[str]
    page: Callable[[str, str, Any], str | None]  # (documented name, module, object) -> URI relative to base
    aliases: dict[str, str] = field(default_factory=dict)  # defining path -> the path the site documents
    import_as: tuple[str, str] | None = None  # ("lightning", "L"): names of that module also as L.<name>


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _torch_page(name: str, module: str, obj: Any) -> str | None:
    special = {"torch.Tensor": "tensors.html", "torch.dtype": "tensor_attributes.html",
               "torch.device": "tensor_attributes.html", "torch.layout": "tensor_attributes.html",
               "torch.memory_format": "tensor_attributes.html", "torch.Size": "size.html"}
    top = name.rsplit(".", 1)[0] if name.count(".") > 1 and name.rsplit(".", 1)[0] in special else name
    if top in special:
        return f"{special[top]}#{name}"
    if inspect.ismodule(obj):
        return None
    owner = name if not _is_member(name, module) else name.rsplit(".", 1)[0]
    return f"generated/{owner}.html#{name}"


def _lightning_page(name: str, module: str, obj: Any) -> str | None:
    owner = name.rsplit(".", 1)[0] if _is_member(name, module) else name
    if module.startswith("lightning.pytorch.loggers") and not _is_member(name, module):
        defined = getattr(obj, "__module__", module)
        return f"api/{defined}.html#{defined}.{name.rsplit('.', 1)[1]}"
    return f"api/{owner}.html#{name}"


def _optuna_page(name: str, module: str, obj: Any) -> str | None:
    owner = name.rsplit(".", 1)[0] if _is_member(name, module) else name
    return f"reference/generated/{owner}.html#{name}"


def _mlflow_page(name: str, module: str, obj: Any) -> str | None:
    return f"{module}.html#{name}"


def _numpy_page(name: str, module: str, obj: Any) -> str | None:
    if module == "numpy.typing":
        return f"reference/typing.html#{name}"
    owner = name.rsplit(".", 1)[0] if _is_member(name, module) else name
    return f"reference/generated/{owner}.html#{name}"


def _python_page(name: str, module: str, obj: Any) -> str | None:
    if module != "builtins":
        return f"library/{module}.html#{name}"
    bare = name.split(".")[0]
    value = getattr(builtins, bare, None)
    if isinstance(value, type) and issubclass(value, BaseException):
        return f"library/exceptions.html#{name}"
    if bare in ("None", "True", "False", "Ellipsis", "NotImplemented"):
        return f"library/constants.html#{name}"
    if bare in ("str", "list", "dict", "tuple", "set", "frozenset", "bytes", "bytearray", "memoryview", "range"):
        return f"library/stdtypes.html#{name}"
    return f"library/functions.html#{name}"


def _litserve_page(name: str, module: str, obj: Any) -> str | None:
    try:
        source = Path(inspect.getsourcefile(obj) or "")
        line = inspect.getsourcelines(obj)[1]
    except (TypeError, OSError):
        return None
    parts = source.parts
    if "litserve" not in parts:
        return None
    relative = "/".join(parts[len(parts) - parts[::-1].index("litserve") - 1:])
    return f"src/{relative}#L{line}"


def _is_member(name: str, module: str) -> bool:
    """``module.Class.member`` rather than ``module.name``."""
    return name.count(".") > module.count(".") + 1 if module != "builtins" else "." in name


SITES = [
    Site("python", "", lambda v: f"https://docs.python.org/{v}/", [
        "builtins", "abc", "argparse", "collections", "collections.abc", "concurrent.futures", "contextlib",
        "dataclasses", "datetime", "enum", "functools", "io", "itertools", "json", "logging", "multiprocessing",
        "numbers", "os", "os.path", "pathlib", "queue", "re", "socket", "subprocess", "tempfile", "threading",
        "types", "typing", "uuid", "warnings",
    ], _python_page),
    Site("numpy", "numpy", lambda v: f"https://numpy.org/doc/{_minor(v)}/", ["numpy", "numpy.typing"], _numpy_page),
    Site("torch", "torch", lambda v: f"https://docs.pytorch.org/docs/{_minor(v)}/", [
        "torch", "torch.nn", "torch.nn.functional", "torch.optim", "torch.optim.lr_scheduler", "torch.utils.data",
        "torch.export", "torch.onnx", "torch.amp", "torch.autograd", "torch.distributed",
        "torch.distributed.checkpoint", "torch.distributed.fsdp", "torch.nn.utils.prune", "torch.jit",
        "torch.testing",
    ], _torch_page),
    Site("lightning", "lightning", lambda v: "https://lightning.ai/docs/pytorch/stable/", [
        "lightning", "lightning.pytorch", "lightning.pytorch.callbacks", "lightning.pytorch.loggers",
        "lightning.pytorch.strategies", "lightning.pytorch.plugins", "lightning.pytorch.plugins.io",
        "lightning.pytorch.tuner", "lightning.pytorch.cli", "lightning.pytorch.core", "lightning.pytorch.utilities",
    ], _lightning_page, aliases={
        "lightning.pytorch.core.module.LightningModule": "lightning.pytorch.core.LightningModule",
        "lightning.pytorch.core.datamodule.LightningDataModule": "lightning.pytorch.core.LightningDataModule",
        "lightning.pytorch.callbacks.callback.Callback": "lightning.pytorch.callbacks.Callback",
        "lightning.pytorch.trainer.trainer.Trainer": "lightning.pytorch.trainer.trainer.Trainer",
        "lightning.pytorch.tuner.tuning.Tuner": "lightning.pytorch.tuner.tuning.Tuner",
    }, import_as=("lightning", "L")),  # `import lightning as L`: string annotations say L.LightningModule
    Site("optuna", "optuna", lambda v: f"https://optuna.readthedocs.io/en/v{v}/", [
        "optuna", "optuna.study", "optuna.trial", "optuna.samplers", "optuna.pruners", "optuna.storages",
        "optuna.distributions", "optuna.exceptions", "optuna.importance", "optuna.visualization",
        "optuna.visualization.matplotlib",
    ], _optuna_page, aliases={
        f"optuna.study.study.{f}": f"optuna.{f}" for f in ("create_study", "load_study", "delete_study", "copy_study")
    }),
    Site("litserve", "litserve", lambda v: f"https://github.com/Lightning-AI/LitServe/blob/v{v}/", [
        "litserve", "litserve.specs", "litserve.callbacks",
    ], _litserve_page),
    Site("mlflow", "mlflow", lambda v: "https://mlflow.org/docs/latest/api_reference/python_api/", [
        "mlflow", "mlflow.client", "mlflow.tracking", "mlflow.pyfunc", "mlflow.pytorch", "mlflow.onnx",
        "mlflow.models", "mlflow.entities",
    ], _mlflow_page, aliases={"mlflow.tracking.client.MlflowClient": "mlflow.client.MlflowClient"}),
]


def _public(module: Any) -> list[str]:
    """``__all__`` and the other public names that belong to the same library (not its imports of
    other libraries; torch's functions implemented in ``torch._C`` count as torch's, ``os.PathLike``
    as ``os``'s although ``os.__all__`` leaves it out)."""
    names = [n for n in getattr(module, "__all__", ()) if isinstance(n, str)]
    top = module.__name__.split(".")[0]
    names += [n for n, v in vars(module).items() if not n.startswith("_") and not inspect.ismodule(v)
              and (getattr(v, "__module__", None) or top).split(".")[0] == top and n not in names]
    return names


def _role(obj: Any) -> str:
    return f"py:{kind_of(obj)}"


def _member_role(value: Any) -> str:
    if isinstance(value, property):
        return "py:property"
    if inspect.isroutine(value) or isinstance(value, (staticmethod, classmethod)):
        return "py:method"
    return "py:attribute"


def collect(site: Site) -> dict[tuple[str, str], str]:
    """{(name, role): uri} for every public name of the site's modules, their members and aliases."""
    exported: list[tuple[str, str, Any]] = []  # (module, name, obj)
    for module_name in site.modules:
        module = importlib.import_module(module_name)
        for name in _public(module):
            try:
                exported.append((module_name, name, getattr(module, name)))
            except Exception:  # a lazy attribute that fails to import: not documented here either
                continue
    homes: dict[int, tuple[str, str]] = {}
    for module_name, name, obj in exported:  # a class or function: the exporting module closest to its definition
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue  # values (None, 0, 'x') are shared by unrelated names: each is documented where it is
        best = homes.get(id(obj))
        if best is None or _depth(module_name, obj) > _depth(best[0], obj):
            homes[id(obj)] = (module_name, name)
    entries: dict[tuple[str, str], str] = {}
    for module_name, name, obj in exported:
        home_module, home_name = homes.get(id(obj), (module_name, name))
        defined = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', name)}"
        if defined in site.aliases:
            home_module, home_name = site.aliases[defined].rsplit(".", 1)
        documented = home_name if home_module == "builtins" else f"{home_module}.{home_name}"
        uri = site.page(documented, home_module, obj)
        if uri is None:
            continue
        names = {name if module_name == "builtins" else f"{module_name}.{name}", documented}
        if site.import_as and module_name == site.import_as[0]:
            names.add(f"{site.import_as[1]}.{name}")
        if inspect.isclass(obj) or inspect.isroutine(obj):
            names.add(defined)
        for alias in names:
            entries[alias, _role(obj)] = uri
        if inspect.isclass(obj):
            _add_members(site, obj, documented, home_module, names, entries)
    return entries


def _add_members(site: Site, cls: type, documented: str, module: str, names: set[str],
                 entries: dict[tuple[str, str], str]) -> None:
    for member, value in vars(cls).items():
        if member.startswith("_"):
            continue
        try:
            target = site.page(f"{documented}.{member}", module, value)
        except Exception:  # a descriptor that cannot be inspected: no link for it
            continue
        if target is None:
            continue
        for owner in names:
            entries[f"{owner}.{member}", _member_role(value)] = target


def _depth(module_name: str, obj: Any) -> tuple[int, int]:
    defined = getattr(obj, "__module__", None) or ""
    return (int(defined == module_name or defined.startswith(module_name + ".")), module_name.count("."))


def write_inventory(path: Path, project: str, version: str, entries: dict[tuple[str, str], str]) -> Path:
    """The ``objects.inv`` format (version 2) that intersphinx reads."""
    lines = [f"{name} {role} 1 {uri} -\n" for (name, role), uri in sorted(entries.items()) if " " not in name]
    header = (f"# Sphinx inventory version 2\n# Project: {project}\n# Version: {version}\n"
              "# The remainder of this file is compressed using zlib.\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header.encode() + zlib.compress("".join(lines).encode(), 9))
    return path


def version_of(site: Site) -> str:
    if not site.distribution:
        return f"{sys.version_info.major}.{sys.version_info.minor}"
    return metadata.version(site.distribution).split("+")[0]


def build_mapping(folder: Path) -> dict[str, tuple[str, str]]:
    """Write one inventory per site into ``folder``; the ``intersphinx_mapping`` that reads them."""
    mapping = {}
    for site in SITES:
        version = version_of(site)
        with warnings.catch_warnings():  # touching deprecated aliases (torch.distributed.reduce_op) warns
            warnings.simplefilter("ignore")
            entries = collect(site)
        path = write_inventory(folder / f"{site.key}.inv", site.key, version, entries)
        mapping[site.key] = (site.base_url(version), str(path))
    return mapping


def _on_config_inited(app: Any, config: Any) -> None:
    config.intersphinx_mapping = build_mapping(Path(app.doctreedir) / "inventories")


def setup(app: Any) -> dict[str, Any]:
    app.setup_extension("sphinx.ext.intersphinx")
    # Before intersphinx normalizes the mapping (its own config-inited handler, priority 800).
    app.connect("config-inited", _on_config_inited, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
