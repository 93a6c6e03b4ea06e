"""One page: a template rendered with its stylesheet and scripts inline, and the CSP that admits them.

The policy forbids everything (``default-src 'none'``) but the page's own
inline blocks, named by their sha256 hashes, computed here from the very
text that goes between the tags; images only as ``data:`` URIs. So a
recorded ``<script>`` that slipped through escaping still would not run,
and the page makes no network request at all.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup

__all__ = ["inert_json", "render_page"]

_JSON_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


@cache
def _asset(name: str) -> str:
    return resources.files("baton.replay.html").joinpath("templates", name).read_text("utf-8")


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("baton.replay.html", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def inert_json(value: Any) -> Markup:
    """``value`` as JSON that can sit inside ``<script type="application/json">`` whatever it holds.

    ``<``, ``>`` and ``&`` become ``\\u`` escapes, so no ``</script>`` (or
    ``<!--``) in a recorded value can end the block; JSON.parse reads them back.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    for raw, escaped in _JSON_ESCAPES.items():
        text = text.replace(raw, escaped)
    return Markup(text)


def _source_hash(block: str) -> str:
    digest = hashlib.sha256(block.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def render_page(template: str, *, title: str, scripts: Sequence[str] = (), **context: Any) -> str:
    """The page ``template`` renders, with ``page.css`` and the named scripts inline under a CSP."""
    css = _asset("page.css")
    script_texts = [_asset(name) for name in scripts]
    script_src = " ".join(_source_hash(s) for s in script_texts) or "'none'"
    policy = (
        "default-src 'none'; "
        f"style-src {_source_hash(css)}; "
        f"script-src {script_src}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    page = _environment().get_template(template)
    return page.render(
        title=title,
        csp=Markup(policy),  # our own text: hashes (base64) and keywords, no double quote
        css=Markup(css),
        scripts=[Markup(s) for s in script_texts],
        **context,
    )
