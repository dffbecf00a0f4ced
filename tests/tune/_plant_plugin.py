"""A test plugin for ``compressor tune``: ``plant.model`` changes a model in two planted ways.

- ``extra_rows``: adds that many token-embedding rows no token uses (more parameters, the
  same predictions);
- ``corrupt``: negates the classifier (every prediction of a 2-class model flips).

So with the objective ``parameters`` and any ``max_loss`` the planted answer is
``extra_rows: 0, corrupt: false``. Each apply appends its stage and config to
``$TUNE_TEST_CALLS`` (a file) when set; with ``$TUNE_TEST_HANG`` set, the third apply writes
that file and sleeps (the kill test stops the process there).
"""

from __future__ import annotations

import json
import os
import time
import types
from pathlib import Path

from pydantic import Field

from compressor import Strategy, StrategyConfig, hookimpl


class PlantConfig(StrategyConfig):
    extra_rows: int = Field(0, ge=0, le=4096, description="Unused embedding rows to add.")
    corrupt: bool = Field(False, description="Negate the classifier.")


class PlantModel(Strategy):
    name = "plant.model"
    Config = PlantConfig
    description = "Adds unused embedding rows and/or flips the classifier (test strategy)."

    def apply(self, artifact, config, context):
        import torch

        calls = os.environ.get("TUNE_TEST_CALLS")
        if calls:
            with open(calls, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"stage": context.stage_name, **config.model_dump()}) + "\n")
            hang = os.environ.get("TUNE_TEST_HANG")
            if hang and len(Path(calls).read_text().splitlines()) == 3:
                Path(hang).write_text("hanging")
                time.sleep(300)
        model = context.load_model(artifact)
        if config.extra_rows:
            emb = model.get_input_embeddings().weight.shape[0]
            model.resize_token_embeddings(emb + config.extra_rows)
        if config.corrupt:
            with torch.no_grad():
                model.classifier.weight.neg_()
                model.classifier.bias.neg_()
        context.save_model(model, context.load_tokenizer(artifact))
        return context.new_artifact(artifact, self.name, config, extra={})


def module() -> types.ModuleType:
    mod = types.ModuleType("tune_plant_plugin")

    @hookimpl
    def compressor_register_strategies(register):
        register(PlantModel)

    mod.compressor_register_strategies = compressor_register_strategies
    return mod


def plugins():
    """The installed plugins (finetune...), the suite's fake plugin (copy.model,
    tiny-sentiment) and this one."""
    from compressor.testing import plugins_with

    return plugins_with(suite_conftest().fake_plugin_module(), module())


def suite_conftest() -> types.ModuleType:
    """The suite's top conftest (tests/conftest.py), by its path: in the whole suite
    'import conftest' may find another folder's."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("compressor_suite_conftest", path)
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    return suite


def main(recipe: str, run_dir: str) -> None:
    """Run a search in this process (the kill test's child)."""
    from compressor.tune import tune

    tune(recipe, run_dir=run_dir, plugins=plugins())
