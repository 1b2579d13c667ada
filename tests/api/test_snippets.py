"""The snippet the console hands out is the one the README shows (and the browser test pastes into a page)."""

from __future__ import annotations

from pathlib import Path

from api.sdk_documents import PublicBase
from api.snippets import analytics_js_snippet

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_consoles_snippet_is_the_readmes() -> None:
    section = README.read_text().split("### Web site: analytics.js", 1)[1]
    shown = section.split("```html\n", 1)[1].split("```", 1)[0]
    assert analytics_js_snippet("WRITE_KEY", PublicBase("https", "cdp.example.com")) == shown


def test_no_value_can_end_the_script_early() -> None:
    snippet = analytics_js_snippet('k"</script><script>alert(1)', PublicBase("http", "127.0.0.1:8080"))
    assert snippet.count("</script>") == 2 and "<script>alert" not in snippet
    assert 'analytics._writeKey = "k\\"\\u003c/script>\\u003cscript>alert(1)";' in snippet
