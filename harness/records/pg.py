"""Records in PostgreSQL: with `--storage postgresql://...`, every worker of a suite, on any machine,
writes its records as JSON rows into one table of the database that also holds the Optuna studies,
so `harness report --storage URL SUITE`, `harness compare` and `harness export` read one results
set from anywhere. Rows carry their record's schema version and are read like record files
(upgraded, or refused with a clean message)."""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import Problem, UserError
from harness.records.schema import TrialRecord, upgrade
from harness.records.store import SavedSuite

SCHEMA = """
CREATE TABLE IF NOT EXISTS harness_records (
    suite text NOT NULL, cell_id text NOT NULL, phase text NOT NULL, trial_number integer NOT NULL,
    seed integer NOT NULL, schema_version integer NOT NULL, body jsonb NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (suite, cell_id, phase, trial_number, seed));
CREATE TABLE IF NOT EXISTS harness_suites (
    suite text PRIMARY KEY, text text NOT NULL, written_at timestamptz NOT NULL DEFAULT now());
"""


def is_postgres(url: str | None) -> bool:
    return bool(url) and url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def sqlalchemy_url(url: str) -> str:
    """The URL Optuna's RDB storage (SQLAlchemy) takes: psycopg 3 as the driver unless one is named."""
    scheme, rest = url.split("://", 1)
    return url if "+" in scheme else f"postgresql+psycopg://{rest}"


def libpq_url(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"postgresql://{rest}"


def connect(url: str):
    """A psycopg connection, or a clean error naming the URL (without its password)."""
    try:
        import psycopg
    except ImportError as exc:
        raise UserError("a PostgreSQL storage needs psycopg: pip install 'psycopg[binary]' (or -e '.[cluster]')") from exc
    try:
        return psycopg.connect(libpq_url(url), connect_timeout=5, autocommit=True)
    except psycopg.Error as exc:
        raise UserError(f"storage {redact(url)} cannot be reached: {str(exc).strip().splitlines()[0]}") from None


SCHEMA_LOCK = 727_270_001  # an advisory lock id: workers starting together create tables one at a time


class schema_lock:
    """Holds a PostgreSQL advisory lock for a block: CREATE TABLE IF NOT EXISTS (ours, and Optuna's
    when its storage first opens) races between workers that start at once ("duplicate key value
    violates unique constraint pg_type_typname_nsp_index")."""

    def __init__(self, url: str):
        self.url = url

    def __enter__(self):
        self.conn = connect(self.url)
        self.conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        return self

    def __exit__(self, *exc):
        try:
            self.conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))
        finally:
            self.conn.close()


def redact(url: str) -> str:
    scheme, _, rest = url.partition("://")
    if "@" in rest:
        who, _, where = rest.rpartition("@")
        return f"{scheme}://{who.split(':')[0]}:***@{where}" if ":" in who else url
    return url


class PgRecordStore(SavedSuite):
    """A RecordStore (records/store.py) over a PostgreSQL table; `root` is the local folder for what
    stays on the machine that runs a trial (saved adapters)."""

    def __init__(self, url: str, suite: str, root: Path | None = None):
        self.url, self.suite = url, suite
        self.root = Path(root) if root is not None else Path("results") / suite
        self.skipped: list[Problem] = []
        self._conn = None

    def __getstate__(self):  # a connection does not cross fork/spawn: each process opens its own
        return {**self.__dict__, "_conn": None}

    @property
    def conn(self):
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.url)
            with schema_lock(self.url):
                with self._conn.cursor() as cur:
                    cur.execute(SCHEMA)
        return self._conn

    @property
    def study_storage_url(self) -> str:
        return sqlalchemy_url(self.url)

    def study_name(self, key: str) -> str:
        """A cell's Optuna study, prefixed with the suite: one database holds many suites."""
        return f"{self.suite}/{key}"

    @property
    def where(self) -> str:
        return f"{redact(self.url)} (suite {self.suite})"

    def write(self, record: TrialRecord) -> str:
        body = record.model_dump_json()
        with self.conn.cursor() as cur:
            cur.execute("INSERT INTO harness_records (suite, cell_id, phase, trial_number, seed, schema_version, body) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (suite, cell_id, phase, trial_number, seed) "
                        "DO UPDATE SET body = EXCLUDED.body, schema_version = EXCLUDED.schema_version, written_at = now()",
                        (self.suite, record.cell_id, record.phase, record.trial_number, record.seed,
                         record.schema_version, body))
        return f"{self.where}: {record.cell_id} {record.phase} {record.trial_number}/{record.seed}"

    def has_records(self) -> bool:
        with self.conn.cursor() as cur:
            cur.execute("SELECT 1 FROM harness_records WHERE suite = %s LIMIT 1", (self.suite,))
            return cur.fetchone() is not None

    def count(self) -> int:
        with self.conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM harness_records WHERE suite = %s", (self.suite,))
            return int(cur.fetchone()[0])

    def has_studies(self) -> bool:
        return True  # the database holds the studies beside the records

    def save_suite(self, text: str) -> None:
        with self.conn.cursor() as cur:
            cur.execute("INSERT INTO harness_suites (suite, text) VALUES (%s, %s) ON CONFLICT (suite) "
                        "DO UPDATE SET text = EXCLUDED.text, written_at = now()", (self.suite, text))

    def saved_suite(self) -> str | None:
        with self.conn.cursor() as cur:
            cur.execute("SELECT text FROM harness_suites WHERE suite = %s", (self.suite,))
            row = cur.fetchone()
        return row[0] if row else None

    def load_all(self, skip_bad: bool = False) -> list[TrialRecord]:
        return self._load("", (), skip_bad)

    def load_cell(self, cell_id: str) -> list[TrialRecord]:
        return self._load(" AND cell_id = %s", (cell_id,), skip_bad=False)

    def _load(self, where: str, args: tuple, skip_bad: bool) -> list[TrialRecord]:
        with self.conn.cursor() as cur:
            cur.execute("SELECT cell_id, phase, trial_number, seed, body FROM harness_records WHERE suite = %s"
                        + where + " ORDER BY cell_id, phase, trial_number, seed", (self.suite, *args))
            rows = cur.fetchall()
        records, bad = [], []
        for cell, phase, number, seed, body in rows:
            name = f"{self.where}: {cell} {phase} trial {number} seed {seed}"
            try:
                data = body if isinstance(body, dict) else json.loads(body)
                records.append(TrialRecord.model_validate(upgrade(data)))
            except Exception as exc:  # noqa: BLE001 - a row that cannot be read names itself
                bad.append(Problem(name, None, "", f"not a trial record this harness can read: {exc}"[:500]))
        self.skipped = bad
        if bad and not skip_bad:
            raise UserError(bad)
        return records
