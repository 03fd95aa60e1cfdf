// Small inline SVG pictures drawn here (no chart library): bars over heights and a PoI heat strip.
const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

// Bars of `values` (oldest first) with a title and the largest value as the scale.
export function barChart(title, labels, values, unit) {
  const width = 480, height = 120, pad = 24;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": title });
  root.append(svg("title", {}, title));
  const max = Math.max(1e-9, ...values.filter((v) => Number.isFinite(v)));
  const step = (width - 2 * pad) / Math.max(1, values.length);
  values.forEach((v, i) => {
    const h = Number.isFinite(v) ? ((height - 2 * pad) * v) / max : 0;
    const bar = svg("rect", { x: pad + i * step + 1, y: height - pad - h, width: Math.max(1, step - 2), height: h,
                             class: "bar" });
    bar.append(svg("title", {}, `height ${labels[i]}: ${Number.isFinite(v) ? v : "–"} ${unit}`));
    root.append(bar);
  });
  root.append(svg("text", { x: pad, y: 14, class: "label" }, `${title} (max ${+max.toFixed(3)} ${unit})`));
  if (labels.length) {
    root.append(svg("text", { x: pad, y: height - 6, class: "axis" }, labels[0]));
    root.append(svg("text", { x: width - 4, y: height - 6, class: "axis", "text-anchor": "end" },
                    labels[labels.length - 1]));
  }
  return root;
}

// One row per validator, one cell per challenge height (oldest first), coloured by how its answer scored.
export function heatStrip(title, heights, validators, cellOf) {
  const cell = 12, left = 120, top = 20;
  const width = left + heights.length * cell + 4, height = top + validators.length * cell + 18;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "heat", role: "img",
                            "aria-label": title });
  root.append(svg("title", {}, title));
  root.append(svg("text", { x: 0, y: 12, class: "label" }, title));
  validators.forEach((v, row) => {
    root.append(svg("text", { x: 0, y: top + row * cell + 10, class: "axis" }, v.slice(0, 14) + "…"));
    heights.forEach((h, col) => {
      const state = cellOf(v, h);
      const rect = svg("rect", { x: left + col * cell, y: top + row * cell, width: cell - 1, height: cell - 1,
                                 class: "cell " + state });
      rect.append(svg("title", {}, `${v} at height ${h}: ${state}`));
      root.append(rect);
    });
  });
  root.append(svg("text", { x: left, y: height - 4, class: "axis" },
                  "green: correct, red: wrong, orange: absent (missed), grey: not scored yet"));
  return root;
}
