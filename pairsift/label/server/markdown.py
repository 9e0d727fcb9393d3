"""A tiny, safe Markdown subset for the guidelines panel.

Everything is HTML-escaped first; only then are a few constructs turned into tags this module
writes itself: headings (``#`` .. ``####``), paragraphs, ``-``/``*`` and ``1.`` lists, fenced
code blocks, inline ``code``, ``**bold**``, ``*italic*`` and ``[text](https://...)`` links
(http and https only). Raw HTML in the file is shown as text, never interpreted.
"""

from __future__ import annotations

import html
import re

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_EM = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")
_LINK = re.compile(r"\[([^\]]+)\]\((https?://[^\s()]+)\)")


def _inline(text: str) -> str:
    out = html.escape(text, quote=True)
    codes: list[str] = []

    def keep(m: re.Match) -> str:
        codes.append(f"<code>{m.group(1)}</code>")
        return f"\x00{len(codes) - 1}\x00"

    out = _CODE.sub(keep, out)  # no other markup inside code spans
    out = _LINK.sub(lambda m: f'<a href="{m.group(2)}" rel="noopener noreferrer" target="_blank">{m.group(1)}</a>', out)
    out = _BOLD.sub(r"<strong>\1</strong>", out)
    out = _EM.sub(r"<em>\1</em>", out)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], out)


def render(markdown: str) -> str:
    """HTML for `markdown` (see the module doc for what is understood)."""
    out: list[str] = []
    para: list[str] = []
    lst: str | None = None
    code: list[str] | None = None

    def flush() -> None:
        nonlocal lst
        if para:
            out.append("<p>" + " ".join(_inline(x) for x in para) + "</p>")
            para.clear()
        if lst:
            out.append(f"</{lst}>")
            lst = None

    for line in markdown.splitlines():
        if code is not None:
            if line.strip().startswith("```"):
                out.append("<pre><code>" + html.escape("\n".join(code), quote=True) + "</code></pre>")
                code = None
            else:
                code.append(line)
            continue
        stripped = line.strip()
        if stripped.startswith("```"):
            flush()
            code = []
            continue
        heading = re.match(r"^(#{1,4})\s+(.*)$", stripped)
        item = re.match(r"^([-*]|\d+[.)])\s+(.*)$", stripped)
        if not stripped:
            flush()
        elif heading:
            flush()
            level = len(heading.group(1)) + 2  # the page title is h1/h2
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif item:
            kind = "ol" if item.group(1)[0].isdigit() else "ul"
            if para:
                out.append("<p>" + " ".join(_inline(x) for x in para) + "</p>")
                para.clear()
            if lst != kind:
                if lst:
                    out.append(f"</{lst}>")
                out.append(f"<{kind}>")
                lst = kind
            out.append(f"<li>{_inline(item.group(2))}</li>")
        else:
            if lst:
                out.append(f"</{lst}>")
                lst = None
            para.append(stripped)
    if code is not None:
        out.append("<pre><code>" + html.escape("\n".join(code), quote=True) + "</code></pre>")
    flush()
    return "\n".join(out)
