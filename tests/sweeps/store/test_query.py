"""A model query is a filter over the store's columns, never a call (issue 22 item 3)."""

import numpy as np
import pandas as pd
import pytest

from toymodels.registry import ConfigError

TABLE = pd.DataFrame(
    {
        "seed": [0, 1, 0, 1],
        "density": [1.0, 1.0, 0.5, 0.5],
        "model": ["relu", "relu", "gelu", "relu"],
        "uid": [5, 6, 7, 8],
        "W": [np.zeros((2, 2))] * 4,
        "flag": [True, False, True, True],
        "odd name": [1, 2, 3, 4],
    }
)


@pytest.mark.parametrize(
    "query, uids",
    [
        ("seed == 0 and density < 0.7", [7]),
        ("model == 'relu' or seed==1", [5, 6, 8]),
        ('model == "gelu"', [7]),
        ("not (seed == 0)", [6, 8]),
        ("~(seed == 0) & density > 0.7", [6]),
        ("seed == 0 or seed == 1 and model == 'gelu'", [5, 7]),  # and binds tighter than or
        ("0.4 < density <= 0.5", [7, 8]),
        ("seed in [0]", [5, 7]),
        ("model not in ('relu',)", [7]),
        ("flag", [5, 7, 8]),
        ("`odd name` >= 3", [7, 8]),
        ("density == 1e0 and uid != -3", [5, 6]),
        ("", [5, 6, 7, 8]),
    ],
)
def test_comparisons_and_boolean_logic_select_rows(query, uids):
    from sweeps.store.query import filter_rows

    assert filter_rows(TABLE, query)["uid"].tolist() == uids


@pytest.mark.parametrize(
    "query, why",
    [
        ("@table.to_csv('x.csv')", "'@' at position 0 is not allowed"),
        ("seed == 0 and uid is None", "'is' is not allowed"),
        ("__import__('os').system('touch x')", "'.' at position 16 is not allowed"),
        ("len(seed) == 1", "unexpected '('"),
        ("seed.__class__ == 1", "'.' at position 4 is not allowed"),
        ("seed + 1 == 2", "'+' at position 5 is not allowed"),
        ("seed = 0", "'=' at position 5 is not allowed"),
        ("W == 1", "column 'W' holds arrays"),
        ("seed == 'a'", "compares number with text"),
        ("model < 'z'", "text is compared with == or != only"),
        ("nope == 1", "'nope' is not a column"),
        ("1 == 1", "compares two values"),
        ("seed ==", "ends too early"),
        ("(" * 60 + "seed == 0" + ")" * 60, "nests more than 50 levels"),
        ("seed == 7", "selects no model out of 4"),
    ],
)
def test_anything_but_a_filter_is_one_line_naming_the_query(query, why, tmp_path, monkeypatch):
    from sweeps.store.query import filter_rows

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        filter_rows(TABLE, query, "sae.toy.models")
    message = str(caught.value)
    assert message.startswith("sae.toy.models: ") and why in message and "\n" not in message
    assert repr(query) in message or query in message
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing run


def test_toymodels_sae_refuses_a_query_that_calls_without_running_it(
    tiny_store, tmp_path, monkeypatch, capsys
):
    """The issue's commands: the first wrote a 561 KB file, the second a 76-line traceback."""
    from sweeps.sae.cli import main

    monkeypatch.chdir(tmp_path)
    for query in ("@table.to_csv('x.csv')", "seed == 0 and uid is None"):
        with pytest.raises(SystemExit) as exit_:
            main([str(tiny_store), "--models", query, "--steps", "1"])
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("toymodels-sae: error: --models: bad query"), err
    assert not (tmp_path / "x.csv").exists() and not (tiny_store / "x.csv").exists()
