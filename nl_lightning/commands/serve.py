"""``nl-lightning serve``: serve a model's versions over HTTP with LitServe until SIGINT / SIGTERM.

    NL_SERVE_ADMIN_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(32))') \
        nl-lightning serve --config configs/serve.yaml --model_dir runs/classifier

Binds 127.0.0.1 unless ``--host`` says otherwise. Endpoints: POST /predict, POST /batch_predict
(classifiers, regressors), POST /v1/completions, /v1/chat/completions, GET /v1/models (LMs), GET
/health, /info, /metrics, /docs, and (with the admin key) POST /admin/reload, POST /admin/rollback,
GET /admin/versions. See docs/serving.md.
"""

from __future__ import annotations

from dataclasses import fields

from jsonargparse import ActionConfigFile, ArgumentError, ArgumentParser

from nl_lightning.errors import ConfigError, parse_error_summary

from nl_lightning.serve.config import ServeConfig
from nl_lightning.commands.help import CommandHelpFormatter


def build_parser() -> ArgumentParser:
    # exit_on_error=False: a bad argument raises, and `nl-lightning` prints it as one line (not the usage)
    parser = ArgumentParser(prog="nl-lightning serve", description=__doc__, formatter_class=CommandHelpFormatter,
                            exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_class_arguments(ServeConfig, None)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.instantiate_classes(parser.parse_args(argv))
    except ArgumentError as err:
        raise ConfigError(f"{parse_error_summary(str(err))} (see nl-lightning serve --help)") from None
    config = ServeConfig(**{f.name: args[f.name] for f in fields(ServeConfig)})
    from nl_lightning.serve.server import serve  # after parsing: --help stays fast

    return serve(config)
