"""The `trust:` setting: your own model class, served, batch-predicted and exported from the command
line; an unlisted class refused naming the setting; a class of a script (`__main__`) explained."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from nl_lightning.cli import main
from nl_lightning.models import CheckpointError, load_checkpoint

sys.path.insert(0, str(Path(__file__).parents[1] / "serve"))
from servers import ServerProcess  # noqa: E402

USER_PACKAGE = '''
from nl_lightning.models import TransformerClassifier


class SharpClassifier(TransformerClassifier):
    """A user's subclass with its own argument: logits divided by a temperature."""

    def __init__(self, temperature: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.temperature = temperature

    def forward(self, x, *args, **kwargs):
        return super().forward(x, *args, **kwargs) / self.temperature
'''
CLASS = "mypkg.models.SharpClassifier"


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    """``mypkg.models.SharpClassifier`` (temperature 4) on disk as ``model_dir/1/model.ckpt``, and its package."""
    import model_files

    root = tmp_path_factory.mktemp("trust")
    (root / "pkg" / "mypkg").mkdir(parents=True)
    (root / "pkg" / "mypkg" / "__init__.py").write_text("")
    (root / "pkg" / "mypkg" / "models.py").write_text(textwrap.dedent(USER_PACKAGE))
    sys.path.insert(0, str(root / "pkg"))
    from mypkg.models import SharpClassifier

    torch.manual_seed(0)
    model = SharpClassifier(temperature=4.0, config=dict(input_dim=model_files.FEATURES, n_layers=1, d_model=16,
                            n_heads=2, mlp_hidden=32, max_seq_len=model_files.STEPS, position="none", causal=False),
                            num_classes=3).eval()
    ckpt = model_files.save(model, root / "models" / "1" / "model.ckpt")
    yield model, ckpt, root
    sys.path.remove(str(root / "pkg"))
    for name in [m for m in sys.modules if m == "mypkg" or m.startswith("mypkg.")]:
        del sys.modules[name]


def _expected(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).softmax(-1).numpy()  # the subclass's forward: temperature applied


def test_an_unlisted_class_is_refused_naming_the_setting(user_model):
    _, ckpt, _ = user_model
    with pytest.raises(CheckpointError, match=rf"'{CLASS}', which is not on nl_lightning's allow-list.*list it in "
                                              rf"the trust setting of serve / predict / export \(trust: \[{CLASS}\]"):
        load_checkpoint(ckpt)


def test_a_listed_class_batch_predicts_through_the_cli(user_model, tmp_path, monkeypatch, capsys):
    from model_files import raw_features

    from nl_lightning.predict import read_predictions

    model, ckpt, _ = user_model
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["nl-lightning"])
    x = raw_features(20, seed=5)
    np.save(tmp_path / "features.npy", x)
    args = ["predict", "--config", str(Path(__file__).parents[2] / "configs" / "predict_files.yaml"),
            f"--model.init_args.source={ckpt}", "--trainer.enable_progress_bar=false"]
    assert main(args) == 1
    assert "list it in the trust setting" in capsys.readouterr().err
    assert main([*args, f"--trust=[{CLASS}]", "--trainer.callbacks.init_args.overwrite=true"]) == 0
    np.testing.assert_allclose(read_predictions("predictions")["probabilities"], _expected(model, x), rtol=1e-5, atol=1e-6)


def test_a_listed_class_exports_through_the_cli(user_model, tmp_path):
    from nl_lightning.export.manifest import read_manifest

    _, ckpt, _ = user_model
    out = tmp_path / "export"
    assert main(["export", "--ckpt_path", str(ckpt), "--formats=[onnx]", f"--out_dir={out}", f"--trust=[{CLASS}]"]) == 0
    assert read_manifest(out, checkpoint=ckpt)["artifacts"][0]["parity_ok"]


def test_a_class_of_a_script_is_explained_and_resolved_only_to_a_listed_class(user_model, tmp_path):
    _, ckpt, _ = user_model
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["nl_lightning"]["class_path"] = "__main__.SharpClassifier"  # trained from a script
    torch.save(checkpoint, tmp_path / "script.ckpt")
    with pytest.raises(CheckpointError, match=r"names the model class '__main__\.SharpClassifier', defined in the "
                                              r"script that saved it, which no other process can import.*Move the "
                                              r"class SharpClassifier into a module"):
        load_checkpoint(tmp_path / "script.ckpt")
    with pytest.warns(UserWarning, match=rf"records its class as __main__\.SharpClassifier .*loading it as {CLASS}"):
        loaded = load_checkpoint(tmp_path / "script.ckpt", trust=[CLASS])
    assert type(loaded).__qualname__ == "SharpClassifier" and loaded.temperature == 4.0
    with pytest.raises(ValueError, match=r"trust: '__main__\.SharpClassifier' is a class of a script"):
        load_checkpoint(tmp_path / "script.ckpt", trust=["__main__.SharpClassifier"])


@pytest.mark.slow
def test_a_listed_class_serves_and_an_unlisted_one_is_refused(user_model, tmp_path, monkeypatch):
    """A real `nl-lightning serve` (HTTP process + a spawned worker) of the user's subclass."""
    from model_files import raw_features

    model, ckpt, root = user_model
    monkeypatch.setenv("PYTHONPATH", str(root / "pkg"))
    refused = subprocess.run([sys.executable, "-m", "nl_lightning", "serve", "--model_dir", str(ckpt.parent.parent),
                              "--port", "8123"], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"list it in the trust setting of serve / predict / export (trust: [{CLASS}]" in refused.stderr
    server = ServerProcess(tmp_path, model_dir=str(ckpt.parent.parent), trust=[CLASS])
    try:
        client = server.start().client()
        x = raw_features(1, seed=6)
        reply = client.post("/predict", {"features": x[0].tolist()})
        assert reply.status == 200, reply
        np.testing.assert_allclose(reply.json()["probabilities"], _expected(model, x)[0], rtol=1e-5, atol=1e-6)
    finally:
        server.kill()
