"""``nl-lightning serve``: serve a model's versions over HTTP with LitServe until SIGINT / SIGTERM.

    NL_SERVE_ADMIN_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(32))') \
        nl-lightning serve --config configs/serve.yaml --model_dir runs/classifier

Binds 127.0.0.1 unless ``--host`` says otherwise. Endpoints: POST /predict, GET /health, /info,
/metrics, and (with the admin key) POST /admin/reload, POST /admin/rollback, GET /admin/versions.
See docs/serving.md.
"""

from __future__ import annotations

from dataclasses import fields

from jsonargparse import ActionConfigFile, ArgumentParser

from nl_lightning.serve.config import ServeConfig
from nl_lightning.commands.help import CommandHelpFormatter


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="nl-lightning serve", description=__doc__, formatter_class=CommandHelpFormatter)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_class_arguments(ServeConfig, None)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.instantiate_classes(parser.parse_args(argv))
    config = ServeConfig(**{f.name: args[f.name] for f in fields(ServeConfig)})
    from nl_lightning.serve.server import serve  # after parsing: --help stays fast

    return serve(config)
