"""The generated models match the daemon's OpenAPI document (the checked-in one and the one
the daemon serves)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import airlock._models as models
from airlock import Client

SDK = Path(__file__).resolve().parents[1]
DOC = SDK.parents[1] / "docs" / "api" / "openapi.json"


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_models", SDK / "tools" / "gen_models.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_module_is_current() -> None:
    want = _generator().render(DOC)
    source = SDK / "src" / "airlock" / "_models.py"
    assert source.read_text(encoding="utf-8") == want, (
        f"{source} is stale against {DOC}: run `python3 sdk/python/tools/gen_models.py`"
    )
    # The installed package carries the same module.
    assert Path(models.__file__).read_text(encoding="utf-8") == want


def test_the_served_document_is_the_one_generated_from(client: Client) -> None:
    assert client.openapi() == json.loads(DOC.read_text(encoding="utf-8"))


def test_every_operation_has_a_route() -> None:
    doc = json.loads(DOC.read_text(encoding="utf-8"))
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            route = getattr(models, op["operationId"].upper())
            assert route == models.Route(method.upper(), path)
