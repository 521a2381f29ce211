/* stflow view: the H&E as an OpenSeadragon Deep Zoom pyramid, the spots drawn over it on a
 * canvas (one pixel write per covered pixel, so a million spots redraw in milliseconds),
 * coloured by the chosen gene and value. Data files are scripts (data/*.js) so that the page
 * also opens from disk (file://), where a page may not fetch files. Every failure to load
 * a file is shown on the page, naming the file and the fix. */
(function () {
  "use strict";
  const V = (window.STFLOW_VIEW = { loaded: { genes: {} }, genes: {}, firstDrawMs: null });
  const $ = (id) => document.getElementById(id);
  const REBUILD = "Fix: rebuild the view with `stflow view SLIDE.h5ad` " +
    "(or rerun the workflow, which writes it beside the slide's h5ad).";

  // --- data files call these ---------------------------------------------------------------
  V.meta = (meta) => { V.loaded.meta = meta; };
  V.spots = (spots) => { V.loaded.spots = spots; };
  V.gene = (index, kinds) => { V.loaded.genes[index] = kinds; };

  // messages by topic (the data, the tiles, the chosen gene): a gene that loads clears its
  // own message only, never a missing tile's
  const messages = new Map();
  function renderMessages() {
    const box = $("message");
    box.textContent = [...messages.values()].join("\n");
    box.hidden = messages.size === 0;
    document.body.dataset.state = messages.size ? "error" : "ready";
  }
  function showMessage(text, topic = "data") { messages.set(topic, text); renderMessages(); }
  function clearMessage(topic) { messages.delete(topic); renderMessages(); }
  V.showMessage = showMessage;

  function decode(text) {
    if (typeof text !== "string") throw new Error("not base64 text");
    if (Uint8Array.fromBase64) return Uint8Array.fromBase64(text);
    const s = atob(text);
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }

  /* Load a data script; resolve with what it registered (``got()``), reject with a readable
     message when it is missing, unreadable or damaged. */
  function loadScript(src, got, what) {
    return new Promise((resolve, reject) => {
      const el = document.createElement("script");
      el.src = src;
      el.onload = () => {
        const value = got();
        if (value === undefined) {
          reject(new Error(`${src}: ${what} is damaged (the file loaded but holds no ` +
            `readable data). ${REBUILD}`));
        } else resolve(value);
      };
      el.onerror = () => reject(new Error(`${src}: ${what} is missing or cannot be read. ${REBUILD}`));
      document.head.appendChild(el);
    });
  }

  function checked(src, what, fn) {
    try { return fn(); } catch (err) {
      throw new Error(`${src}: ${what} is damaged (${err.message}). ${REBUILD}`);
    }
  }

  // --- the viewer and the spot layer --------------------------------------------------------
  function openViewer(meta) {
    if (typeof OpenSeadragon === "undefined") {
      throw new Error("openseadragon/openseadragon.min.js: the viewer's script is missing or " +
        `cannot be read. ${REBUILD}`);
    }
    const viewer = OpenSeadragon({
      element: $("viewer"), prefixUrl: "openseadragon/images/", tileSources: meta.tile_source,
      drawer: "canvas", showNavigator: true, navigatorPosition: "BOTTOM_RIGHT",
      maxZoomPixelRatio: 4, visibilityRatio: 0.5, crossOriginPolicy: false,
    });
    let tileFailed = false;
    viewer.addHandler("open-failed", (e) => showMessage(
      `image_files/: the H&E pyramid could not be opened (${e.message}). ${REBUILD}`, "tiles"));
    viewer.addHandler("tile-load-failed", (e) => {
      if (tileFailed) return;
      tileFailed = true;
      const url = e.tile && e.tile.getUrl ? e.tile.getUrl() : "a tile";
      showMessage(`${url}: a tile of the H&E pyramid is missing or cannot be read. ${REBUILD}`,
        "tiles");
    });
    viewer.addHandler("tile-drawn", () => {
      if (V.firstTileMs === undefined) V.firstTileMs = performance.now();
    });
    const canvas = document.createElement("canvas");
    canvas.id = "spots";
    viewer.canvas.appendChild(canvas);
    V.canvas = canvas;
    for (const name of ["open", "animation", "update-viewport", "resize"]) {
      viewer.addHandler(name, scheduleDraw);
    }
    return viewer;
  }

  let scheduled = false;
  function scheduleDraw() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(draw);
  }

  function discOffsets(r, inner) {
    const out = [];
    const R = Math.ceil(r);
    for (let dy = -R; dy <= R; dy++) {
      for (let dx = -R; dx <= R; dx++) {
        const d2 = dx * dx + dy * dy;
        if (d2 <= r * r && d2 >= inner * inner) out.push(dx, dy);
      }
    }
    return out.length ? out : [0, 0];
  }

  function paint(buf, w, h, x, y, offsets, colour) {
    for (let k = 0; k < offsets.length; k += 2) {
      const px = x + offsets[k], py = y + offsets[k + 1];
      if (px >= 0 && px < w && py >= 0 && py < h) buf[py * w + px] = colour;
    }
  }

  function draw() {
    scheduled = false;
    const start = performance.now();
    const canvas = V.canvas, item = V.viewer && V.viewer.world.getItemAt(0);
    if (!canvas || !item) return;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
    const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, w, h);
    const values = currentValues();
    if (!values || !V.xy || !$("show-spots").checked) return;
    const p0 = item.imageToViewerElementCoordinates(new OpenSeadragon.Point(0, 0));
    const p1 = item.imageToViewerElementCoordinates(new OpenSeadragon.Point(1000, 1000));
    const sx = ((p1.x - p0.x) / 1000) * dpr, sy = ((p1.y - p0.y) / 1000) * dpr;
    const ox = p0.x * dpr, oy = p0.y * dpr;
    const r = Math.max(0.5, (V.meta.spot_diameter_px / 2) * sx);
    const R = Math.ceil(r) + 2;
    const disc = discOffsets(r, 0);
    // rings only where a spot is a few pixels wide: below that they would hide neighbours
    const ring = V.shifted && $("mark-shifted").checked && r >= 1.5 ?
      discOffsets(r + 1.5, r + 0.01) : null;
    const image = ctx.createImageData(w, h);
    const buf = new Uint32Array(image.data.buffer);
    const xy = V.xy, lut = V.lut, n = V.meta.n, missing = V.meta.missing;
    for (let i = 0; i < n; i++) {
      const x = Math.floor(xy[2 * i] * sx + ox), y = Math.floor(xy[2 * i + 1] * sy + oy);
      if (x < -R || y < -R || x >= w + R || y >= h + R) continue;
      const q = values[i];
      if (q === missing) continue;
      if (r <= 0.75) {
        if (x >= 0 && y >= 0 && x < w && y < h) buf[y * w + x] = lut[q];
      } else paint(buf, w, h, x, y, disc, lut[q]);
      if (ring && V.shifted[i]) paint(buf, w, h, x, y, ring, V.shiftColour);
    }
    ctx.putImageData(image, 0, 0);
    V.drawMs = performance.now() - start;  // the last redraw's cost (benchmarks/view_open.py)
    document.body.dataset.drawn = `${V.geneName}/${$("kind").value}`;
    if (V.firstDrawMs === null) V.firstDrawMs = performance.now();
  }

  function currentValues() {
    const kinds = V.genes[V.geneName];
    return kinds ? kinds[$("kind").value].codes : null;
  }

  // --- controls, colour bar ------------------------------------------------------------------
  function fmt(v) { return Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3); }

  function drawLegend() {
    const kinds = V.genes[V.geneName];
    if (!kinds) return;
    const kind = $("kind").value, entry = kinds[kind];
    const label = V.meta.kinds.find((k) => k.kind === kind).label;
    $("legend-title").textContent = `${V.geneName}: ${label} (log1p expression)`;
    $("legend-lo").textContent = fmt(entry.lo);
    $("legend-hi").textContent = fmt(entry.hi);
    const bar = $("colorbar"), ctx = bar.getContext("2d");
    const colours = V.meta.colormap;
    for (let i = 0; i < bar.width; i++) {
      const [r, g, b] = colours[Math.floor((i / bar.width) * colours.length)];
      ctx.fillStyle = `rgb(${r},${g},${b})`;
      ctx.fillRect(i, 0, 1, bar.height);
    }
    const n = V.meta.n_shifted;
    $("legend-shifted").textContent = n === null ? "" :
      `${n} of ${V.meta.n} spots shifted (unlike the training spots), ringed in magenta when zoomed in`;
  }

  async function chooseGene(name) {
    const index = V.meta.genes.indexOf(name);
    if (index < 0) { $("gene").title = `no gene named ${name}`; return; }
    if (!V.genes[name]) {
      const src = `data/genes/${String(index).padStart(5, "0")}.js`;
      const kinds = await loadScript(src, () => V.loaded.genes[index], `the values of ${name}`);
      V.genes[name] = checked(src, `the values of ${name}`, () => {
        const out = {};
        for (const { kind } of V.meta.kinds) {
          const codes = decode(kinds[kind].q);
          if (codes.length !== V.meta.n) throw new Error(`${codes.length} values for ${V.meta.n} spots`);
          out[kind] = { lo: kinds[kind].lo, hi: kinds[kind].hi, codes };
        }
        return out;
      });
      delete V.loaded.genes[index];
    }
    V.geneName = name;
    $("gene").value = name;
    clearMessage("gene");
    drawLegend();
    scheduleDraw();
  }

  function setupControls(meta) {
    document.title = `${meta.title} - stflow view`;
    $("subtitle").textContent = meta.subtitle;
    const list = $("gene-names");
    for (const g of meta.genes) list.appendChild(new Option(g));
    for (const { kind, label } of meta.kinds) $("kind").appendChild(new Option(label, kind));
    const pick = () => chooseGene($("gene").value.trim()).catch((e) => showMessage(e.message, "gene"));
    $("gene").addEventListener("change", pick);
    $("gene").addEventListener("keydown", (e) => { if (e.key === "Enter") pick(); });
    $("kind").addEventListener("change", () => { drawLegend(); scheduleDraw(); });
    for (const id of ["show-spots", "mark-shifted"]) $(id).addEventListener("change", scheduleDraw);
    $("opacity").addEventListener("input", () => { V.canvas.style.opacity = $("opacity").value; });
    V.lut = new Uint32Array(256);
    meta.colormap.forEach(([r, g, b], i) => { V.lut[i] = ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0; });
    V.shiftColour = ((255 << 24) | (255 << 16) | 255) >>> 0;  // magenta
    $("legend-shifted").hidden = meta.n_shifted === null;
    if (meta.n_shifted === null) $("mark-shifted").parentElement.hidden = true;
  }

  async function start() {
    try {
      V.meta = await loadScript("data/meta.js", () => V.loaded.meta, "the view's description");
      setupControls(V.meta);
      V.viewer = openViewer(V.meta);
      V.canvas.style.opacity = $("opacity").value;
      const spots = await loadScript("data/spots.js", () => V.loaded.spots, "the spot positions");
      checked("data/spots.js", "the spot positions", () => {
        const bytes = decode(spots.xy);
        if (bytes.length !== 8 * V.meta.n) throw new Error(`${bytes.length / 8} positions for ${V.meta.n} spots`);
        V.xy = new Float32Array(bytes.buffer, bytes.byteOffset, 2 * V.meta.n);
        V.shifted = spots.shifted === null ? null : decode(spots.shifted);
        if (V.shifted && V.shifted.length !== V.meta.n) throw new Error("shifted flags of another slide");
      });
      delete V.loaded.spots;
      if (V.meta.first_gene) await chooseGene(V.meta.first_gene);
      renderMessages();
    } catch (err) {
      showMessage(err.message);
    }
  }

  start();
})();
