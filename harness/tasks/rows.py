"""Read a local data file row by row (JSONL, JSON, CSV, Parquet), streamed, with the line each row
starts on: the one reader behind both the data checks and loading, so a problem found at validate
time names the same line the loader would have choked on.

Written by hand because the libraries' readers stop at the first bad row and name no line
(datasets: "An error occurred while generating the dataset"), and pandas turns "NA" and "null"
text into missing values behind the user's back."""

from __future__ import annotations

import codecs
import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}

# byte-order marks that are not UTF-8's: the file is in another encoding, which we do not guess at
_OTHER_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32 LE"), (codecs.BOM_UTF32_BE, "UTF-32 BE"),
               (codecs.BOM_UTF16_LE, "UTF-16 LE"), (codecs.BOM_UTF16_BE, "UTF-16 BE"))

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long documents are data, not an attack


class FileProblem(Exception):
    """The file as a whole cannot be read as rows (an encoding, a broken JSON array, no header)."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.message, self.line = message, line


@dataclass(frozen=True)
class Row:
    line: int  # where the row starts: the JSONL/CSV line, the JSON array item or the Parquet row (1-based)
    values: dict[str, Any] | None  # None where the row could not be parsed
    error: str | None = None  # why it could not be parsed


def line_word(path: Path) -> str:
    """What Row.line counts in this file, for messages: a line, an item or a row."""
    fmt = path.suffix.lower()
    return "row" if fmt == ".parquet" else "item" if fmt == ".json" and _is_json_array(path) else "line"


def _is_json_array(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(4096).removeprefix(codecs.BOM_UTF8).lstrip()
    return head.startswith(b"[")


def _check_encoding(path: Path) -> bool:
    """Whether the file starts with UTF-8's byte-order mark; FileProblem for another encoding's."""
    with open(path, "rb") as f:
        head = f.read(4)
    for bom, name in _OTHER_BOMS:
        if head.startswith(bom):
            raise FileProblem(f"the file is {name} (its byte-order mark says so); save it as UTF-8", 1)
    return head.startswith(codecs.BOM_UTF8)


def _not_utf8(path: Path, line: int | None, exc: UnicodeDecodeError) -> FileProblem:
    """Name the encoding the bytes look like (charset-normalizer's guess), so the fix is one command;
    the line is the first undecodable byte's (a buffered text reader fails a chunk ahead of its line)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as whole:
        exc, line = whole, data.count(b"\n", 0, whole.start) + 1
    guess = None
    try:
        from charset_normalizer import from_path

        best = from_path(path, steps=5, chunk_size=4096).best()
        guess = best.encoding if best is not None else None
    except Exception:  # noqa: BLE001 - a guess is a courtesy; the message stands without it
        pass
    bad = exc.object[exc.start:exc.start + 4].hex(" ")
    found = f"it looks like {guess}" if guess and guess.replace("_", "").lower() not in ("utf8", "ascii") \
        else "the encoding is unknown"
    hint = f" (e.g. iconv -f {guess} -t utf-8)" if guess and "utf" not in guess.lower() else ""
    return FileProblem(f"not UTF-8: bytes {bad} cannot be decoded; {found}: save it as UTF-8{hint}", line)


def read_rows(path: Path, columns: list[str] | None = None) -> Iterator[Row]:
    """Every row of the file, streamed, as {column: value} (only `columns` where given); a row that
    cannot be parsed comes as Row(values=None, error=why). FileProblem where the file cannot be read
    as rows at all."""
    fmt = path.suffix.lower()
    if fmt not in FORMATS:
        raise FileProblem(f"unsupported file type {path.suffix!r}: use {', '.join(FORMATS)}")
    if fmt == ".parquet":
        yield from _parquet_rows(path, columns)
        return
    bom = _check_encoding(path)
    if fmt == ".csv":
        yield from _csv_rows(path, columns, bom)
    elif fmt == ".json" and _is_json_array(path):
        yield from _json_array_rows(path, columns)
    else:
        yield from _jsonl_rows(path, columns)


def _pick(row: dict, columns: list[str] | None) -> dict:
    return row if columns is None else {c: row[c] for c in columns if c in row}


def _jsonl_rows(path: Path, columns: list[str] | None) -> Iterator[Row]:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _not_utf8(path, number, exc) from None
            if not text.strip():
                continue  # a blank line (a trailing newline, an editor's) holds no row
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                yield Row(number, None, f"not valid JSON: {_json_error(exc)}")
                continue
            except RecursionError:
                yield Row(number, None, "not valid JSON (nested too deeply)")
                continue
            if not isinstance(value, dict):
                yield Row(number, None, f"a row must be a JSON object {{\"column\": value, ...}}, "
                                        f"but this line holds a {type(value).__name__}")
                continue
            yield Row(number, _pick(value, columns))


def _json_error(exc: json.JSONDecodeError) -> str:
    """json's message without its dangling "at" ("Invalid control character at"), with the column."""
    what = exc.msg.removesuffix(" at")
    if what == "Invalid control character" and exc.doc[exc.pos:exc.pos + 1] in "\r\n":
        what = "a string is not closed (the line ends inside it: cut short?)"
    return f"{what} at column {exc.colno}"


def _json_array_rows(path: Path, columns: list[str] | None) -> Iterator[Row]:
    try:
        text = path.read_bytes().removeprefix(codecs.BOM_UTF8).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, None, exc) from None
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileProblem(f"not valid JSON: {_json_error(exc)}", exc.lineno) from None
    except RecursionError:
        raise FileProblem("not valid JSON (nested too deeply)") from None
    if not isinstance(items, list):
        raise FileProblem("a .json data file holds a list of row objects [{...}, ...] (or use .jsonl)", 1)
    for number, value in enumerate(items, start=1):
        if isinstance(value, dict):
            yield Row(number, _pick(value, columns))
        else:
            yield Row(number, None, f"a row must be a JSON object, but item {number} is a {type(value).__name__}")


