// darktrigger live page: polls api/series once a second and draws each chart with uPlot.
// Rates are drawn on logarithmic axes (a 110 kHz menu holds seeds of 0.5 kHz): the total's
// range always spans the budget and the lowest non-zero seed rate, the part of the total above
// the budget is red, and each anomaly seed is drawn against its target (dashed, same colour).
// Every chart element carries what the tests read once uPlot has drawn it: data-points (the
// non-empty points), data-y-scale ("log" or "linear"), data-y-min/data-y-max (the axis drawn),
// data-series (the series' names, JSON), data-drawn; the total's also data-budget and
// data-over-budget, the anomaly chart's data-targets ({seed: target Hz}, JSON).
"use strict";
const PALETTE = ["#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
                 "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#ad494a", "#637939"];
const OVER = "#d62728", UNDER = "#1f77b4", BUDGET = "#1d2330";
const TARGET = " target";
const charts = {};

// a figure with its unit: "12.30 kHz", "400.00 k events/s", "2.10 ms"
function fmt(v, unit) {
  if (v === null || v === undefined || !isFinite(v)) return "–";
  const a = Math.abs(v);
  if (unit === "s") return a >= 1 ? v.toFixed(2) + " s" : a >= 1e-3 ? (v * 1e3).toFixed(2) + " ms" : (v * 1e6).toFixed(0) + " µs";
  const [num, prefix] = a >= 1e6 ? [(v / 1e6).toFixed(2), "M"] : a >= 1e3 ? [(v / 1e3).toFixed(2), "k"]
    : [a >= 1 || a === 0 ? v.toFixed(a >= 100 ? 0 : 2) : v.toPrecision(3), ""];
  if (!unit) return num + (prefix ? " " + prefix : "");
  if (unit === "Hz") return num + " " + prefix + unit;
  return num + " " + (prefix ? prefix + " " : "") + unit;
}

// axis ticks: few characters, the unit is in the chart's title
function short(v, unit) {
  if (v === null || !isFinite(v)) return "";
  const a = Math.abs(v);
  if (unit === "s") return a >= 1 ? +v.toPrecision(3) + " s" : a >= 1e-3 ? +(v * 1e3).toPrecision(3) + " ms" : +(v * 1e6).toPrecision(3) + " µs";
  return a >= 1e6 ? +(v / 1e6).toPrecision(3) + "M" : a >= 1e3 ? +(v / 1e3).toPrecision(3) + "k" : String(+v.toPrecision(3));
}

// the total's stroke: red above the budget, blue below (a gradient cut at the budget's height)
function totalStroke(c) {
  return (u) => {
    const top = u.bbox.top, h = u.bbox.height;
    const at = c.budget === null ? NaN : u.valToPos(c.budget, "y", true);
    if (!(h > 0) || !isFinite(at) || !isFinite(top)) return UNDER;  // before the first draw
    const y = Math.min(top + h, Math.max(top, at));
    const g = u.ctx.createLinearGradient(0, top, 0, top + h);
    const cut = (y - top) / h;
    g.addColorStop(0, OVER); g.addColorStop(cut, OVER); g.addColorStop(cut, UNDER); g.addColorStop(1, UNDER);
    return g;
  };
}

function seriesStyle(spec, keys, k, i, c) {
  const flat = { show: false };  // horizontal lines need no markers
  if (k === "budget") return { stroke: BUDGET, width: 2, dash: [8, 5], points: flat };
  if (spec.id === "total" && k === "L1 rate") return { stroke: totalStroke(c), width: 2.5 };
  if (spec.id === "anomaly") {  // a seed and its target share a colour; the target is dashed
    const seeds = keys.filter(x => !x.endsWith(TARGET));
    const base = k.endsWith(TARGET) ? k.slice(0, -TARGET.length) : k;
    const colour = PALETTE[Math.max(0, seeds.indexOf(base)) % PALETTE.length];
    return k.endsWith(TARGET) ? { stroke: colour, width: 1.5, dash: [6, 4], points: flat } : { stroke: colour, width: 2 };
  }
  return { stroke: PALETTE[i % PALETTE.length], width: 1.5 };
}

// what the tests read, written once uPlot has drawn (its scales are then final)
function describe(c, spec) {
  return (u) => {
    const d = c.box.dataset, y = u.scales.y;
    d.yScale = y.distr === 3 ? "log" : "linear";
    d.yMin = String(y.min); d.yMax = String(y.max);
    d.drawn = String(Date.now());
  };
}

function makeChart(spec, keys, c) {
  const width = Math.max(300, c.box.clientWidth - 16);
  const y = spec.log
    ? { distr: 3, log: 10, range: (u, mn, mx) => c.yRange || uPlot.rangeLog(mn, mx, 10, true) }
    : { auto: true };
  const opts = {
    width: width, height: 210,
    scales: { x: { time: true }, y: y },
    axes: [{}, { size: 64, values: (u, vals) => vals.map(v => short(v, spec.unit)) }],
    series: [{}].concat(keys.map((k, i) => Object.assign({
      label: k, spanGaps: false, value: (u, v) => fmt(v, spec.unit),
    }, seriesStyle(spec, keys, k, i, c)))),
    legend: { live: true },
    hooks: { draw: [describe(c, spec)] },
  };
  return new uPlot(opts, [[]].concat(keys.map(() => [])), c.plotBox);
}

