// geolink explorer: the page over the JSON API of geolink_store.app.server. No other host is ever asked.
"use strict";

const VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58",
  "#b5de2b", "#fde725"];
const MARK = { positive: "#1a9641", negative: "#d7191c" };

const state = {
  info: null, column: "", range: null, cells: null, results: null, query: null,
  labels: new Map(), labelLayer: null, head: null, loads: 0,
};
const $ = (id) => document.getElementById(id);
const map = L.map("map", { preferCanvas: true, zoomSnap: 0.25 });
window.explorer = { map, state };  // for the browser tests and the curious

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "small error" : "small";
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function colour(value) {
  if (value === null || value === undefined || !state.range) return "#888888";
  const [low, high] = state.range;
  const t = high > low ? Math.min(1, Math.max(0, (value - low) / (high - low))) : 0.5;
  return VIRIDIS[Math.round(t * (VIRIDIS.length - 1))];
}

function bboxOfView() {
  const b = map.getBounds();
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  return [clamp(b.getWest(), -180, 179.999), clamp(b.getSouth(), -90, 89.999),
    clamp(b.getEast(), -179.999, 180), clamp(b.getNorth(), -89.999, 90)].join(",");
}

// --- the cells of the view, coloured by the chosen column -------------------------------------------
const legend = L.control({ position: "bottomright" });
legend.onAdd = () => L.DomUtil.create("div", "legend");
legend.addTo(map);

function drawLegend() {
  const div = legend.getContainer();
  if (!state.column || !state.range) { div.innerHTML = "cells: outline only"; return; }
  const what = state.column.startsWith("head:")
    ? `P(positive) by head ${state.head.head_id} (${state.head.modality})` : `cells coloured by ${state.column}`;
  div.innerHTML = `<div id="legend-title">${what}</div>
    <div class="bar" style="background: linear-gradient(to right, ${VIRIDIS.join(",")})"></div>
    <div class="ends"><span>${state.range[0].toPrecision(3)}</span><span>${state.range[1].toPrecision(3)}</span></div>`;
}

async function loadCells() {
  const load = ++state.loads;
  const column = state.column ? `&column=${encodeURIComponent(state.column)}` : "";
  try {
    const fc = await api(`/api/cells?bbox=${bboxOfView()}${column}`);
    if (load !== state.loads) return;  // a newer view was asked for meanwhile
    state.range = fc.range;
    if (state.cells) map.removeLayer(state.cells);
    state.cells = L.geoJSON(fc, {
      style: (f) => ({
        color: "#ffffff", weight: 0.6, fillColor: colour(f.properties.value),
        fillOpacity: state.column ? 0.55 : 0.05,
      }),
      onEachFeature: (f, layer) => {
        const value = f.properties.value;
        layer.bindTooltip(`${f.properties.h3}${value !== undefined ? `<br>${state.column}: ${value}` : ""}`,
          { sticky: true });
        layer.on("click", (e) => { L.DomEvent.stopPropagation(e); clickCell(f.properties.h3, e.latlng); });
      },
    }).addTo(map);
    drawLegend();
    drawLabels();
    if (fc.truncated) status(`showing the first ${fc.features.length} cells of this view: zoom in for all`);
  } catch (error) { status(error.message, true); }
}

// --- clicks: search or mark ------------------------------------------------------------------------
function mode() { return document.querySelector("input[name=mode]:checked").value; }

function clickCell(h3, latlng) {
  if (mode() === "search") search(`cell=${h3}`);
  else mark(h3, mode());
}

map.on("click", (e) => {
  if (mode() === "search") search(`lon=${e.latlng.lng}&lat=${e.latlng.lat}`);
});

