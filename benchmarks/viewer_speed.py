"""The shared viewer (vce_core.viewer) in Chromium: page weight, time to first paint, scroll latency.

Builds one page with ``head_html()`` and a viewer of two linked panels over a 1 mm-sized stack (189 slices
of 233 × 197, uint16), the first slice inline and the rest served by an in-page loader (as the explorer
does), or ``--inline`` with every slice in the page (as a reader-study item does). Measures in Debian's
Chromium with Playwright:

* page weight: script + style, and the payload, raw and gzip-compressed;
* time to first paint: navigation start → the first panel's canvas holds the image;
* scroll latency: a wheel event → the next animation frame with both panels redrawn (p50/p95 of 200);
* ``--niivue FILE``: the size of another viewer's bundle for comparison (e.g. ``dist/niivue.umd.js`` of
  ``npm pack @niivue/niivue``), raw and gzip-compressed.

    python -m benchmarks.viewer_speed [--inline] [--niivue FILE]
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

SHAPE = (189, 233, 197)  # slices, rows, cols


def stack() -> Any:
    """A head-like float stack of :data:`SHAPE` (numpy array)."""
    import numpy as np

    rng = np.random.default_rng(0)
    k, r, c = np.meshgrid(*(np.linspace(-1, 1, n) for n in SHAPE), indexing="ij")
    head = (k / 0.9) ** 2 + (r / 0.85) ** 2 + (c / 0.75) ** 2 < 1
    return np.where(head, 800 + 200 * np.sin(8 * r) + rng.normal(0, 20, SHAPE), rng.normal(0, 5, SHAPE))


def page(inline: bool) -> tuple[str, str, str]:
    """The HTML page, the viewer's code (script and style) and the viewer element with its payload."""
    from vce_core.viewer import Encoding, Panel, Stack, head_html, payload, viewer_html

    data = stack()
    enc = Encoding.for_range(-100.0, 1500.0)
    encoded = [enc.encode(s) for s in data]
    mid = SHAPE[0] // 2
    keep = range(SHAPE[0]) if inline else [mid]
    stacks = {"a": Stack(enc, {k: encoded[k] for k in keep}), "b": Stack(enc, {k: encoded[k] for k in keep})}
    view = payload(
        group="bench",
        panels=[Panel("a", "A", stack="a"), Panel("b", "B − A", derive=Panel.difference("b", "a"))],
        stacks=stacks,
        count=SHAPE[0],
        index=mid,
        shape=SHAPE[1:],
        spacing=(1.0, 1.0),
        window=(700.0, 1400.0),
        plane="axial",
        panel_height=400,
        prefetch=4,
    )
    loader = (
        "<script>const SLICES = " + json.dumps(encoded) + ";\n"
        "VCEViewer.setLoader('bench', (reqs) => new Promise((ok) => setTimeout(() => { const out = {};"
        " for (const r of reqs) { (out[r.stack] = out[r.stack] || {})[r.index] = SLICES[r.index]; }"
        " ok(out); }, 5)));</script>"
    )
    body = viewer_html(view, element_id="bench")
    extra = "" if inline else loader
    text = f"<html><head>{head_html()}</head><body style='width:900px'>{body}{extra}</body></html>"
    return text, head_html(), body


MEASURE = """async () => {
  const canvas = document.querySelector('.vce-canvas');
  const nav = performance.getEntriesByType('navigation')[0];
  const times = [];
  for (let n = 0; n < 200; n++) {
    const t0 = performance.now();
    const deltaY = n % 40 < 20 ? 50 : -50;
    canvas.dispatchEvent(new WheelEvent('wheel', {deltaY, bubbles: true, cancelable: true}));
    await new Promise((ok) => requestAnimationFrame(() => ok()));
    times.push(performance.now() - t0);
  }
  return {times, domLoaded: nav.domContentLoadedEventEnd};
}"""

FIRST_PAINT = """() => new Promise((ok) => {
  const check = () => {
    const c = document.querySelector('.vce-canvas');
    if (c && c.width > 0) {
      const d = c.getContext('2d').getImageData(c.width / 2, c.height / 2, 1, 1).data;
      if (d[0] + d[1] + d[2] > 0) return ok(performance.now());
    }
    requestAnimationFrame(check);
  };
  check();
})"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inline", action="store_true", help="every slice in the page (no loader)")
    parser.add_argument("--niivue", type=Path, default=None, help="another viewer's bundle, for its size")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    text, code, body = page(args.inline)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "viewer.html"
        path.write_text(text)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                tab = browser.new_page(viewport={"width": 1000, "height": 700})
                tab.goto(path.as_uri())
                first = tab.evaluate(FIRST_PAINT)
                tab.wait_for_timeout(2000)  # prefetch settles
                result = tab.evaluate(MEASURE)
            finally:
                browser.close()
    times = sorted(result["times"])
    mode = "inline" if args.inline else "lazy loader"
    print(f"stack {SHAPE[0]} × {SHAPE[1]} × {SHAPE[2]} uint16, two linked panels, {mode}")
    for name, part in (("viewer code (script + style)", code), ("viewer element with its payload", body)):
        raw = part.encode()
        print(f"{name}: {len(raw) / 1024:.1f} KiB ({len(gzip.compress(raw)) / 1024:.1f} KiB gzip)")
    print(
        f"first paint {first:.0f} ms after navigation start (DOMContentLoaded {result['domLoaded']:.0f} ms)"
    )
    print(
        f"scroll: wheel → next frame p50 {statistics.median(times):.1f} ms, "
        f"p95 {times[int(0.95 * (len(times) - 1))]:.1f} ms over {len(times)} events"
    )
    if args.niivue:
        raw = args.niivue.read_bytes()
        print(
            f"{args.niivue.name}: {len(raw) / 1024:.0f} KiB ({len(gzip.compress(raw)) / 1024:.0f} KiB gzip)"
        )


if __name__ == "__main__":
    main()
