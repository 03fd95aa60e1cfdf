// Building the page: every piece of data goes in through textContent or an attribute, never as markup.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    node.setAttribute(name, String(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function link(route, text) {
  return el("a", { href: "#/" + route.map(encodeURIComponent).join("/") }, text);
}

export function short(hex, n = 12) {
  return typeof hex === "string" && hex.length > n + 2 ? hex.slice(0, n) + "…" : String(hex);
}

// A two-column table of [label, value] rows.
export function facts(rows) {
  return el("table", { class: "facts" }, rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))));
}

// A table with a header row; `rows` are arrays of cells.
export function table(head, rows, cls = "list") {
  return el("table", { class: cls },
    el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c))))));
}

export function time(ms) {
  return new Date(Number(ms)).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}