async function search(query) {
  const k = $("k").value;
  const scope = $("scope").value === "view" ? `&bbox=${bboxOfView()}` : "";
  status("searching...");
  try {
    const fc = await api(`/api/search?${query}&k=${k}&modality=${$("modality").value}${scope}`);
    if (state.results) map.removeLayer(state.results);
    if (state.query) map.removeLayer(state.query);
    state.results = L.geoJSON(fc, {
      style: () => ({ color: "#ff8c00", weight: 3, fillOpacity: 0 }), interactive: false,
    }).addTo(map);
    state.query = L.geoJSON(await cellShapes(fc.query), {
      style: () => ({ color: "#d7191c", weight: 4, fillOpacity: 0 }), interactive: false,
    }).addTo(map);
    const list = $("results");
    list.innerHTML = "";
    for (const f of fc.features) {
      const item = document.createElement("li");
      item.dataset.h3 = f.properties.h3;
      item.textContent = `${f.properties.h3}  ${f.properties.distance.toFixed(4)}`;
      item.onclick = () => flyToCell(f.properties.h3);
      list.appendChild(item);
    }
    status(`${fc.features.length} cells most like ${fc.query.join(", ")} (${fc.modality}); query in red`);
  } catch (error) { status(error.message, true); }
}

async function cellShapes(ids) {
  const features = ids.map((id) => state.cells && findFeature(id)).filter(Boolean);
  return { type: "FeatureCollection", features };
}

function findFeature(h3) {
  let found = null;
  state.cells.eachLayer((layer) => { if (layer.feature.properties.h3 === h3) found = layer.feature; });
  return found;
}

async function flyToCell(h3) {
  const fc = await api(`/api/sql?q=${encodeURIComponent(`SELECT lon, lat FROM cells WHERE h3 = ${BigInt("0x" + h3)}`)}`);
  if (!fc.rows.length) { status(`cell ${h3} is not stored`, true); return; }
  const [lon, lat] = fc.rows[0];
  map.setView([lat, lon], Math.max(map.getZoom(), 17));
  L.popup().setLatLng([lat, lon]).setContent(h3).openOn(map);
}

// --- labels and heads ------------------------------------------------------------------------------
function mark(h3, label) {
  if (state.labels.get(h3)?.label === label) state.labels.delete(h3);
  else {
    const ring = findFeature(h3).geometry.coordinates[0].slice(0, -1);
    const mean = (i) => ring.reduce((sum, p) => sum + p[i], 0) / ring.length;
    state.labels.set(h3, { label, lon: mean(0), lat: mean(1) });
  }
  drawLabels();
}

function drawLabels() {
  if (state.labelLayer) map.removeLayer(state.labelLayer);
  const features = [...state.labels.entries()].map(([h3, { label }]) => {
    const f = state.cells && findFeature(h3);
    return f && { ...f, properties: { h3, label } };
  }).filter(Boolean);
  state.labelLayer = L.geoJSON({ type: "FeatureCollection", features }, {
    style: (f) => ({ color: MARK[f.properties.label], weight: 3, fillColor: MARK[f.properties.label],
      fillOpacity: 0.35 }),
    interactive: false,
  }).addTo(map);
  const count = (label) => [...state.labels.values()].filter((v) => v.label === label).length;
  $("n-positive").textContent = count("positive");
  $("n-negative").textContent = count("negative");
}

async function train() {
  const ids = (label) => [...state.labels.entries()].filter(([, v]) => v.label === label).map(([h3]) => h3);
  status("training...");
  try {
    const head = await api("/api/heads", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ positive: ids("positive"), negative: ids("negative"),
        modality: $("modality").value }),
    });
    state.head = head;
    addColumnOption(head.column, `head ${head.head_id}: P(positive)`);
    $("column").value = head.column;
    state.column = head.column;
    $("head").textContent = `head ${head.head_id} (${head.kind}, ${head.modality}) trained on ` +
      `${head.positive} positive and ${head.negative} negative cells: ${head.predicted_positive} cells ` +
      "predicted positive";
    await loadCells();
    status(`predictions of head ${head.head_id} drawn`);
  } catch (error) { status(error.message, true); }
}

