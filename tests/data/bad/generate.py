"""Writes the bad-input corpus in this folder (run it to regenerate; the files are committed).

Each file is a small interaction table broken in one way; ``tests/reliability/test_bad_inputs.py``
holds, for each, the exit status, the one-line message and the row accounting that ``recsys
train`` must give. Most files wrap the breakage in a healthy base of 40 users x 6 items so
that the run can succeed once the bad rows are accounted for.

    PYTHONPATH=. python tests/data/bad/generate.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
HEADER = "user_id,item_id,rating,timestamp"
BASE_TIME = 1_500_000_000


def base_lines(n_users: int = 40, per_user: int = 6, n_items: int = 30) -> list[str]:
    """Healthy rows: each user rates ``per_user`` distinct items (deterministic)."""
    gen = np.random.default_rng(7)
    lines = []
    for user in range(n_users):
        for item in gen.choice(n_items, size=per_user, replace=False):
            rating = int(gen.integers(1, 6))
            lines.append(f"u{user},i{item},{rating},{BASE_TIME + len(lines)}")
    return lines


def text(*lines: str, newline: str = "\n") -> bytes:
    return (newline.join(lines) + newline).encode()


def write(name: str, data: bytes) -> None:
    (HERE / name).write_bytes(data)


def main() -> None:
    base = base_lines()
    write("empty.csv", b"")
    write("header_only.csv", text(HEADER))
    write("wrong_columns.csv", text("who,what,how_much,when_exactly", *base[:5]))
    write("repeated_column.csv", text("user_id,item_id,rating,rating", *base[:5]))
    write("mixed_types.csv", text(HEADER, *base, "u1,i29,four,1500000900", "17,i28,3,1500000901", "u2,i27,3.5,2017-07-14"))
    write("bad_ratings.csv", text(HEADER, *base, "u3,i29,NaN,1500000900", "u3,i28,inf,1500000901",
                                  "u4,i29,-1,1500000902", "u4,i28,1e300,1500000903"))
    write("bad_timestamps.csv", text(HEADER, *base, "u5,i29,3,99999999999", "u5,i28,3,4102444800",
                                     "u6,i29,3,yesterday", "u6,i28,3,2020-13-45"))
    first = base[0].split(",")
    write("duplicates.csv", text(HEADER, *base, base[0], base[1], base[2],
                                 f"{first[0]},{first[1]},1,{BASE_TIME + 9999}"))
    write("extra_fields.csv", text(HEADER, *base[:100], "u7,i29,3,1500000900,surprise", *base[100:],
                                   "u8,i29,4,1500000901,x,y"))
    malformed = [line + ",extra" if n % 3 == 0 else line for n, line in enumerate(base)]
    write("extra_fields_everywhere.csv", text(HEADER, *malformed))
    write("bad_bytes_early.csv", text(HEADER, base[0]) + b"u9,i\xff\xfe29,3,1500000900\n" + text(*base[1:]))
    write("bad_bytes_late.csv", text(HEADER, *base) + b"u9,i29,3,15000\xe9\x00900\n")
    write("bom.csv", b"\xef\xbb\xbf" + text(HEADER, *base))
    write("crlf.csv", text(HEADER, *base, newline="\r\n"))
    quoted = [f'{u},"{i}, the sequel",{r},{t}' for u, i, r, t in (line.split(",") for line in base)]
    write("quoted_commas.csv", text(HEADER, *quoted))
    write("one_user.csv", text(HEADER, *[f"solo,i{i},{1 + i % 5},{BASE_TIME + i}" for i in range(20)]))
    write("one_item.csv", text(HEADER, *[f"u{u},only,{1 + u % 5},{BASE_TIME + u}" for u in range(30)]))
    na_like = ["NA", "null", "None", "nan", "N/A", "NULL"]
    ids = {f"u{u}": na_like[u] for u in range(len(na_like))}
    renamed = [",".join([ids.get(line.split(",")[0], line.split(",")[0]), *line.split(",")[1:]]) for line in base]
    write("na_like_ids.csv", text(HEADER, *renamed))
    write("missing_values.csv", text(HEADER, *base, ",i29,3,1500000900", "u10,,3,1500000901", "u10,i29,,1500000902",
                                     "u11,i29,3,"))
    write("all_bad.csv", text(HEADER, *[f"u{u},i{u},lots,{BASE_TIME}" for u in range(20)]))
    write("zero_byte.parquet", b"")
    frame = pd.DataFrame([line.split(",") for line in base], columns=HEADER.split(","))
    typed = frame.assign(
        user_id=frame["user_id"].str[1:].astype("int64"),  # ints where text is expected
        rating=frame["rating"].where(frame.index % 50 != 0, "x"),  # text ratings, two unreadable
        timestamp=frame["timestamp"].astype("float64"),  # float seconds
    )
    typed.to_parquet(HERE / "wrong_types.parquet", index=False)
    mixed = HERE / "mixed_formats"
    mixed.mkdir(exist_ok=True)
    (mixed / "a.csv").write_bytes(text(HEADER, *base[:120]))
    frame.iloc[120:].to_parquet(mixed / "b.parquet", index=False)
    cold = HERE / "cold_test"
    cold.mkdir(exist_ok=True)
    (cold / "train.csv").write_bytes(text(HEADER, *base[:119]))  # users u0-u19, u19 without its last row
    newcomers = [line.replace("u", "new", 1) for line in base[120:160]]
    (cold / "test.csv").write_bytes(text(HEADER, base[119], *newcomers))  # one warm row, 40 cold


if __name__ == "__main__":
    main()
