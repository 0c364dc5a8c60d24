"""GX Data Docs as static HTML that opens offline: no CDN, no script or style from the network."""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path
from typing import Any

from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView

from expectations.gate import gx_context
from marginwatch.compiled_templates import template_cache

SITE = "marginwatch"
# GX's templates pull Bootstrap, jQuery and fonts from CDNs; the pages are server-rendered
# tables, so they read fine without them once a small local stylesheet stands in.
_REMOTE_TAG = re.compile(
    r"<(?:link|script)\b[^>]*?(?:href|src)\s*=\s*[\"']https?://[^\"']*[\"'][^>]*?>(?:\s*</script>)?",
    re.IGNORECASE,
)
_REMOTE_SRC = re.compile(r"""\ssrc\s*=\s*["']https?://[^"']*["']""", re.IGNORECASE)
_REMOTE_IMPORT = re.compile(r"@import\s+url\([\"']?https?://[^)]*\)\s*;?", re.IGNORECASE)
OFFLINE_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1d2733; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #c8d0da; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #eef2f6; }
a { color: #0b5cad; }
.alert-danger, .text-danger { color: #a4161a; }
.alert-success, .text-success { color: #1b6e3a; }
img { max-height: 2rem; }
"""


class _CompiledOnce:
    """A GX page view whose templates' compiled code is kept between runs (see marginwatch/compiled_templates.py)."""

    env: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.env.bytecode_cache = template_cache()


class CompiledOncePageView(_CompiledOnce, DefaultJinjaPageView):
    """GX's page view, compiled once."""


class CompiledOnceIndexPageView(_CompiledOnce, DefaultJinjaIndexPageView):
    """GX's index page view, compiled once."""


def _view(name: str) -> dict[str, str]:
    return {"module_name": __name__, "class_name": name}


def build_data_docs(directory: Path) -> Path:
    """Build Data Docs for this process's validations into `directory`; return its index page."""
    context = gx_context()
    directory = directory.resolve()  # GX wants an absolute folder
    if directory.exists():
        shutil.rmtree(directory)
    if SITE in (context.get_site_names() or []):
        context.delete_data_docs_site(SITE)  # the folder may differ from the last build's
    context.add_data_docs_site(
        site_name=SITE,
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(directory)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder", "view": _view("CompiledOnceIndexPageView")},
            "site_section_builders": {
                section: {"view": _view("CompiledOncePageView")}
                for section in ("expectations", "validations", "profiling")
            },
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        context.build_data_docs(site_names=[SITE])
    make_offline(directory)
    return directory / "index.html"


def make_offline(directory: Path) -> None:
    """Strip remote scripts and styles from every page and link a local stylesheet instead."""
    css = directory / "static" / "styles" / "offline.css"
    css.parent.mkdir(parents=True, exist_ok=True)
    css.write_text(OFFLINE_CSS, encoding="utf-8")
    for page in directory.rglob("*.html"):
        html = _REMOTE_IMPORT.sub("", _REMOTE_TAG.sub("", page.read_text(encoding="utf-8")))
        root = Path(*([".."] * (len(page.relative_to(directory).parts) - 1)))
        html = _REMOTE_SRC.sub(f' src="{(root / "static/images/logo-long.png").as_posix()}"', html)
        link = f'<link rel="stylesheet" href="{(root / "static/styles/offline.css").as_posix()}">'
        html = html.replace("</head>", f"{link}</head>", 1)
        page.write_text(html, encoding="utf-8")
