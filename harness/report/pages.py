"""What every HTML page of the harness shares: one Jinja environment (autoescaped), one way to put
JSON inside a <script> block, and one copy of plotly.js beside the page (loaded once, no CDN)."""

from __future__ import annotations

import json
import shutil
from functools import lru_cache
from pathlib import Path

from harness.records.store import write_text_atomic


@lru_cache(maxsize=1)
def environment():
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(loader=PackageLoader("harness.report", "templates"),
                       autoescape=select_autoescape(["j2", "html"]))


def safe_json(data):
    """JSON for a raw <script> block: "</" would end the block early; \\u2028/\\u2029 break older JS
    parsers. Marked safe for Jinja: HTML-escaping it would corrupt the JSON."""
    from markupsafe import Markup

    text = json.dumps(data).replace("</", "<\\/").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return Markup(text)


def figure_json(fig) -> dict:
    """A plotly figure as the plain dict the page draws."""
    return json.loads(fig.to_json())


def write_page(template: str, out_dir: Path, with_plotly: bool = False, **context) -> Path:
    """Render templates/<template> to out_dir/index.html; copy plotly.min.js beside it if asked."""
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / "index.html"
    write_text_atomic(page, environment().get_template(template).render(**context))
    if with_plotly:
        import plotly

        js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
        target = out_dir / "plotly.min.js"
        if not target.exists() or target.stat().st_size != js.stat().st_size:
            shutil.copyfile(js, target)
    return page
