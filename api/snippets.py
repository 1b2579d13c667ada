"""The ready-to-paste tracking snippet the console hands out for a source: analytics.js (Segment's
``@segment/analytics-next``) pointed at this installation, as the README's "Send events" shows it.

A pure function of the write key and the public address, so the console, the README and the browser test that
pastes it into a page all speak of the same text.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from api.sdk_documents import PublicBase

# The script the snippet loads: the file dist/umd/standalone.js of the npm package, served by the site itself at
# this path (the SDK reads its write key from the path), or Segment's CDN copy at the same path.
SCRIPT_PATH = "/analytics.js/v1/{write_key}/analytics.min.js"
SEGMENT_CDN = "https://cdn.segment.com"

_SNIPPET = """<script>
  window.analytics = window.analytics || [];
  analytics._writeKey = {write_key};
  analytics._cdn = {cdn};  /* settings from cdp, which name cdp as the API host */
  ["page", "track", "identify", "group", "alias", "screen", "reset", "ready", "on"].forEach(function (m) {
    analytics[m] = function () { analytics.push([m].concat([].slice.call(arguments))); return analytics; };
  });
  analytics.page();
</script>
<script async src="{script}"></script>
"""


def analytics_js_snippet(write_key: str, base: PublicBase) -> str:
    """The analytics.js snippet for one source. The values are JS strings with ``<`` escaped, so no value can
    end the script early (write keys are URL-safe base64 and the base a checked host: this is a second guard)."""
    return (
        _SNIPPET.replace("{write_key}", _js_string(write_key))
        .replace("{cdn}", _js_string(base.url))
        .replace("{script}", SCRIPT_PATH.format(write_key=quote(write_key, safe="")))
    )


def _js_string(value: str) -> str:
    return json.dumps(value).replace("<", "\\u003c")
