// Small inline-SVG charts for the wallboard: grouped bars, lines against a target, stacked bars.
// No library: each function replaces the children of `host` with one <svg role="img"> that has a
// <title> and <desc> for screen readers; every mark carries data-series/data-value for tests.

const NS = "http://www.w3.org/2000/svg";
let uid = 0;

function el(name, attrs, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function frame(host, width, height, title, desc) {
  const id = `chart-${++uid}`;
  const svg = el("svg", {
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-labelledby": `${id}-t ${id}-d`,
    preserveAspectRatio: "xMidYMid meet",
    class: "chart-svg",
  });
  svg.append(el("title", { id: `${id}-t` }, title), el("desc", { id: `${id}-d` }, desc));
  host.replaceChildren(svg);
  return svg;
}

/** The axis top: 4 grid steps of 1, 2 or 5 x 10^k, so every tick is a round number. */
function niceMax(value) {
  const quarter = Math.max(value, 1e-9) / 4;
  const power = 10 ** Math.floor(Math.log10(quarter));
  for (const step of [1, 2, 5, 10]) if (step * power >= quarter) return Math.max(4, step * power * 4);
  return Math.max(4, 40 * power);
}

function legend(svg, items, x, y) {
  let at = x;
  for (const item of items) {
    svg.append(el("rect", { x: at, y: y - 9, width: 10, height: 10, class: item.cls }));
    const label = el("text", { x: at + 14, y, class: "legend" }, item.label);
    svg.append(label);
    at += 24 + item.label.length * 7;
  }
}

const PAD = { left: 40, right: 48, top: 24, bottom: 28 };

/** Grouped bars per interval: series = [{key, label, cls, values: [n...]}]; labels = ["08:00"...]. */
export function barChart(host, labels, series, title, desc) {
  const width = 720;
  const height = 240;
  const svg = frame(host, width, height, title, desc);
  const plotW = width - PAD.left - PAD.right;
  const plotH = height - PAD.top - PAD.bottom;
  const top = niceMax(Math.max(0, ...series.flatMap((s) => s.values)));
  const group = plotW / Math.max(1, labels.length);
  const bar = Math.max(1, (group * 0.8) / series.length);
  axisY(svg, top, plotH, (v) => String(Math.round(v)), PAD.left);
  labels.forEach((label, i) => {
    series.forEach((s, j) => {
      const value = s.values[i] || 0;
      const h = (value / top) * plotH;
      svg.append(el("rect", {
        x: PAD.left + i * group + group * 0.1 + j * bar,
        y: PAD.top + plotH - h,
        width: bar,
        height: h,
        class: `bar ${s.cls}`,
        "data-series": s.key,
        "data-index": i,
        "data-value": value,
      }));
    });
    const every = Math.ceil(labels.length / 12);
    if (i % every === 0) {
      svg.append(el("text", { x: PAD.left + i * group, y: height - 10, class: "tick" }, label));
    }
  });
  legend(svg, series, PAD.left, 14);
}

function axisY(svg, top, plotH, format, x, anchor = "end") {
  for (let k = 0; k <= 4; k += 1) {
    const y = PAD.top + plotH - (plotH * k) / 4;
    svg.append(el("line", { x1: PAD.left, x2: 720 - PAD.right, y1: y, y2: y, class: "grid" }));
    svg.append(el("text", { x: anchor === "end" ? x - 4 : x + 4, y: y + 4, class: "tick", "text-anchor": anchor }, format((top * k) / 4)));
  }
}

/** Service level (0..1, left axis) and ASA (s, right axis) through the day, with the target line. */
export function slChart(host, labels, sl, asa, target, names, title, desc) {
  const width = 720;
  const height = 240;
  const svg = frame(host, width, height, title, desc);
  const plotW = width - PAD.left - PAD.right;
  const plotH = height - PAD.top - PAD.bottom;
  const step = plotW / Math.max(1, labels.length - 1 || 1);
  axisY(svg, 1, plotH, (v) => `${Math.round(v * 100)}%`, PAD.left);
  const asaTop = niceMax(Math.max(0, ...asa.filter((v) => v !== null)));
  for (let k = 0; k <= 4; k += 1) {
    const y = PAD.top + plotH - (plotH * k) / 4;
    svg.append(el("text", { x: width - PAD.right + 4, y: y + 4, class: "tick" }, String(Math.round((asaTop * k) / 4))));
  }
  const ty = PAD.top + plotH - target * plotH;
  svg.append(el("line", { x1: PAD.left, x2: width - PAD.right, y1: ty, y2: ty, class: "target", "data-series": "target", "data-value": target }));
  const line = (values, scale, cls, key) => {
    const points = [];
    values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      points.push(`${(PAD.left + i * step).toFixed(1)},${(PAD.top + plotH - (v / scale) * plotH).toFixed(1)}`);
    });
    if (points.length) {
      svg.append(el("polyline", { points: points.join(" "), class: `line ${cls}`, "data-series": key, "data-points": points.length }));
    }
  };
  line(sl, 1, "s-sl", "service_level");
  line(asa, asaTop, "s-asa", "asa");
  const every = Math.ceil(labels.length / 12);
  labels.forEach((label, i) => {
    if (i % every === 0) svg.append(el("text", { x: PAD.left + i * step, y: height - 10, class: "tick" }, label));
  });
  legend(svg, [
    { label: names.sl, cls: "s-sl" },
    { label: names.asa, cls: "s-asa" },
    { label: names.target, cls: "s-target" },
  ], PAD.left, 14);
}

/** One horizontal stacked bar per agent: rows = [{name, counts: {key: n}}]; keys = [{key, label, cls}]. */
export function stackedBars(host, rows, keys, title, desc) {
  const width = 720;
  const rowH = 22;
  const height = PAD.top + rows.length * rowH + 12;
  const svg = frame(host, width, Math.max(height, 60), title, desc);
  const left = 140;
  const plotW = width - left - 60;
  const top = Math.max(1, ...rows.map((r) => keys.reduce((n, k) => n + (r.counts[k.key] || 0), 0)));
  rows.forEach((row, i) => {
    const y = PAD.top + i * rowH;
    svg.append(el("text", { x: left - 6, y: y + 14, class: "tick", "text-anchor": "end" }, row.name));
    let x = left;
    let total = 0;
    for (const k of keys) {
      const value = row.counts[k.key] || 0;
      total += value;
      const w = (value / top) * plotW;
      if (value > 0) {
        svg.append(el("rect", {
          x, y: y + 3, width: w, height: rowH - 6, class: `bar ${k.cls}`,
          "data-series": k.key, "data-agent": row.id, "data-value": value,
        }));
      }
      x += w;
    }
    svg.append(el("text", { x: x + 4, y: y + 14, class: "tick" }, String(total)));
  });
  legend(svg, keys, left, 14);
}
