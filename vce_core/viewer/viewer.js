() => {
  // vce_core.viewer: stack viewer for <div class="vce-viewer" data-payload="{...}"> elements.
  // Mouse wheel / arrow keys / PageUp-PageDown / on-screen buttons: slice; left-drag: window (right-left
  // = width, up-down = level); preset buttons; double-click: reset; smooth (interpolated) enlargement.
  if (window.__vceViewer) return;
  window.__vceViewer = true;

  const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));

  function decode(payload) {
    const raw = atob(payload.pixels);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }

  function build(root) {
    const text = root.getAttribute('data-payload');
    if (!text || root.__vceText === text) return;
    root.__vceText = text;
    const p = JSON.parse(text);
    const pixels = decode(p);
    const size = p.width * p.height;
    const view = {slice: clamp(p.focus || 0, 0, p.count - 1), level: 127.5, width: 255};
    root.innerHTML = '';
    root.tabIndex = 0;
    const stage = document.createElement('div');
    stage.className = 'vce-stage';
    const canvas = document.createElement('canvas');
    canvas.className = 'vce-canvas';
    const offscreen = document.createElement('canvas');
    offscreen.width = p.width; offscreen.height = p.height;
    const octx = offscreen.getContext('2d');
    const frame = octx.createImageData(p.width, p.height);
    stage.appendChild(canvas);
    for (const [side, label] of Object.entries(p.markers || {})) {
      const m = document.createElement('span');
      m.className = 'vce-marker vce-' + side; m.textContent = label; stage.appendChild(m);
    }
    const info = document.createElement('span');
    info.className = 'vce-info';
    stage.appendChild(info);
    const bar = document.createElement('div');
    bar.className = 'vce-bar';
    const button = (label, title, fn, cls) => {
      const b = document.createElement('button');
      b.type = 'button'; b.textContent = label; b.title = title; b.className = 'vce-btn ' + (cls || '');
      b.addEventListener('click', (e) => { e.preventDefault(); fn(); root.focus({preventScroll: true}); });
      bar.appendChild(b); return b;
    };
    root.appendChild(stage);
    root.appendChild(bar);

    function draw() {
      const lo = view.level - view.width / 2, scale = 255 / Math.max(view.width, 1);
      const lut = new Uint8ClampedArray(256);
      for (let v = 0; v < 256; v++) lut[v] = (v - lo) * scale;
      const src = pixels.subarray(view.slice * size, (view.slice + 1) * size), d = frame.data;
      for (let i = 0, j = 0; i < size; i++, j += 4) { const g = lut[src[i]]; d[j] = d[j + 1] = d[j + 2] = g; d[j + 3] = 255; }
      octx.putImageData(frame, 0, 0);
      const box = stage.getBoundingClientRect();
      const fit = Math.max(1, Math.min(box.width / p.width, box.height / p.height));
      const dpr = window.devicePixelRatio || 1;
      canvas.width = Math.round(p.width * fit * dpr); canvas.height = Math.round(p.height * fit * dpr);
      canvas.style.width = Math.round(p.width * fit) + 'px'; canvas.style.height = Math.round(p.height * fit) + 'px';
      const ctx = canvas.getContext('2d');
      ctx.imageSmoothingEnabled = true; ctx.imageSmoothingQuality = 'high';
      ctx.drawImage(offscreen, 0, 0, canvas.width, canvas.height);
      info.textContent = `slice ${view.slice + 1} / ${p.count} · W ${Math.round(view.width)} L ${Math.round(view.level)}`;
      root.setAttribute('data-slice', String(view.slice));
      root.setAttribute('data-window', `${view.level.toFixed(1)},${view.width.toFixed(1)}`);
    }
    const step = (d) => { view.slice = clamp(view.slice + d, 0, p.count - 1); draw(); };
    const setWindow = (level, width) => { view.level = clamp(level, -255, 510); view.width = clamp(width, 1, 510); draw(); };
    button('▲', 'previous slice (wheel up, ↑)', () => step(-1), 'vce-prev');
    button('▼', 'next slice (wheel down, ↓)', () => step(1), 'vce-next');
    for (const preset of p.presets || []) button(preset.name, 'window preset', () => setWindow(preset.level, preset.width), 'vce-preset');
    button('Reset', 'reset window and slice (double-click)', () => { view.slice = clamp(p.focus || 0, 0, p.count - 1); setWindow(127.5, 255); }, 'vce-reset');

    stage.addEventListener('wheel', (e) => { e.preventDefault(); step(e.deltaY > 0 ? 1 : -1); }, {passive: false});
    root.addEventListener('keydown', (e) => {
      const d = {ArrowUp: -1, ArrowLeft: -1, PageUp: -1, ArrowDown: 1, ArrowRight: 1, PageDown: 1}[e.key];
      if (d) { e.preventDefault(); e.stopPropagation(); step(d); }
    });
    let drag = null;
    stage.addEventListener('pointerdown', (e) => {
      if (e.button !== 0) return;
      drag = {x: e.clientX, y: e.clientY, level: view.level, width: view.width};
      stage.setPointerCapture(e.pointerId); root.focus({preventScroll: true}); e.preventDefault();
    });
    stage.addEventListener('pointermove', (e) => {
      if (!drag) return;
      setWindow(drag.level - (e.clientY - drag.y) * 0.5, drag.width + (e.clientX - drag.x));
    });
    const stop = () => { drag = null; };
    stage.addEventListener('pointerup', stop);
    stage.addEventListener('pointercancel', stop);
    stage.addEventListener('dblclick', () => { view.slice = clamp(p.focus || 0, 0, p.count - 1); setWindow(127.5, 255); });
    stage.addEventListener('contextmenu', (e) => e.preventDefault());
    new ResizeObserver(() => draw()).observe(stage);
    draw();
  }

  const scan = () => document.querySelectorAll('.vce-viewer[data-payload]').forEach(build);
  new MutationObserver(scan).observe(document.body, {childList: true, subtree: true, attributes: true, attributeFilter: ['data-payload']});
  scan();
}
