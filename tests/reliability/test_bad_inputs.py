"""Every file of the bad-input corpus (tests/data/bad/) through ``recsys train``, in-process.

For each: the exit status, the one-line message on stderr (never a traceback), and where every
row went: ``rows_in`` equals train + test + validation + quarantined + duplicates + k-core +
below min_rating + cold test rows, with the counts the file was built to give. CSV blocks are
cut to 1 KB so that every file spans several blocks (a bad byte or a malformed line "late").
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from pipelines.cli import main
from pipelines.pipeline import ROW_FATES

BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
BASE = 240  # healthy rows in most files (40 users x 6 items, see generate.py)

# case, extra options, exit status, message (regex; exit 0: None), counts that must hold, reasons
CASES = [
    ("empty.csv", [], 2, r"CSV '.*empty.csv' is empty .* needs a header line", None, None),
    ("header_only.csv", [], 2, r"no interactions to build features from: the input has no data rows", None, None),
    ("wrong_columns.csv", [], 2, r"no column for \['user_id', 'item_id', 'rating', 'timestamp'\]", None, None),
    ("wrong_columns.csv", ["--column", "who=user_id", "--column", "what=item_id", "--column", "how_much=rating",
                           "--column", "when_exactly=timestamp"], 0, None, {"rows_in": 5, "rows_train": 4}, {}),
    ("repeated_column.csv", [], 2, r"the header repeats a column name", None, None),
    ("mixed_types.csv", [], 0, None, {"rows_in": BASE + 3, "rows_quarantined": 1}, {"non_numeric_rating": 1}),
    ("bad_ratings.csv", [], 0, None, {"rows_in": BASE + 4, "rows_quarantined": 4},
     {"non_numeric_rating": 1, "rating_out_of_range": 3}),
    ("bad_timestamps.csv", [], 0, None, {"rows_in": BASE + 4, "rows_quarantined": 4},
     {"future_timestamp": 2, "unparsable_timestamp": 2}),
    ("duplicates.csv", [], 0, None, {"rows_in": BASE + 4, "duplicates_dropped": 4, "rows_quarantined": 0}, {}),
    ("extra_fields.csv", [], 0, None, {"rows_in": BASE + 2, "rows_quarantined": 2}, {"malformed_line": 2}),
    ("extra_fields_everywhere.csv", [], 2, r"quarantined 80 of 240 rows .* top reasons: malformed_line=80", None, None),
    ("bad_bytes_early.csv", [], 0, None, {"rows_in": BASE + 1, "rows_quarantined": 1}, {"undecodable_bytes": 1}),
    ("bad_bytes_late.csv", [], 0, None, {"rows_in": BASE + 1, "rows_quarantined": 1}, {"undecodable_bytes": 1}),
    ("bom.csv", [], 0, None, {"rows_in": BASE, "rows_quarantined": 0}, {}),
    ("crlf.csv", [], 0, None, {"rows_in": BASE, "rows_quarantined": 0}, {}),
    ("quoted_commas.csv", [], 0, None, {"rows_in": BASE, "rows_quarantined": 0}, {}),
    ("one_user.csv", [], 0, None, {"rows_in": 20, "rows_train": 15, "rows_test": 5}, {}),
    ("one_item.csv", [], 2, r"the stratified split left no test rows .* give users more than one interaction", None, None),
    ("na_like_ids.csv", [], 0, None, {"rows_in": BASE, "rows_quarantined": 0}, {}),
    ("missing_values.csv", [], 0, None, {"rows_in": BASE + 4, "rows_quarantined": 4},
     {"missing_user_id": 1, "missing_item_id": 1, "missing_rating": 1, "missing_timestamp": 1}),
    ("all_bad.csv", [], 2, r"quarantined 20 of 20 rows \(100.00%\), above the ceiling max_rejected_fraction=0.05", None, None),
    ("zero_byte.parquet", ["--source", "parquet"], 2, r"'.*zero_byte.parquet' is not a readable Parquet file", None, None),
    ("wrong_types.parquet", ["--source", "parquet"], 0, None, {"rows_in": BASE, "rows_quarantined": 5},
     {"non_numeric_rating": 5}),
    ("mixed_formats", [], 2, r"folder '.*mixed_formats' also holds \['b.parquet'\] of another format", None, None),
    ("cold_test", ["--train", "{dir}/train.csv", "--test", "{dir}/test.csv"], 2,
     r"40 of 41 held-out rows \(97.6%\) belong to users or items absent from train .* above max_cold_fraction=0.5",
     None, None),
]


def _options(case: str, extra: list[str]) -> list[str]:
    if "--train" in extra:
        return [part.format(dir=BAD / case) for part in extra]
    source = [] if "--source" in extra else ["--source", "csv"]
    return [*source, *extra, "--path", str(BAD / case)]


@pytest.mark.slow
@pytest.mark.parametrize(("case", "extra", "status", "message", "counts", "reasons"), CASES,
                         ids=[c[0] + ("+column-map" if "--column" in c[1] else "") for c in CASES])
def test_bad_input_gives_its_status_message_and_row_accounting(
    case, extra, status, message, counts, reasons, tmp_path, monkeypatch, capsys
):
    import pipelines.data.files as files

    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    monkeypatch.setattr(files, "CSV_BLOCKSIZE", 1000)  # several blocks per file
    key = "bad-" + case.replace(".", "-")
    argv = ["train", *_options(case, extra), "--model", "popularity", "--no-track", "--run-name", key]

    assert main(argv) == status
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if status:
        lines = [line for line in err.splitlines() if line.startswith("recsys train: ")]
        assert len(lines) == 1, err
        assert re.search(message, lines[0]), lines[0]
        if "quarantined" in message:  # the ceiling fails after writing everything: rows still add up
            report = json.loads((tmp_path / "lake" / "clean" / key / "report.json").read_text())
            assert report["rows_in"] == report["rows_clean"] + report["rows_quarantined"] + report["duplicates_dropped"]
            quarantine = pd.read_parquet(tmp_path / "lake" / "clean" / key / "quarantine")
            assert len(quarantine) == report["rows_quarantined"] and quarantine["reason"].notna().all()
        return
    rows = json.loads(out)["rows"]
    assert rows["rows_in"] == sum(rows[fate] for fate in ROW_FATES)
    assert {key: rows[key] for key in counts} == counts
    assert json.loads((tmp_path / "lake" / "features" / key / "report.json").read_text())["rows"] == rows
    report = json.loads((tmp_path / "lake" / "clean" / key / "report.json").read_text())
    assert report["reasons"] == reasons
    quarantine = pd.read_parquet(tmp_path / "lake" / "clean" / key / "quarantine")
    assert sorted(quarantine["source_row"]) == sorted(set(quarantine["source_row"]))  # each bad line once
    snapshot = pd.read_parquet(tmp_path / "lake" / "raw" / key / "interactions")
    assert sorted(snapshot["source_row"]) == list(range(rows["rows_in"]))  # every line has its position


def test_ids_that_look_missing_stay_ids(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    argv = ["train", "--source", "csv", "--path", str(BAD / "na_like_ids.csv"), "--model", "popularity",
            "--no-track", "--run-name", "na"]
    assert main(argv) == 0
    users = pd.read_parquet(tmp_path / "lake" / "features" / "na" / "user_index.parquet")["user_id"]
    assert {"NA", "null", "None", "nan", "N/A", "NULL"} <= set(users)
