"""raydesk.faq_file.read_faq: CSV and YAML FAQ files, and errors naming file, row, field."""

from __future__ import annotations

from pathlib import Path

import pytest

from raydesk.errors import BadRequest
from raydesk.faq_file import read_faq
from raydesk.schema import FaqItem


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _error(path: Path) -> str:
    with pytest.raises(BadRequest) as info:
        read_faq(path)
    return str(info.value)


# --- CSV -------------------------------------------------------------------------------


def test_csv_with_alternates_split_on_bars(tmp_path: Path) -> None:
    """Alternates are split on '|', stripped, and empty ones dropped; cells are stripped."""
    path = _write(tmp_path, "faq.csv",
                  "id,question,answer,alternates\n"
                  "hours, When are you open? ,9 to 5, opening hours | open when? ||\n"
                  "ship,How long is shipping?,Two days,\n")
    assert read_faq(path).items == [
        FaqItem(id="hours", question="When are you open?", answer="9 to 5",
                alternates=["opening hours", "open when?"]),
        FaqItem(id="ship", question="How long is shipping?", answer="Two days",
                alternates=[])]


def test_csv_without_alternates_column(tmp_path: Path) -> None:
    """The alternates column is optional; column order does not matter; quoted cells with
    commas and newlines are read whole."""
    path = _write(tmp_path, "faq.csv",
                  'answer,id,question\n"Yes, we do.\nWorldwide.",intl,Do you ship abroad?\n')
    (item,) = read_faq(path).items
    assert item == FaqItem(id="intl", question="Do you ship abroad?",
                           answer="Yes, we do.\nWorldwide.")


def test_csv_with_a_byte_order_mark(tmp_path: Path) -> None:
    """A BOM (as Excel writes) does not spoil the first header name."""
    path = _write(tmp_path, "faq.csv", "\ufeffid,question,answer\nq1,Q?,A.\n".encode())
    assert read_faq(path).items == [FaqItem(id="q1", question="Q?", answer="A.")]


def test_uppercase_suffix_is_accepted(tmp_path: Path) -> None:
    """The suffix is matched case-insensitively."""
    path = _write(tmp_path, "FAQ.CSV", "id,question,answer\nq1,Q?,A.\n")
    assert [i.id for i in read_faq(path).items] == ["q1"]


def test_csv_with_only_a_header_is_an_empty_faq(tmp_path: Path) -> None:
    """A header without rows is a valid, empty FAQ."""
    assert read_faq(_write(tmp_path, "faq.csv", "id,question,answer\n")).items == []


@pytest.mark.parametrize(("header", "missing"), [
    ("id,question", "answer"), ("question,answer", "id"), ("ID,Question,Answer", "id"),
    ("", "id, question, answer")])
def test_csv_missing_header_column_is_named(tmp_path: Path, header: str,
                                            missing: str) -> None:
    """A header without a required column names the file and every missing column."""
    path = _write(tmp_path, "faq.csv", f"{header}\nq1,Q,A\n" if header else "")
    message = _error(path)
    assert message.startswith(f"{path}: the header row lacks {missing}")


def test_csv_empty_answer_names_file_row_and_field(tmp_path: Path) -> None:
    """An empty (or blank) answer names the file, the line and the field."""
    path = _write(tmp_path, "faq.csv", "id,question,answer\nq1,Q?,A.\nq2,Q2?,  \n")
    message = _error(path)
    assert message.startswith(f"{path}:3: answer: ")


def test_csv_bad_id_names_the_field(tmp_path: Path) -> None:
    """An id with a space names the id field of its row."""
    path = _write(tmp_path, "faq.csv", "id,question,answer\nbad id,Q?,A.\n")
    assert _error(path).startswith(f"{path}:2: id: ")


def test_csv_duplicate_id_names_both_rows(tmp_path: Path) -> None:
    """A repeated id names the id and both rows."""
    path = _write(tmp_path, "faq.csv",
                  "id,question,answer\nq1,Q?,A.\nq2,Q2?,B.\nq1,Q3?,C.\n")
    assert _error(path) == f"{path}:4: id 'q1' is also at {path}:2"


# --- YAML ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["faq.yaml", "faq.yml"])
def test_yaml_list(tmp_path: Path, name: str) -> None:
    """A YAML list of items, with alternates as a list."""
    path = _write(tmp_path, name,
                  "- id: hours\n  question: When are you open?\n  answer: 9 to 5\n"
                  "  alternates: [opening hours, when open]\n"
                  "- {id: ship, question: Shipping, answer: Two days}\n")
    assert read_faq(path).items == [
        FaqItem(id="hours", question="When are you open?", answer="9 to 5",
                alternates=["opening hours", "when open"]),
        FaqItem(id="ship", question="Shipping", answer="Two days")]


def test_yaml_items_mapping(tmp_path: Path) -> None:
    """A mapping with the list under 'items' is read the same way."""
    path = _write(tmp_path, "faq.yaml",
                  "items:\n  - {id: q1, question: Q, answer: A.}\n")
    assert read_faq(path).items == [FaqItem(id="q1", question="Q", answer="A.")]


