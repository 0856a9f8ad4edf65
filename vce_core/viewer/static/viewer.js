/* VCE stack viewer: linked slice panels with wheel/keyboard scrolling, drag window/level, presets,
 * orientation markers and smooth square-pixel enlargement, all client-side once slices are loaded.
 *
 * Mounting: any element with a `data-vce-viewer` attribute holding the JSON payload of
 * vce_core.viewer.payload() is mounted automatically (a MutationObserver watches the document), so the
 * viewer works inside HTML inserted by any framework. Public API (window.VCEViewer):
 *   mount(element, payload)           mount or update a viewer group explicitly
 *   setLoader(group, fn)              fn([{stack, index}]) -> Promise<{stack: {index: base64}}>
 *   setIndex(group, index)            move every panel of a group to slice `index` (0-based)
 *   state(group)                      {index, level, width, preset, count}
 * Events (bubbling CustomEvent on the viewer element): "vce-viewer-change" with detail
 *   {group, index, level, width, preset, reason}; reason "slice" is debounced (150 ms).
 * No dependencies, no network access of its own: slices arrive in the payload or through the loader.
 */
(function () {
  "use strict";
  if (window.VCEViewer) return;

  const RDBU = [[5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [209, 229, 240],
    [247, 247, 247], [253, 219, 199], [244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31]];
  const CACHE_LIMIT_BYTES = 384 * 1024 * 1024;
  const groups = new Map();
  const loaders = new Map();
  const stacks = new Map(); // stack id -> {meta, slices: Map(index -> Float32Array), bytes}
  let cachedBytes = 0;

  /* Numbers for people: at most 4 significant digits, integers above 100, no float noise. */
  function fmt(v) {
    if (!isFinite(v)) return "–";
    const a = Math.abs(v);
    if (a >= 100) return String(Math.round(v));
    if (a >= 1) return String(Number(v.toFixed(1)));
    if (a === 0) return "0";
    return String(Number(v.toPrecision(2)));
  }

  function decode(b64, meta) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const raw = meta.dtype === "uint16" ? new Uint16Array(bytes.buffer) : bytes;
    const out = new Float32Array(raw.length);
    const s = meta.scale, o = meta.offset;
    for (let i = 0; i < raw.length; i++) out[i] = o + s * raw[i];
    return out;
  }

  function stackEntry(id, meta) {
    let entry = stacks.get(id);
    if (!entry) {
      entry = { meta: meta, slices: new Map(), bytes: 0 };
      stacks.set(id, entry);
    } else if (meta) {
      entry.meta = meta;
    }
    return entry;
  }

  function evict() {
    for (const [id, entry] of stacks) {
      if (cachedBytes <= CACHE_LIMIT_BYTES) break;
      if (isInUse(id)) continue;
      cachedBytes -= entry.bytes;
      stacks.delete(id);
    }
  }

  function isInUse(id) {
    for (const g of groups.values()) if (g.stackIds().has(id)) return true;
    return false;
  }

  function store(id, index, b64) {
    const entry = stacks.get(id);
    if (!entry || entry.slices.has(index)) return;
    const data = decode(b64, entry.meta);
    entry.slices.set(index, data);
    entry.bytes += data.byteLength;
    cachedBytes += data.byteLength;
    stacks.delete(id); // most recently used last
    stacks.set(id, entry);
    evict();
  }

  function sliceOf(id, index) {
    const entry = stacks.get(id);
    return entry ? entry.slices.get(index) : undefined;
  }

  function el(tag, cls, parent, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  /* ------------------------------------------------------------------------------------ a panel */
  class Panel {
    constructor(group, host) {
      this.group = group;
      this.box = el("div", "vce-panel", host);
      this.canvas = el("canvas", "vce-canvas", this.box);
      this.title = el("div", "vce-title", this.box);
      this.markers = {};
      for (const side of ["top", "bottom", "left", "right"]) {
        this.markers[side] = el("div", "vce-marker vce-marker-" + side, this.box);
      }
      this.info = el("div", "vce-info", this.box);
      this.winfo = el("div", "vce-winfo", this.box);
      this.bar = el("canvas", "vce-colorbar", this.box);
      this.barLabels = el("div", "vce-colorbar-labels", this.box);
      this.busy = el("div", "vce-busy", this.box);
      this.off = document.createElement("canvas");
      this.spec = null;
    }

    set(spec) {
      this.spec = spec;
      this.title.textContent = spec.title || "";
      this.box.dataset.panel = spec.key || "";
      const m = this.group.payload.markers || {};
      for (const side in this.markers) this.markers[side].textContent = m[side] || "";
      const diverging = spec.colormap === "diverging";
      this.bar.style.display = diverging ? "" : "none";
      this.barLabels.style.display = diverging ? "" : "none";
      this.winfo.style.display = diverging ? "none" : "";
    }

    values(index) {
      const s = this.spec;
      if (!s) return null;
      if (s.stack) return sliceOf(s.stack, index) || null;
      if (!s.derive) return null;
      const a = sliceOf(s.derive.a, index), b = sliceOf(s.derive.b, index);
      if (!a || !b) return null;
      const out = new Float32Array(a.length);
      if (s.derive.op === "lerp") {
        const t = s.derive.t;
        for (let i = 0; i < a.length; i++) out[i] = a[i] + t * (b[i] - a[i]);
      } else {
        for (let i = 0; i < a.length; i++) out[i] = a[i] - b[i];
      }
      return out;
    }

    limit() {
      const s = this.spec;
      if (s.limit) return s.limit;
      const w = this.group.window.width * (s.limit_from_width || 0.25);
      return Number(w.toPrecision(2));
    }

    draw() {
      const g = this.group, p = g.payload, s = this.spec;
      if (!s) return;
      const index = g.index;
      const busyText = s.busy ? (s.busy === true ? "computing…" : s.busy) : "";
      const vals = s.message ? null : this.values(index);
      if (s.message) this.showBusy(s.message, false);
      else if (!vals) this.showBusy(busyText || "loading slice " + (index + 1) + "…", true);
      else if (busyText) this.showBusy(busyText, true);
      else this.showBusy("", false);
      this.info.textContent = "Slice " + (index + 1) + " / " + p.count;
      this.winfo.textContent = "W " + fmt(g.window.width) + " L " + fmt(g.window.level);
      const rows = p.rows, cols = p.cols;
      const ctx = this.canvas.getContext("2d");
      this.resize(rows, cols);
      if (!vals) {
        ctx.fillStyle = "#000";
        ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
        return;
      }
      this.off.width = cols;
      this.off.height = rows;
      const octx = this.off.getContext("2d");
      const image = octx.createImageData(cols, rows);
      const px = image.data;
      if (s.colormap === "diverging") {
        const lim = Math.max(this.limit(), 1e-6), lut = divergingLut();
        for (let i = 0, j = 0; i < vals.length; i++, j += 4) {
          let t = (vals[i] / lim + 1) / 2;
          t = t < 0 ? 0 : t > 1 ? 1 : t;
          const c = (t * 255) | 0;
          px[j] = lut[3 * c]; px[j + 1] = lut[3 * c + 1]; px[j + 2] = lut[3 * c + 2]; px[j + 3] = 255;
        }
        this.drawBar(lim, s.units || "");
      } else {
        const w = Math.max(g.window.width, 1e-6), low = g.window.level - w / 2, k = 255 / w;
        for (let i = 0, j = 0; i < vals.length; i++, j += 4) {
          let v = (vals[i] - low) * k;
          v = v < 0 ? 0 : v > 255 ? 255 : v;
          px[j] = px[j + 1] = px[j + 2] = v; px[j + 3] = 255;
        }
      }
      octx.putImageData(image, 0, 0);
      ctx.imageSmoothingEnabled = true;
      ctx.imageSmoothingQuality = "high";
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
      ctx.drawImage(this.off, this.dx, this.dy, this.dw, this.dh);
    }

    /* Fit the image's physical size (mm) into the panel box: square pixels, centred, smooth scaling. */
    resize(rows, cols) {
      const p = this.group.payload;
      const ratio = window.devicePixelRatio || 1;
      const bw = Math.max(this.box.clientWidth, 16), bh = Math.max(this.box.clientHeight, 16);
      if (this.canvas.width !== Math.round(bw * ratio) || this.canvas.height !== Math.round(bh * ratio)) {
        this.canvas.width = Math.round(bw * ratio);
        this.canvas.height = Math.round(bh * ratio);
      }
      const mmW = cols * p.spacing[1], mmH = rows * p.spacing[0];
      const scale = Math.min(this.canvas.width / mmW, this.canvas.height / mmH);
      this.dw = mmW * scale;
      this.dh = mmH * scale;
      this.dx = (this.canvas.width - this.dw) / 2;
      this.dy = (this.canvas.height - this.dh) / 2;
    }

    drawBar(limit, units) {
      const h = 128, ctx = this.bar.getContext("2d"), lut = divergingLut();
      this.bar.width = 1;
      this.bar.height = h;
      const img = ctx.createImageData(1, h);
      for (let y = 0; y < h; y++) {
        const c = Math.round(255 * (1 - y / (h - 1)));
        img.data.set([lut[3 * c], lut[3 * c + 1], lut[3 * c + 2], 255], 4 * y);
      }
      ctx.putImageData(img, 0, 0);
      const sign = (v) => (v > 0 ? "+" : "") + fmt(v);
      this.barLabels.textContent = "";
      for (const v of [limit, 0, -limit]) el("span", "", this.barLabels, v === 0 ? "0" : sign(v));
      el("span", "vce-units", this.barLabels, units);
    }

    showBusy(text, spinning) {
      this.busy.textContent = text;
      this.busy.style.display = text ? "" : "none";
      this.busy.classList.toggle("vce-spin", !!spinning);
    }
  }

  let lutCache = null;
  function divergingLut() {
    if (lutCache) return lutCache;
    lutCache = new Uint8Array(256 * 3);
    for (let c = 0; c < 256; c++) {
      const pos = (c / 255) * (RDBU.length - 1), lo = Math.floor(pos), hi = Math.min(lo + 1, RDBU.length - 1);
      const f = pos - lo;
      for (let k = 0; k < 3; k++) lutCache[3 * c + k] = Math.round(RDBU[lo][k] * (1 - f) + RDBU[hi][k] * f);
    }
    return lutCache;
  }

  /* ------------------------------------------------------------------------------------ a group */
  class Group {
    constructor(id) {
      this.id = id;
      this.root = null;
      this.panels = [];
      this.payload = null;
      this.index = 0;
      this.window = { level: 0.5, width: 1 };
      this.preset = "";
      this.context = null;
      this.inflight = new Set();
      this.sliceTimer = null;
    }

    stackIds() {
      const ids = new Set();
      for (const s of (this.payload && this.payload.panels) || []) {
        if (s.stack) ids.add(s.stack);
        if (s.derive) { ids.add(s.derive.a); ids.add(s.derive.b); }
      }
      return ids;
    }

    attach(root) {
      if (this.root === root && this.grid && root.contains(this.grid)) return;
      this.root = root;
      root.classList.add("vce-viewer");
      root.textContent = "";
      root.tabIndex = 0;
      this.toolbar = el("div", "vce-toolbar", root);
      this.grid = el("div", "vce-grid", root);
      this.panels = [];
      if (root.__vceGroup === this) return;
      root.__vceGroup = this;
      root.addEventListener("wheel", (e) => this.onWheel(e), { passive: false });
      root.addEventListener("keydown", (e) => this.onKey(e));
      root.addEventListener("pointerdown", (e) => this.onPointerDown(e));
      root.addEventListener("dblclick", () => this.applyPreset(this.payload.window.preset));
      if (window.ResizeObserver && !root.__vceResize) {
        root.__vceResize = new ResizeObserver(() => this.draw());
        root.__vceResize.observe(root);
      }
    }

    update(payload) {
      const first = this.payload === null;
      this.payload = payload;
      for (const [id, meta] of Object.entries(payload.stacks || {})) {
        const entry = stackEntry(id, meta);
        for (const [k, b64] of Object.entries(meta.slices || {})) store(id, Number(k), b64);
        delete entry.meta.slices;
      }
      if (first || payload.context !== this.context || payload.reset) {
        this.context = payload.context;
        this.index = payload.index;
        this.window = { level: payload.window.level, width: payload.window.width };
        this.preset = payload.window.preset || "";
      }
      this.index = Math.max(0, Math.min(payload.count - 1, this.index));
      this.build();
      this.draw();
      this.prefetch();
    }

    build() {
      const p = this.payload;
      this.grid.style.gridTemplateColumns = "repeat(" + (p.columns || p.panels.length) + ", minmax(0, 1fr))";
      this.grid.style.setProperty("--vce-aspect", p.cols * p.spacing[1] + " / " + p.rows * p.spacing[0]);
      this.grid.style.setProperty("--vce-panel-height", p.panel_height ? p.panel_height + "px" : "auto");
      this.grid.classList.toggle("vce-fixed-height", !!p.panel_height);
      while (this.panels.length < p.panels.length) this.panels.push(new Panel(this, this.grid));
      while (this.panels.length > p.panels.length) this.panels.pop().box.remove();
      p.panels.forEach((spec, n) => this.panels[n].set(spec));
      this.toolbar.textContent = "";
      this.presetButtons = {};
      for (const name of Object.keys(p.presets || {})) {
        const b = el("button", "vce-preset", this.toolbar, name);
        b.type = "button";
        b.addEventListener("click", () => this.applyPreset(name));
        this.presetButtons[name] = b;
      }
      this.presetLabel = el("span", "vce-preset-state", this.toolbar);
      el("span", "vce-hint", this.toolbar, p.hint || "wheel or ↑/↓: slice · drag: window/level · double-click: reset");
      this.markPreset();
    }

    markPreset() {
      for (const [name, b] of Object.entries(this.presetButtons || {})) {
        b.classList.toggle("vce-active", name === this.preset);
        b.setAttribute("aria-pressed", name === this.preset ? "true" : "false");
      }
      if (this.presetLabel) this.presetLabel.textContent = this.preset ? "" : "custom window";
    }

    draw() {
      if (!this.payload) return;
      for (const panel of this.panels) panel.draw();
    }

    emit(reason) {
      if (!this.root) return;
      const detail = { group: this.id, index: this.index, level: this.window.level,
        width: this.window.width, preset: this.preset, reason: reason };
      this.root.dispatchEvent(new CustomEvent("vce-viewer-change", { detail: detail, bubbles: true, composed: true }));
    }

    setIndex(index, notify) {
      const n = this.payload ? this.payload.count : 1;
      const k = Math.max(0, Math.min(n - 1, Math.round(index)));
      if (k === this.index) return;
      this.index = k;
      this.draw();
      this.prefetch();
      if (notify) {
        clearTimeout(this.sliceTimer);
        this.sliceTimer = setTimeout(() => this.emit("slice"), 150);
      }
    }

    setWindow(level, width, preset) {
      this.window = { level: level, width: Math.max(width, 1e-6) };
      this.preset = preset || "";
      this.markPreset();
      this.draw();
    }

    applyPreset(name) {
      const w = (this.payload.presets || {})[name];
      if (!w) return;
      this.setWindow(w[0], w[1], name);
      this.emit("window");
    }

    onWheel(e) {
      e.preventDefault();
      this.wheelAccum = (this.wheelAccum || 0) + (e.deltaMode === 1 ? e.deltaY * 40 : e.deltaY);
      const steps = Math.trunc(this.wheelAccum / 50);
      if (steps !== 0) {
        this.wheelAccum -= steps * 50;
        this.setIndex(this.index + steps, true);
      }
    }

    onKey(e) {
      const n = this.payload ? this.payload.count : 1;
      const moves = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1, PageDown: 10, PageUp: -10 };
      let target = null;
      if (e.key in moves) target = this.index + moves[e.key];
      else if (e.key === "Home") target = 0;
      else if (e.key === "End") target = n - 1;
      if (target === null) return;
      e.preventDefault();
      this.setIndex(target, true);
    }

    onPointerDown(e) {
      if (e.button !== 0 || !e.target.classList.contains("vce-canvas")) return;
      e.preventDefault();
      this.root.focus({ preventScroll: true });
      const start = { x: e.clientX, y: e.clientY, level: this.window.level, width: this.window.width };
      const per = this.payload.drag_scale || Math.max(this.window.width, 1e-6) / 256;
      const move = (ev) => {
        const dx = ev.clientX - start.x, dy = ev.clientY - start.y;
        if (Math.abs(dx) + Math.abs(dy) < 2) return;
        this.setWindow(start.level + dy * per, Math.max(start.width + dx * per, per), "");
      };
      const up = () => {
        window.removeEventListener("pointermove", move);
        window.removeEventListener("pointerup", up);
        this.emit("window");
      };
      window.addEventListener("pointermove", move);
      window.addEventListener("pointerup", up);
    }

    /* Ask the loader for the missing slices around the current one (nearest first). */
    prefetch() {
      const loader = loaders.get(this.id);
      if (!loader || !this.payload) return;
      const radius = this.payload.prefetch === undefined ? 3 : this.payload.prefetch;
      const wanted = [];
      const order = [0];
      for (let d = 1; d <= radius; d++) order.push(d, -d);
      for (const d of order) {
        const k = this.index + d;
        if (k < 0 || k >= this.payload.count) continue;
        for (const id of this.stackIds()) {
          const key = id + "#" + k;
          if (sliceOf(id, k) || this.inflight.has(key)) continue;
          const meta = stacks.get(id) && stacks.get(id).meta;
          if (meta && meta.lazy === false) continue;
          wanted.push({ stack: id, index: k });
          this.inflight.add(key);
        }
      }
      if (!wanted.length) return;
      let got = 0;
      Promise.resolve(loader(wanted)).then((answer) => {
        for (const [id, byIndex] of Object.entries(answer || {})) {
          for (const [k, b64] of Object.entries(byIndex || {})) if (b64) { store(id, Number(k), b64); got++; }
        }
      }).catch((err) => console.warn("vce viewer: loading slices failed", err)).finally(() => {
        for (const w of wanted) this.inflight.delete(w.stack + "#" + w.index);
        this.draw();
        // the person may have scrolled on meanwhile; ask again only if the loader had something to give
        if (got > 0) this.prefetch();
      });
    }
  }

  function group(id) {
    let g = groups.get(id);
    if (!g) { g = new Group(id); groups.set(id, g); }
    return g;
  }

  function mount(element, payload) {
    const g = group(payload.group || element.id || "vce-viewer");
    g.attach(element);
    g.update(payload);
    return g;
  }

  function scan(root) {
    const nodes = root.querySelectorAll ? root.querySelectorAll("[data-vce-viewer]") : [];
    for (const node of nodes) {
      const text = node.getAttribute("data-vce-viewer");
      // a host framework may re-render the element and drop what the viewer built: mount again then
      if (!text || (node.__vceText === text && node.querySelector(".vce-grid"))) continue;
      node.__vceText = text;
      try {
        mount(node, JSON.parse(text));
      } catch (err) {
        console.error("vce viewer: bad payload", err);
      }
    }
  }

  function start() {
    scan(document);
    new MutationObserver(() => scan(document)).observe(document.documentElement, {
      childList: true, subtree: true, attributes: true, attributeFilter: ["data-vce-viewer"] });
  }

  window.VCEViewer = {
    mount: mount,
    setLoader: (id, fn) => { loaders.set(id, fn); const g = groups.get(id); if (g) g.prefetch(); },
    setIndex: (id, index) => { const g = groups.get(id); if (g) g.setIndex(index, false); },
    state: (id) => {
      const g = groups.get(id);
      return g ? { index: g.index, level: g.window.level, width: g.window.width, preset: g.preset,
        count: g.payload ? g.payload.count : 0 } : null;
    },
    format: fmt,
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
