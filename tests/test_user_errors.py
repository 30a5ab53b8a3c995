"""nl_lightning.errors: user errors found even where a library re-raised them without their cause."""

from __future__ import annotations


def test_a_user_error_jsonargparse_quotes_without_chaining_is_recovered():
    """jsonargparse < 4.42 re-raises a class's error inside a Union as a new ValueError quoting its text."""
    from nl_lightning.errors import ConfigError, wrapped_user_error

    def raised(filename: str, text: str) -> ValueError:
        try:
            exec(compile("raise ValueError(text)", filename, "exec"), {"text": text})
        except ValueError as err:
            return err
        raise AssertionError("not raised")

    error = ConfigError("TransformerConfig.n_kv_heads=3 must divide n_heads=4")
    quoted = f"Does not validate against any of the Union subtypes\nErrors:\n  - {error}\n"
    assert wrapped_user_error(raised("/venv/site-packages/jsonargparse/_typehints.py", quoted)) is error
    assert wrapped_user_error(raised("/work/nl_lightning/models/base.py", quoted)) is None  # not jsonargparse's
    assert wrapped_user_error(raised("/venv/site-packages/jsonargparse/_core.py", "another problem")) is None
