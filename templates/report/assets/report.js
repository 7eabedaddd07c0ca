// The report's behaviour: sortable tables, the charts (plotly.js, shipped with the site),
// and picking runs to compare. Everything it shows comes from the page itself.
"use strict";

function escapeText(value) {
  // plotly reads a little HTML in its labels: a record's text is shown as text
  return String(value).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function chartData(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : null;
}

const CONFIG = { displaylogo: false, responsive: true };

function drawSpark(element, data) {
  const points = data.points;
  Plotly.newPlot(element, [{ x: points.map((p, i) => i), y: points.map((p) => p[3]), mode: "lines+markers",
    marker: { size: 4 }, line: { width: 1.5 }, hoverinfo: "y" }],
    { margin: { l: 2, r: 2, t: 2, b: 2 }, xaxis: { visible: false }, yaxis: { visible: false },
      showlegend: false }, { staticPlot: true });
}

function drawHistory(element, data) {
  const points = data.points;
  Plotly.newPlot(element, [{ x: points.map((p, i) => i), y: points.map((p) => p[3]), mode: "lines+markers",
    text: points.map((p) => escapeText(p[0]) + " at " + escapeText(p[1])), hoverinfo: "text+y" }],
    { title: { text: escapeText(data.name) + " by revision" }, margin: { t: 40, l: 50, r: 20, b: 60 },
      xaxis: { tickvals: points.map((p, i) => i), ticktext: points.map((p) => escapeText(p[1].slice(0, 7))),
               title: { text: "revision (oldest first)" } } }, CONFIG);
}

function trialsWith(data, keys) {
  return data.trials.filter((t) => keys.every((k) => k in t.values));
}

function drawParcoords(element, data) {
  const keys = [...data.params, ...data.results];
  const trials = trialsWith(data, keys);
  const trace = { type: "parcoords", dimensions: keys.map((k) => ({ label: escapeText(k),
    values: trials.map((t) => t.values[k]) })) };
  if (data.selector && keys.includes(data.selector)) {
    trace.line = { color: trials.map((t) => t.values[data.selector]), colorscale: "Viridis", showscale: true,
      colorbar: { title: { text: escapeText(data.selector) } } };
  }
  Plotly.newPlot(element, [trace], { margin: { t: 50, l: 60, r: 60, b: 30 } }, CONFIG);
}

function drawScatter(element, data) {
  const param = element.dataset.param;
  const result = data.selector || data.results[0];
  if (!result) return;
  const trials = trialsWith(data, [param, result]);
  Plotly.newPlot(element, [{ x: trials.map((t) => t.values[param]), y: trials.map((t) => t.values[result]),
    mode: "markers", type: "scatter", text: trials.map((t) => "#" + t.iteration), hoverinfo: "text+x+y" }],
    { title: { text: escapeText(result) + " against " + escapeText(param) }, margin: { t: 40, l: 50, r: 20, b: 40 },
      xaxis: { title: { text: escapeText(param) } } }, CONFIG);
}

const DRAW = { spark: drawSpark, history: drawHistory, parcoords: drawParcoords, scatter: drawScatter };

function drawCharts() {
  if (typeof Plotly === "undefined") return;
  for (const element of document.querySelectorAll(".chart[data-chart]")) {
    const data = chartData(element.dataset.chart);
    if (data) DRAW[element.dataset.kind](element, data);
  }
}

function sortKey(cell) {
  const text = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
  const number = Number(text.replace(/^#/, ""));
  return text !== "" && !Number.isNaN(number) ? [0, number, ""] : [1, 0, text];
}

function makeSortable(table) {
  table.querySelectorAll("thead th").forEach((header, column) => {
    header.addEventListener("click", () => {
      const body = table.tBodies[0];
      const down = header.dataset.order !== "asc";
      header.dataset.order = down ? "asc" : "desc";
      // rows without the column's cell (an excluded combination) stay at the end
      const rows = Array.from(body.rows).filter((row) => !row.classList.contains("excluded"));
      const fixed = Array.from(body.rows).filter((row) => row.classList.contains("excluded"));
      rows.sort((a, b) => {
        const x = sortKey(a.cells[column]), y = sortKey(b.cells[column]);
        const order = x[0] - y[0] || x[1] - y[1] || x[2].localeCompare(y[2]);
        return down ? order : -order;
      });
      [...rows, ...fixed].forEach((row) => body.appendChild(row));
    });
  });
}

function showPicked() {
  const table = document.querySelector("table.compare");
  if (!table) return;
  const picked = decodeURIComponent(location.hash.slice(1)).split(",").filter(Boolean);
  if (!picked.length) return;
  for (const cell of table.querySelectorAll(".col")) {
    cell.classList.toggle("hidden", !picked.includes(cell.dataset.uid));
  }
  for (const row of table.tBodies[0].rows) {
    if (row.classList.contains("images")) continue;
    const shown = Array.from(row.querySelectorAll("td.col:not(.hidden)")).map((c) => c.textContent);
    row.className = new Set(shown).size > 1 ? "differ" : "same";
  }
}

function pickToCompare() {
  const button = document.getElementById("compare-picked");
  if (!button) return;
  button.addEventListener("click", () => {
    const uids = Array.from(document.querySelectorAll("input.pick:checked")).map((box) => box.value);
    location.href = button.dataset.target + "#" + encodeURIComponent(uids.join(","));
  });
}

document.querySelectorAll("table.sortable").forEach(makeSortable);
drawCharts();
showPicked();
window.addEventListener("hashchange", showPicked);
pickToCompare();