function lastOf(col) {
  for (let i = col.length - 1; i >= 0; i--) if (col[i] !== null) return col[i];
  return null;
}

function sourcesText(sources) {
  return "from " + Object.entries(sources).map(([name, stages]) =>
    name + " (" + (stages.length ? stages.join(", ") : "no stage") + ")").join(", ");
}

function render(data) {
  const root = document.getElementById("charts");
  for (const spec of data.charts) {
    const keys = Object.keys(spec.series);
    let c = charts[spec.id];
    if (!c) {
      const box = document.createElement("section");
      box.className = "chart"; box.id = "chart-" + spec.id;
      box.innerHTML = "<h2></h2><div class='sources'></div><div class='plot'></div>";
      box.querySelector("h2").textContent = spec.title + (spec.unit ? " [" + spec.unit + "]" : "") +
        (spec.log ? ", log scale" : "");
      box.querySelector(".sources").textContent = sourcesText(spec.sources);
      root.appendChild(box);
      c = charts[spec.id] = { box: box, plotBox: box.querySelector(".plot"), sig: null, plot: null,
                              yRange: null, budget: null };
    }
    let points = 0;
    for (const k of keys) for (const v of spec.series[k]) if (v !== null && (!spec.log || v > 0)) points++;
    const d = c.box.dataset;
    d.points = String(points);
    d.series = JSON.stringify(keys);
    c.yRange = spec.y_range || null;
    if (spec.id === "total") {
      c.budget = spec.series.budget ? lastOf(spec.series.budget) : null;
      d.budget = c.budget === null ? "" : String(c.budget);
      d.overBudget = String(!!data.over_budget);
    }
    if (spec.id === "anomaly") {
      const targets = {};
      for (const k of keys) if (k.endsWith(TARGET)) targets[k.slice(0, -TARGET.length)] = lastOf(spec.series[k]);
      d.targets = JSON.stringify(targets);
    }
    if (points === 0) {
      if (c.plot) { c.plot.destroy(); c.plot = null; c.sig = null; }
      c.plotBox.innerHTML = "<div class='empty'>no data yet</div>";
      continue;
    }
    const sig = keys.join("\u0001");
    if (c.sig !== sig) {
      if (c.plot) c.plot.destroy();
      c.plotBox.innerHTML = "";
      c.plot = makeChart(spec, keys, c);
      c.sig = sig;
    }
    const cols = keys.map(k => spec.log ? spec.series[k].map(v => (v !== null && v > 0) ? v : null) : spec.series[k]);
    c.plot.setData([data.t].concat(cols));
    if (c.plot.cursor.left < 0) c.plot.setLegend({ idx: data.t.length - 1 });  // the latest values, unless hovered
  }
  renderNow(data);
  renderMenu(data);
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

function renderNow(data) {
  const now = data.now || {};
  const l1 = fmt(now["L1 rate"], "Hz") + (now["L1 rate error"] !== undefined ? " ± " + fmt(now["L1 rate error"], "Hz") : "");
  const el = document.getElementById("now");
  el.innerHTML =
    "<span>input <b>" + fmt(now.events_per_s, "events/s") + "</b></span>" +
    "<span>L1 rate <b id='l1' class='" + (data.over_budget ? "over" : "") + "'>" + l1 + "</b></span>" +
    "<span>budget <b>" + fmt(now.budget, "Hz") + "</b></span>" +
    "<span>crossing rate <b>" + fmt(now.bx_rate_hz, "Hz") + "</b></span>" +
    "<span>recorded <b>" + fmt(now.recorded_events, "events") + "</b></span>";
  el.dataset.overBudget = String(!!data.over_budget);
}

// the last window's rate of every seed with its uncertainty, pure rate and target
function renderMenu(data) {
  const by = Object.fromEntries(data.charts.map(c => [c.id, c.series]));
  const seeds = Object.keys(by.seeds || {});
  const table = document.getElementById("menu");
  if (!seeds.length) { table.innerHTML = ""; return; }
  const rows = seeds.map(s => {
    const err = data.errors["seeds/" + s];
    const target = by.anomaly && by.anomaly[s + TARGET] ? lastOf(by.anomaly[s + TARGET]) : null;
    const before = by.anomaly && by.anomaly[s] ? lastOf(by.anomaly[s]) : null;
    return "<tr><td>" + s + "</td><td>" + fmt(lastOf(by.seeds[s]), "Hz") + (err !== undefined && err !== null ? " ± " + fmt(err, "Hz") : "") +
      "</td><td>" + fmt(by.pure && by.pure[s] ? lastOf(by.pure[s]) : null, "Hz") +
      "</td><td>" + (target === null ? "" : fmt(before, "Hz") + " / " + fmt(target, "Hz")) + "</td></tr>";
  });
  table.innerHTML = "<caption>menu, last " + data.window_s + " s</caption><tr><th>seed</th><th>rate (after prescale)</th>" +
    "<th>pure rate</th><th>anomaly seed: rate before prescale / target</th></tr>" + rows.join("");
}

async function tick() {
  let data;
  try {
    const resp = await fetch("api/series", { cache: "no-store" });
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    data = await resp.json();
  } catch (e) {
    document.getElementById("now").textContent = "the page's server does not answer: " + e;
    return;
  }
  try {
    render(data);
  } catch (e) {
    document.getElementById("now").textContent = "the page could not draw the figures: " + e;
    throw e;
  }
}

tick();
setInterval(tick, 1000);
