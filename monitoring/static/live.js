// darktrigger live page: polls api/series once a second and draws each chart with uPlot.
// Every chart element carries data-points (the non-empty points drawn), which the tests read.
"use strict";
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
                 "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#ad494a"];
const charts = {};

function fmt(v, unit) {
  if (v === null || v === undefined || !isFinite(v)) return "–";
  const a = Math.abs(v);
  if (unit === "s") return a >= 1 ? v.toFixed(2) + " s" : a >= 1e-3 ? (v * 1e3).toFixed(2) + " ms" : (v * 1e6).toFixed(0) + " µs";
  const s = a >= 1e6 ? (v / 1e6).toFixed(2) + " M" : a >= 1e3 ? (v / 1e3).toFixed(2) + " k" : a >= 1 || a === 0 ? v.toFixed(a >= 100 ? 0 : 2) + " " : v.toPrecision(3) + " ";
  return s + (unit || "");
}

// axis ticks: few characters, the unit is in the chart's title
function short(v, unit) {
  if (v === null || !isFinite(v)) return "";
  const a = Math.abs(v);
  if (unit === "s") return a >= 1 ? +v.toPrecision(3) + " s" : a >= 1e-3 ? +(v * 1e3).toPrecision(3) + " ms" : +(v * 1e6).toPrecision(3) + " µs";
  return a >= 1e6 ? +(v / 1e6).toPrecision(3) + "M" : a >= 1e3 ? +(v / 1e3).toPrecision(3) + "k" : String(+v.toPrecision(3));
}

function makeChart(spec, keys, box) {
  const width = Math.max(300, box.clientWidth - 16);
  const opts = {
    width: width, height: 210,
    scales: { x: { time: true }, y: spec.log ? { distr: 3 } : { auto: true } },
    axes: [{}, { size: 64, values: (u, vals) => vals.map(v => short(v, spec.unit)) }],
    series: [{}].concat(keys.map((k, i) => ({
      label: k, stroke: PALETTE[i % PALETTE.length], width: k === "budget" ? 2 : 1.5,
      dash: k === "budget" ? [6, 4] : undefined, spanGaps: false,
      value: (u, v) => fmt(v, spec.unit),
    }))),
    legend: { live: true },
  };
  return new uPlot(opts, [[]].concat(keys.map(() => [])), box);
}

function render(data) {
  const root = document.getElementById("charts");
  for (const spec of data.charts) {
    const keys = Object.keys(spec.series);
    let c = charts[spec.id];
    if (!c) {
      const box = document.createElement("section");
      box.className = "chart"; box.id = "chart-" + spec.id;
      box.innerHTML = "<h2></h2><div class='plot'></div>";
      box.querySelector("h2").textContent = spec.title + (spec.unit ? " [" + spec.unit + "]" : "");
      root.appendChild(box);
      c = charts[spec.id] = { box: box, sig: null, plot: null };
    }
    let points = 0;
    for (const k of keys) for (const v of spec.series[k]) if (v !== null && (!spec.log || v > 0)) points++;
    c.box.dataset.points = String(points);
    const plotBox = c.box.querySelector(".plot");
    if (points === 0) {
      if (c.plot) { c.plot.destroy(); c.plot = null; c.sig = null; }
      plotBox.innerHTML = "<div class='empty'>no data yet</div>";
      continue;
    }
    const sig = keys.join("\u0001");
    if (c.sig !== sig) {
      if (c.plot) c.plot.destroy();
      plotBox.innerHTML = "";
      c.plot = makeChart(spec, keys, c.box);
      plotBox.appendChild(c.plot.root);
      c.sig = sig;
    }
    const cols = keys.map(k => spec.log ? spec.series[k].map(v => (v !== null && v > 0) ? v : null) : spec.series[k]);
    c.plot.setData([data.t].concat(cols));
  }
  const now = data.now || {};
  document.getElementById("now").innerHTML =
    "<span>input <b>" + fmt(now.events_per_s, "ev/s") + "</b></span>" +
    "<span>L1 rate <b>" + fmt(now["L1 rate"], "Hz") + "</b></span>" +
    "<span>budget <b>" + fmt(now.budget, "Hz") + "</b></span>" +
    "<span>recorded <b>" + fmt(now.recorded_events, "events") + "</b></span>";
  const t = document.getElementById("targets");
  t.innerHTML = "";
  for (const [name, s] of Object.entries(data.targets)) {
    const el = document.createElement("span");
    el.className = s.up ? "up" : "down"; el.textContent = name; el.title = s.url + (s.error ? "\n" + s.error : "");
    t.appendChild(el);
  }
  document.getElementById("window").textContent = data.window_s;
  document.body.dataset.updated = String(Date.now());
}

async function tick() {
  try {
    const resp = await fetch("api/series", { cache: "no-store" });
    if (resp.ok) render(await resp.json());
  } catch (e) {
    document.getElementById("now").textContent = "the page's server does not answer: " + e;
  }
}

tick();
setInterval(tick, 1000);