def _csv_header(raw, path: Path, bom: bool):
    """(a csv reader over the open binary file, its header row, checked); [] for an empty file."""
    reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig" if bom else "utf-8", newline=""))
    try:
        header = next(reader, [])
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, 1, exc) from None
    except csv.Error as exc:
        raise FileProblem(f"the header row cannot be read as CSV ({exc})", 1) from None
    _check_header(header)
    return reader, header


def _csv_rows(path: Path, columns: list[str] | None, bom: bool) -> Iterator[Row]:
    with open(path, "rb") as raw:
        reader, header = _csv_header(raw, path, bom)
        if not header:
            return
        start = 1
        try:
            wanted = [(i, name) for i, name in enumerate(header) if columns is None or name in columns]
            start = reader.line_num + 1
            while True:
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    yield Row(start, None, f"not valid CSV ({exc})")
                    start = reader.line_num + 1
                    continue
                line, start = start, reader.line_num + 1
                if not cells:
                    continue  # a blank line
                if len(cells) != len(header):
                    yield Row(line, None, f"has {len(cells)} fields where the header has {len(header)} "
                                          f"(a comma or quote out of place?)")
                    continue
                yield Row(line, {name: cells[i] for i, name in wanted})
        except UnicodeDecodeError as exc:
            raise _not_utf8(path, start, exc) from None


def _check_header(header: list[str]) -> None:
    seen = set()
    for i, name in enumerate(header):
        if not name.strip():
            raise FileProblem(f"the header's column {i + 1} has no name", 1)
        if name in seen:
            raise FileProblem(f"the header names column {name!r} twice", 1)
        seen.add(name)


def _parquet_rows(path: Path, columns: list[str] | None) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(path)
        names = reader.schema_arrow.names
        wanted = [c for c in names if columns is None or c in columns]
        number = 0
        for batch in reader.iter_batches(batch_size=4096, columns=wanted):
            for values in batch.to_pylist():
                number += 1
                yield Row(number, values)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise FileProblem(f"cannot be read as Parquet ({exc})") from None


def file_columns(path: Path) -> list[str]:
    """Column names from the head of a data file, without reading it whole; FileProblem where the
    head cannot be read."""
    fmt = path.suffix.lower()
    if fmt == ".parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except (OSError, ValueError) as exc:
            raise FileProblem(f"cannot be read as Parquet ({exc})") from None
    if fmt == ".csv":
        with open(path, "rb") as raw:
            return _csv_header(raw, path, _check_encoding(path))[1]
    for row in read_rows(path):  # JSON: the first row that parses names the columns
        if row.values is not None:
            return list(row.values)
    return []