def test_yaml_numeric_values_become_strings(tmp_path: Path) -> None:
    """Numbers as id, question or answer are read as their text."""
    path = _write(tmp_path, "faq.yaml",
                  "- {id: 1, question: Q, answer: 42}\n- {id: 2, question: 3, answer: A.}\n")
    assert [(i.id, i.question, i.answer) for i in read_faq(path).items] == [
        ("1", "Q", "42"), ("2", "3", "A.")]


@pytest.mark.parametrize(("written", "stored"), [("010", "010"), ("1.10", "1.10")])
def test_yaml_numeric_looking_id_keeps_its_text(tmp_path: Path, written: str,
                                                stored: str) -> None:
    """An id written as a number keeps the digits in the file, not a re-rendered number."""
    path = _write(tmp_path, "faq.yaml", f"- {{id: {written}, question: Q, answer: A.}}\n")
    assert [i.id for i in read_faq(path).items] == [stored]


def test_yaml_blank_answer_is_refused_like_csv(tmp_path: Path) -> None:
    """A YAML answer of only spaces is refused, as a blank CSV answer is."""
    path = _write(tmp_path, "faq.yaml", "- {id: q1, question: Q, answer: '   '}\n")
    assert _error(path).startswith(f"{path}: item 1: answer: ")


def test_yaml_empty_answer_names_item_and_field(tmp_path: Path) -> None:
    """An empty answer names the file, the item number and the field."""
    path = _write(tmp_path, "faq.yaml",
                  "- {id: q1, question: Q, answer: A.}\n- {id: q2, question: Q, answer: ''}\n")
    assert _error(path).startswith(f"{path}: item 2: answer: ")


@pytest.mark.parametrize(("item", "field"), [
    ("{id: q1, question: Q}", "answer"),
    ("{id: q1, question: Q, answer: ~}", "answer"),
    ("{id: q1, question: Q, answer: A., alternates: [~]}", "alternates.0"),
    ("{id: q1, question: Q, answer: A., extra: 1}", "extra"),
])
def test_yaml_wrong_field_is_named(tmp_path: Path, item: str, field: str) -> None:
    """A missing, null, mistyped or unknown field is named with its item."""
    path = _write(tmp_path, "faq.yaml", f"- {item}\n")
    assert _error(path).startswith(f"{path}: item 1: {field}: ")


def test_yaml_duplicate_id_names_both_items(tmp_path: Path) -> None:
    """A repeated id (even one written once as a number) names both items."""
    path = _write(tmp_path, "faq.yaml",
                  "- {id: 7, question: Q, answer: A.}\n- {id: '7', question: Q, answer: B.}\n")
    assert _error(path) == f"{path}: item 2: id '7' is also at {path}: item 1"


@pytest.mark.parametrize("text", ["items: [1, 2\n", "- {id: q1\n", "a: b: c\n"])
def test_bad_yaml_is_refused(tmp_path: Path, text: str) -> None:
    """Text that is not YAML is refused naming the file."""
    path = _write(tmp_path, "faq.yaml", text)
    assert _error(path).startswith(f"{path}: not valid YAML: ")


@pytest.mark.parametrize("text", ["q1: {question: Q, answer: A.}\n", "just text\n", "",
                                  "items: {id: q1}\n"])
def test_yaml_that_is_not_a_list_is_refused(tmp_path: Path, text: str) -> None:
    """A mapping without 'items', a scalar or an empty file is not a list of items."""
    path = _write(tmp_path, "faq.yaml", text)
    assert _error(path) == f"{path}: expected a list of FAQ items (or 'items: [...]')"


def test_yaml_item_that_is_not_a_mapping_is_named(tmp_path: Path) -> None:
    """A list entry that is not a mapping is named by number."""
    path = _write(tmp_path, "faq.yaml", "- {id: q1, question: Q, answer: A.}\n- q2\n")
    assert _error(path) == f"{path}: item 2 is not a mapping"


# --- files -----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "shown"), [("faq.txt", ".txt"), ("faq.json", ".json"),
                                             ("faq", "(none)")])
def test_unknown_suffix_is_refused(tmp_path: Path, name: str, shown: str) -> None:
    """Only .csv, .yaml and .yml are read; the error names the file and the suffix."""
    path = _write(tmp_path, name, "id,question,answer\nq1,Q?,A.\n")
    assert _error(path) == f"{path}: unknown format {shown}; use .csv or .yaml"


def test_missing_file_is_refused(tmp_path: Path) -> None:
    """A file that does not exist is a BadRequest naming it."""
    path = tmp_path / "nope.csv"
    assert _error(path).startswith(f"{path}: cannot read it: ")


def test_directory_is_refused(tmp_path: Path) -> None:
    """A directory is not readable as an FAQ file."""
    path = tmp_path / "dir.csv"
    path.mkdir()
    assert _error(path).startswith(f"{path}: cannot read it: ")


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    """A file that is not UTF-8 is a BadRequest naming it, not a crash."""
    path = _write(tmp_path, "faq.csv", "id,question,answer\nq1,Q?,caf\xe9\n".encode("latin-1"))
    message = _error(path)
    assert message.startswith(f"{path}: cannot read it: ")
    assert "utf-8" in message


def test_path_given_as_string(tmp_path: Path) -> None:
    """read_faq takes a str path as well as a Path."""
    path = _write(tmp_path, "faq.yml", "- {id: q1, question: Q, answer: A.}\n")
    assert len(read_faq(str(path)).items) == 1
