"""Text holding a lone surrogate (bytes decoded with ``surrogateescape``).

Free text is scrubbed as any other; a value that must go through Arrow (a typed column, a
nested leaf) cannot be: the masker says where it is and never repeats the value, which
Python's own UnicodeEncodeError would."""

from __future__ import annotations

import traceback

import pandas as pd
import pytest

from lgpd_tasks.errors import MaskingError
from lgpd_tasks.masking import Masker

CPF = "529.982.247-25"
BROKEN = b"CPF 529.982.247-25 \xff Maria".decode("utf-8", "surrogateescape")


def _refusal(call: object) -> MaskingError:
    with pytest.raises(MaskingError) as caught:
        call()  # type: ignore[operator]
    error = caught.value
    shown = "".join(traceback.format_exception(error)) + repr(error) + repr(error.args)
    assert CPF not in shown
    assert "Maria" not in shown
    assert error.__context__ is None  # Python's UnicodeEncodeError holds the whole value
    assert error.__cause__ is None
    return error


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame({"id": [1, 2], "cpf": ["111", CPF + "\udcff"]}, dtype=object),
        pd.DataFrame({"id": [1, 2], "contato": [{}, {"cpf": CPF + "\udcff"}]}),
    ],
    ids=["cpf-column", "nested"],
)
def test_a_frame_with_a_lone_surrogate_is_refused_naming_the_cell(frame: pd.DataFrame) -> None:
    error = _refusal(lambda: Masker().mask_dataframe(frame))
    assert str(error).startswith(
        f"column {frame.columns[1]!r}, row 1: text holding a lone surrogate"
    )


def test_rows_with_a_lone_surrogate_are_refused_naming_the_cell() -> None:
    rows = [(1, "111"), (2, CPF + "\udcff")]
    error = _refusal(lambda: Masker().mask_rows(["id", "cpf"], rows))
    assert str(error).startswith("column 'cpf', row 1: ")


def test_free_text_with_a_lone_surrogate_is_scrubbed() -> None:
    masker = Masker()
    assert masker.mask_text(BROKEN) == "CPF [CPF] \udcff Maria"
    frame = pd.DataFrame({"obs": ["ok", BROKEN]}, dtype=object)
    assert masker.mask_dataframe(frame)[0]["obs"].tolist() == ["ok", "CPF [CPF] \udcff Maria"]
    rows, _ = masker.mask_rows(["obs"], [("ok",), (BROKEN,)])
    assert rows[1] == ("CPF [CPF] \udcff Maria",)


@pytest.mark.parametrize("how", ["mask_frame", "mask_frame-index", "plan-apply"])
def test_every_way_into_the_masker_refuses_without_the_value(how: str) -> None:
    """mask_frame (the XCom backend, the IO manager) and plan/apply (``lgpd-tasks mask``)."""
    frame = pd.DataFrame({"id": [1, 2], "cpf": ["111", CPF + "\udcff"]}, dtype=object)
    masker = Masker()
    if how == "mask_frame":
        error = _refusal(lambda: masker.mask_frame(frame))
    elif how == "mask_frame-index":
        error = _refusal(lambda: masker.mask_frame(frame.set_index("cpf")))
    else:
        error = _refusal(lambda: masker.apply(frame, masker.plan(frame)))
    assert "cpf" in str(error)
    assert "row 1" in str(error)


def test_a_label_with_a_lone_surrogate_is_refused_without_it() -> None:
    frame = pd.DataFrame([[1]], columns=pd.Index(["Maria Souza\udc80"], dtype=object))
    error = _refusal(lambda: Masker().mask_frame_labels(frame))
    assert "lone surrogate" in str(error)