function saveLabels() {
  // Points at the cell centres, property "label": what `geolink heads train --labels` reads too.
  const features = [...state.labels.entries()].map(([h3, { label, lon, lat }]) => (
    { type: "Feature", geometry: { type: "Point", coordinates: [lon, lat] }, properties: { h3, label } }));
  const text = JSON.stringify({ type: "FeatureCollection", features });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type: "application/geo+json" }));
  link.download = "labels.geojson";
  link.click();
}

async function loadLabels(file) {
  try {
    const labels = await api("/api/labels", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: await file.text(),
    });
    for (const [h3, label] of Object.entries(labels)) state.labels.set(h3, label);  // {label, lon, lat}
    drawLabels();
    status(`${Object.keys(labels).length} labelled cells loaded from ${file.name}`);
  } catch (error) { status(error.message, true); }
}

// --- SQL -------------------------------------------------------------------------------------------
async function runSql() {
  try {
    const result = await api(`/api/sql?q=${encodeURIComponent($("sql").value)}`);
    const table = document.createElement("table");
    table.innerHTML = `<tr>${result.columns.map((c) => `<th>${c}</th>`).join("")}</tr>`;
    for (const row of result.rows) {
      const tr = table.insertRow();
      row.forEach((value, i) => {
        const td = tr.insertCell();
        if (result.h3_columns.includes(result.columns[i]) && value !== null) {
          const link = document.createElement("a");
          link.textContent = value;
          link.onclick = () => flyToCell(value);
          td.appendChild(link);
        } else td.textContent = value === null ? "" : String(value);
      });
    }
    $("sql-result").replaceChildren(table);
    status(`${result.rows.length} rows${result.truncated ? " (first ones only)" : ""}`);
  } catch (error) { status(error.message, true); }
}

// --- start -----------------------------------------------------------------------------------------
function addColumnOption(value, text) {
  const option = document.createElement("option");
  option.value = value;
  option.textContent = text;
  $("column").appendChild(option);
}

async function start() {
  const info = await api("/api/info");
  state.info = info;
  $("store").textContent = `${info.store}: ${info.cells} cells, H3 res ${info.res}, model ${info.model_id}, ` +
    `epoch ${info.epoch} (stored: ${info.epochs.join(", ")})`;
  addColumnOption("", "(outline only)");
  for (const column of info.columns) addColumnOption(column, column);
  state.column = info.columns.includes("n_polygon") ? "n_polygon" : "";
  $("column").value = state.column;
  for (const modality of info.modalities) {
    const option = document.createElement("option");
    option.value = option.textContent = modality;
    $("modality").appendChild(option);
  }
  $("modality").value = "fused";
  const overlays = {};
  if (info.imagery.available) {
    overlays.imagery = L.tileLayer("/tiles/{z}/{x}/{y}.png", { maxZoom: 24, maxNativeZoom: 22, tileSize: 256,
      attribution: "imagery: the store's own sources" }).addTo(map);
    $("imagery-note").textContent = `imagery: the store's sources (epoch(s) ${info.imagery.epochs.join(", ")})`;
  } else {
    $("imagery-note").textContent = `no imagery layer: ${info.imagery.missing}`;
  }
  L.control.layers(null, overlays).addTo(map);
  const [w, s, e, n] = info.bounds;
  map.fitBounds([[s, w], [n, e]]);
  map.on("moveend", loadCells);
  $("column").onchange = () => { state.column = $("column").value; loadCells(); };
  $("train").onclick = train;
  $("clear-labels").onclick = () => { state.labels.clear(); drawLabels(); };
  $("save-labels").onclick = saveLabels;
  $("load-labels").onchange = (e) => e.target.files.length && loadLabels(e.target.files[0]);
  $("run-sql").onclick = runSql;
  await loadCells();
  status("click a cell to find similar ones");
}

start().catch((error) => status(error.message, true));
