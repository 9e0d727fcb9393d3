"""The guidelines' Markdown subset: what it renders, and that raw HTML stays text."""

from pairsift.label.server.markdown import render


def test_subset_renders():
    out = render("# Title\nSome **bold**, *em* and `x < y`.\n\n- one\n- two\n\n1. first\n\n```\n<b>code</b>\n```\n"
                 "[docs](https://example.org/a?b=1&c=2)")
    assert "<h3>Title</h3>" in out and "<strong>bold</strong>" in out and "<em>em</em>" in out
    assert "<code>x &lt; y</code>" in out and "<ul>\n<li>one</li>\n<li>two</li>\n</ul>" in out
    assert "<ol>\n<li>first</li>\n</ol>" in out and "<pre><code>&lt;b&gt;code&lt;/b&gt;</code></pre>" in out
    assert '<a href="https://example.org/a?b=1&amp;c=2" rel="noopener noreferrer" target="_blank">docs</a>' in out


def test_html_and_bad_links_stay_text():
    out = render('<script>alert(1)</script>\n<img src=x onerror="alert(1)">\n[x](javascript:alert(1))\n'
                 '[y](https://a.org/"onmouseover="alert(1))')
    assert "<script" not in out and "<img" not in out and 'href="javascript' not in out
    assert "&lt;script&gt;" in out and 'onmouseover="' not in out
