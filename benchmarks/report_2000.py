"""How long the HTML report takes for 2,000 trial records (3 tasks x 4 models x 10 methods).

    python benchmarks/report_2000.py [--records 2000]"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from harness.records.synthetic import many_records
from harness.report.publish import publish


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=2000)
    args = parser.parse_args()
    records = many_records(args.records)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with open("/dev/null", "w") as sink:
            from rich.console import Console

            page = publish(records, Path(tmp) / "report", None, "name: synthetic\n", console=Console(file=sink)).page
        elapsed = time.perf_counter() - t0
        size = page.stat().st_size
    print(f"report for {len(records)} records: {elapsed:.2f} s, index.html {size / 1e6:.2f} MB "
          f"(plotly.min.js written once beside it)")


if __name__ == "__main__":
    main()
