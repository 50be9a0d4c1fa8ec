// cloudfree viewer: the output collection's products on a MapLibre map, their layers from
// the tile server (/tiles, titiler), event pairs under a before/after swipe, and a pixel's
// provenance on click. The catalog (/api/catalog) carries every tile query: this script
// only joins them into URLs. State is mirrored in the URL's hash (layer, product, pair,
// swipe), so a view can be linked to; window.cloudfreeViewer exposes it to tests.
"use strict";
(() => {
  const BACKGROUND = "#1b1f27";
  const FOOTPRINT = "#8c96a3";
  const TILES = `${location.origin}/tiles/tiles/WebMercatorQuad/{z}/{x}/{y}.png`;
  // 512 px tiles: a quarter of the requests of 256 px ones for half again the time each
  // (each request opens the item's COGs once)
  const TILE_PX = 512;
  const hash = new URLSearchParams(location.hash.slice(1));
  const state = {
    catalog: null,
    layer: hash.get("layer") || "truecolor",
    product: hash.get("product"),
    pair: hash.get("pair"),
    swipe: Math.min(1, Math.max(0, Number(hash.get("swipe") || 0.5))),
    errors: [],
    pixel: null,
    pending: 0, // pixel requests in flight
  };
  let mapA = null;
  let mapB = null;
  const markers = [];
  const $ = (id) => document.getElementById(id);

  function fail(message) {
    state.errors.push(message);
    const status = $("status");
    status.textContent = message;
    status.classList.add("error");
  }

  function style() {
    return {
      version: 8,
      sources: {},
      layers: [{ id: "background", type: "background", paint: { "background-color": BACKGROUND } }],
    };
  }

  // --- the catalog ---------------------------------------------------------------------

  const productByKey = (key) => state.catalog.products.find((p) => p.key === key) || null;
  const pairByKey = (key) => state.catalog.pairs.find((p) => p.key === key) || null;

  function sides() {
    // [role, product] of each visible map: one in single mode, before/after under a pair
    const pair = state.pair && pairByKey(state.pair);
    if (pair) return [["before", productByKey(pair.pre)], ["after", productByKey(pair.post)]];
    const product = productByKey(state.product);
    return product ? [["main", product]] : [];
  }

  function tileUrl(item, query) {
    const search = new URLSearchParams({ item: item.id, tilesize: String(TILE_PX) });
    for (const [key, value] of Object.entries(query)) {
      for (const v of Array.isArray(value) ? value : [value]) search.append(key, v);
    }
    return `${TILES}?${search}`;
  }

  function layerFor(product) {
    // the chosen layer where the product has it, else true colour (e.g. change layers
    // exist on the after product of a pair only)
    return product.layers.includes(state.layer) ? state.layer : product.layers[0];
  }

  // --- maps ------------------------------------------------------------------------------

  function footprints() {
    const features = [];
    for (const product of state.catalog.products) {
      for (const item of product.items) {
        if (item.geometry) {
          features.push({ type: "Feature", geometry: item.geometry, properties: { product: product.key } });
        }
      }
    }
    return { type: "FeatureCollection", features };
  }

  function newMap(container) {
    const map = new maplibregl.Map({
      container,
      style: style(),
      bounds: state.catalog.bbox || [-20, -20, 20, 20],
      fitBoundsOptions: { padding: 40 },
      attributionControl: false,
      maxZoom: 19,
    });
    map.addControl(new maplibregl.AttributionControl({
      customAttribution: `Contains modified Copernicus Sentinel data ${years()}`,
      compact: false,
    }));
    map.on("load", () => {
      map.cloudfreeLoaded = true; // isStyleLoaded() is false while the footprints load
      map.addSource("footprints", { type: "geojson", data: footprints() });
      map.addLayer({ id: "footprints", type: "line", source: "footprints",
        paint: { "line-color": FOOTPRINT, "line-width": 1, "line-opacity": 0.8 } });
      render();
    });
    map.on("error", (event) => {
      const error = event.error || {};
      if (error.status === 404) return; // a tile outside an item: nothing to draw
      fail(`map: ${error.message || event}`);
    });
    map.on("click", (event) => showPixel(event.lngLat));
    return map;
  }

  function years() {
    const ys = new Set();
    for (const p of state.catalog.products) { ys.add(p.start.slice(0, 4)); ys.add(p.end.slice(0, 4)); }
    return [...ys].sort().join(", ");
  }

  function drawProduct(map, product) {
    if (!map || !map.cloudfreeLoaded) return;
    for (const layer of map.getStyle().layers) {
      if (layer.id.startsWith("r-")) map.removeLayer(layer.id);
    }
    for (const id of Object.keys(map.getStyle().sources)) {
      if (id.startsWith("r-")) map.removeSource(id);
    }
    if (!product) return;
    const layerId = layerFor(product);
    product.items.forEach((item, i) => {
      const query = item.layers[layerId];
      if (!query) return;
      map.addSource(`r-${i}`, { type: "raster", tiles: [tileUrl(item, query)], tileSize: TILE_PX,
        bounds: item.bbox, maxzoom: 19 });
      map.addLayer({ id: `r-${i}`, type: "raster", source: `r-${i}`,
        paint: { "raster-resampling": "nearest", "raster-fade-duration": 0 } }, "footprints");
    });
  }

  function render() {
    if (!state.catalog) return;
    const shown = sides();
    const pairMode = shown.length === 2;
    $("map-b").hidden = !pairMode;
    $("swipe").hidden = !pairMode;
    $("label-before").hidden = !pairMode;
    $("label-after").hidden = !pairMode;
    if (pairMode && !mapB) {
      mapB = newMap("map-b");
      syncCameras(mapA, mapB);
      mapB.jumpTo({ center: mapA.getCenter(), zoom: mapA.getZoom() });
      return; // mapB's load event renders again
    }
    drawProduct(mapA, shown.length ? shown[0][1] : null);
    if (mapB) drawProduct(mapB, pairMode ? shown[1][1] : null);
    if (pairMode) {
      $("label-before").textContent = `before: ${layerTitle(layerFor(shown[0][1]))}`;
      $("label-after").textContent = `after: ${layerTitle(layerFor(shown[1][1]))}`;
      placeSwipe();
    }
    renderPanel();
    saveHash();
  }

  function syncCameras(a, b) {
    let busy = false;
    const follow = (src, dst) => () => {
      if (busy) return;
      busy = true;
      dst.jumpTo({ center: src.getCenter(), zoom: src.getZoom(), bearing: src.getBearing(), pitch: src.getPitch() });
      busy = false;
    };
    a.on("move", follow(a, b));
    b.on("move", follow(b, a));
  }

  function placeSwipe() {
    const width = $("maps").clientWidth;
    const x = Math.round(state.swipe * width);
    $("swipe").style.left = `${x}px`;
    $("map-b").style.clipPath = `inset(0 0 0 ${x}px)`;
  }

  function dragSwipe() {
    const handle = $("swipe");
    handle.addEventListener("pointerdown", (down) => {
      down.preventDefault();
      handle.setPointerCapture(down.pointerId);
      const box = $("maps").getBoundingClientRect();
      const move = (event) => {
        setSwipe((event.clientX - box.left) / box.width);
      };
      const up = () => {
        handle.removeEventListener("pointermove", move);
        handle.removeEventListener("pointerup", up);
        saveHash();
      };
      handle.addEventListener("pointermove", move);
      handle.addEventListener("pointerup", up);
    });
  }

  function setSwipe(fraction) {
    state.swipe = Math.min(1, Math.max(0, fraction));
    placeSwipe();
  }

  // --- the panel -------------------------------------------------------------------------

  const layerTitle = (id) => (state.catalog.layers.find((l) => l.id === id) || { title: id }).title;

  function offeredLayers() {
    const offered = new Set();
    for (const [, product] of sides()) product.layers.forEach((l) => offered.add(l));
    return offered;
  }

  function renderPanel() {
    const offered = offeredLayers();
    const groups = { reflectance: "Reflectance", provenance: "Provenance", change: "Change (event pairs)" };
    const box = $("layers");
    box.replaceChildren();
    for (const [group, title] of Object.entries(groups)) {
      const layers = state.catalog.layers.filter((l) => l.group === group);
      if (group === "change" && !layers.some((l) => offered.has(l.id))) continue;
      const head = document.createElement("div");
      head.className = "layer-group";
      head.textContent = title;
      box.append(head);
      for (const layer of layers) {
        const label = document.createElement("label");
        label.className = "layer-option" + (offered.has(layer.id) ? "" : " unavailable");
        const input = document.createElement("input");
        Object.assign(input, { type: "radio", name: "layer", value: layer.id,
          checked: layer.id === state.layer, disabled: !offered.has(layer.id) });
        input.addEventListener("change", () => setLayer(layer.id));
        label.append(input, ` ${layer.title}`);
        box.append(label);
      }
    }
    renderLegend();
    renderProducts();
  }

  function renderLegend() {
    const box = $("legend");
    box.replaceChildren();
    const shown = sides();
    const product = shown.map(([, p]) => p).find((p) => p.legends[state.layer]);
    if (!product) return;
    const legend = product.legends[state.layer];
    const text = document.createElement("div");
    text.className = "hint";
    text.textContent = legend.description;
    box.append(text);
    if (legend.gradient) {
      const bar = document.createElement("div");
      bar.className = "gradient";
      bar.style.background = legend.gradient;
      const range = document.createElement("div");
      range.className = "range";
      const lo = document.createElement("span");
      lo.textContent = legend.min;
      const hi = document.createElement("span");
      hi.textContent = legend.max;
      range.append(lo, hi);
      box.append(bar, range);
    }
    for (const cls of legend.classes || []) {
      const row = document.createElement("div");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = cls.color;
      row.append(swatch, cls.name);
      box.append(row);
    }
  }

  function renderProducts() {
    const list = $("products");
    list.replaceChildren();
    for (const product of state.catalog.products) {
      const li = document.createElement("li");
      const label = document.createElement("label");
      const input = document.createElement("input");
      Object.assign(input, { type: "radio", name: "product", value: product.key,
        checked: !state.pair && product.key === state.product });
      input.addEventListener("change", () => showProduct(product.key));
      const small = document.createElement("small");
      small.textContent = ` (${product.items.length} tile${product.items.length === 1 ? "" : "s"})`;
      label.append(input, ` ${product.label}`, small);
      li.append(label);
      list.append(li);
    }
    const pairs = $("pairs");
    pairs.replaceChildren();
    $("pairs-section").hidden = state.catalog.pairs.length === 0;
    for (const pair of state.catalog.pairs) {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.dataset.pair = pair.key;
      button.className = pair.key === state.pair ? "active" : "";
      button.textContent = `Before/after swipe: ${pair.label}`;
      button.addEventListener("click", () => showPair(pair.key));
      li.append(button);
      pairs.append(li);
    }
  }

  function saveHash() {
    const h = new URLSearchParams({ layer: state.layer });
    if (state.pair) { h.set("pair", state.pair); h.set("swipe", state.swipe.toFixed(3)); }
    else if (state.product) h.set("product", state.product);
    history.replaceState(null, "", `#${h}`);
  }

  // --- actions -----------------------------------------------------------------------------

  function setLayer(id) { state.layer = id; render(); }

  function showProduct(key, { fit = true } = {}) {
    const product = productByKey(key);
    if (!product) return;
    state.product = key;
    state.pair = null;
    unmark();
    render();
    if (fit) mapA.fitBounds(product.bbox, { padding: 40, animate: false });
  }

  function showPair(key, swipe) {
    const pair = pairByKey(key);
    if (!pair) return;
    state.pair = key;
    if (swipe !== undefined) state.swipe = swipe;
    unmark();
    render();
    mapA.fitBounds(productByKey(pair.post).bbox, { padding: 40, animate: false });
  }

  // --- a pixel's provenance ------------------------------------------------------------

  function inside(item, lng, lat) {
    const [w, s, e, n] = item.bbox;
    if (lng < w || lng > e || lat < s || lat > n) return false;
    const geometry = item.geometry;
    if (!geometry || geometry.type !== "Polygon") return true;
    const ring = geometry.coordinates[0];
    let hit = false;
    for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      const [xi, yi] = ring[i];
      const [xj, yj] = ring[j];
      if ((yi > lat) !== (yj > lat) && lng < ((xj - xi) * (lat - yi)) / (yj - yi) + xi) hit = !hit;
    }
    return hit;
  }

  const isoDate = (days) => new Date(days * 86400000).toISOString().slice(0, 10);

  function decode(spec, values) {
    // the point endpoint's values (assets in spec order, bands in asset order) -> readings
    const readings = {};
    let at = 0;
    for (const asset of spec) {
      const decoded = asset.bands.map((band, i) => {
        const raw = values[at + i];
        if (raw === null || raw === undefined || (band.nodata !== null && raw === band.nodata)) return null;
        if (asset.asset === "source_date") return raw === 0 ? null : isoDate(raw);
        if (Object.keys(asset.classes).length) return (asset.classes[String(raw)] || String(raw)).replaceAll("_", " ");
        if (asset.asset === "clear_count") return raw;
        return raw * band.scale + band.offset;
      });
      at += asset.bands.length;
      readings[asset.asset] = asset.bands.length === 1 ? decoded[0]
        : Object.fromEntries(asset.bands.map((b, i) => [b.name || `b${i + 1}`, decoded[i]]));
    }
    return readings;
  }

  async function readPixel(item, lng, lat) {
    const search = new URLSearchParams({ item: item.id });
    for (const asset of item.point) search.append("assets", asset.asset);
    const response = await fetch(`${location.origin}/tiles/point/${lng},${lat}?${search}`);
    if (response.status === 404) return null; // beside the item's raster, inside its footprint
    if (!response.ok) throw new Error(`point ${lng},${lat} of ${item.id}: HTTP ${response.status}`);
    const body = await response.json();
    return decode(item.point, body.values);
  }

  function describe(readings) {
    const rows = [];
    const fmt = (v, digits) => (v === null || v === undefined ? "no data" : Number(v).toFixed(digits));
    if ("source_date" in readings) rows.push(["source date", readings.source_date || "no observation", "source-date"]);
    if ("fill" in readings) rows.push(["fill", readings.fill || "no data", "fill"]);
    if ("clear_count" in readings) rows.push(["clear observations", String(readings.clear_count ?? "no data"), "clear-count"]);
    if ("uncertainty" in readings) {
      const u = readings.uncertainty;
      const text = typeof u === "object" && u !== null
        ? Object.entries(u).map(([b, v]) => `${b} ±${fmt(v, 4)}`).join(", ") : `±${fmt(u, 4)}`;
      rows.push(["uncertainty (90 %)", text, "uncertainty"]);
    }
    for (const key of ["dnbr", "dndwi", "dndvi"]) {
      if (key in readings) rows.push([key, fmt(readings[key], 3), key]);
    }
    if ("dnbr_severity" in readings) rows.push(["burn severity", readings.dnbr_severity || "no data", "dnbr-severity"]);
    if ("change_valid" in readings) rows.push(["change valid", String(readings.change_valid ?? "no data"), "change-valid"]);
    return rows;
  }

  function unmark() { while (markers.length) markers.pop().remove(); }

  function mark(lngLat) {
    // a ring at the clicked pixel, on each visible map
    unmark();
    for (const map of [mapA, sides().length === 2 ? mapB : null].filter(Boolean)) {
      const ring = document.createElement("div");
      ring.className = "pixel-marker";
      markers.push(new maplibregl.Marker({ element: ring }).setLngLat(lngLat).addTo(map));
    }
  }

  async function showPixel(lngLat) {
    const { lng, lat } = lngLat;
    const box = $("pixel");
    mark(lngLat);
    state.pending += 1;
    try {
      const result = { lon: lng, lat, sides: {} };
      const parts = [];
      for (const [role, product] of sides()) {
        // neighbouring tiles' lon/lat footprints overlap a little: the first with a pixel here
        let item = null;
        let readings = null;
        for (const candidate of product.items.filter((it) => inside(it, lng, lat))) {
          readings = await readPixel(candidate, lng, lat);
          if (readings) { item = candidate; break; }
        }
        const side = document.createElement("div");
        side.className = "pixel-side";
        side.dataset.role = role;
        const title = document.createElement("h3");
        title.textContent = role === "main" ? product.label : `${role}: ${product.run}`;
        side.append(title);
        if (!readings) {
          side.append("no pixel of this product here");
          parts.push(side);
          continue;
        }
        result.sides[role] = { item: item.id, ...readings };
        side.dataset.item = item.id;
        const dl = document.createElement("dl");
        for (const [name, value, attr] of describe(readings)) {
          const dt = document.createElement("dt");
          dt.textContent = name;
          const dd = document.createElement("dd");
          dd.textContent = value;
          dd.dataset.field = attr;
          dl.append(dt, dd);
        }
        if (readings.source_date) side.dataset.sourceDate = readings.source_date;
        side.append(dl);
        parts.push(side);
      }
      const where = document.createElement("p");
      where.className = "hint";
      where.textContent = `${lat.toFixed(5)}° N, ${lng.toFixed(5)}° E`;
      box.replaceChildren(where, ...parts);
      box.dataset.lon = String(lng);
      box.dataset.lat = String(lat);
      state.pixel = result;
    } catch (error) {
      fail(String(error.message || error));
    } finally {
      state.pending -= 1;
    }
  }

  // --- waiting, for tests and screenshots ----------------------------------------------

  function idle() {
    // resolves once every visible map has drawn all its tiles and no pixel request is out
    return new Promise((resolve) => {
      const maps = [mapA, sides().length === 2 ? mapB : null].filter(Boolean);
      const check = () => {
        const done = state.pending === 0 && maps.every((m) =>
          m.cloudfreeLoaded && m.loaded() && m.areTilesLoaded() && !m.isMoving());
        if (done) requestAnimationFrame(() => requestAnimationFrame(() => resolve(true)));
        else setTimeout(check, 50);
      };
      check();
    });
  }

  async function start() {
    const response = await fetch("api/catalog");
    const catalog = await response.json();
    if (!response.ok) {
      $("collection").textContent = catalog.error || `HTTP ${response.status}`;
      fail(catalog.error || `catalog: HTTP ${response.status}`);
      return;
    }
    state.catalog = catalog;
    const truncated = catalog.truncated ? " (the first ones only)" : "";
    $("collection").textContent =
      `${catalog.collection}: ${catalog.count} item${catalog.count === 1 ? "" : "s"}${truncated}`;
    if (!catalog.products.length) {
      $("status").textContent = "No items yet: publish a mosaic with 'cloudfree mosaic'.";
    }
    if (state.pair && !pairByKey(state.pair)) state.pair = null;
    if (!productByKey(state.product)) state.product = catalog.products.length ? catalog.products[0].key : null;
    const product = productByKey(state.product);
    const pair = state.pair && pairByKey(state.pair);
    if (pair) catalog.bbox = productByKey(pair.post).bbox;
    else if (product) catalog.bbox = product.bbox;
    mapA = newMap("map-a");
    dragSwipe();
    addEventListener("resize", () => { if (state.pair) placeSwipe(); });
    await new Promise((resolve) => mapA.once("load", resolve));
  }

  const ready = start().catch((error) => fail(`viewer: ${error.message || error}`));
  window.cloudfreeViewer = {
    state, ready, idle, setLayer, showProduct, showPair, setSwipe,
    get map() { return mapA; },
    get mapAfter() { return mapB; },
  };
})();
