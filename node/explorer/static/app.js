// The explorer: a hash-routed page over the node's JSON-RPC (`#/`, `#/block/H`, `#/tx/HASH`,
// `#/account/ADDR`, `#/validators`, `#/models`, `#/model/ID`, `#/governance`, `#/proposal/ID`) with a live feed
// from the websocket.
import { barChart, heatStrip } from "./charts.js";
import { el, facts, link, short, table, time } from "./dom.js";
import { governancePage, proposalPage } from "./gov.js";
import { AuthError, call, setRpcToken, subscribeBlocks } from "./rpc.js";
import { tensorRows } from "./tensor.js";
import { verifyInference } from "./verify.js";

const main = document.getElementById("main");
const liveState = document.getElementById("live");
const HOME_BLOCKS = 40;
let route = "";
let refreshing = false;
// Each navigation bumps the generation; an answer that arrives for an older one is dropped, so a slow live
// refresh of the home page never paints over the page the reader has moved to.
let generation = 0;

function show(gen, ...nodes) {
  if (gen === generation) main.replaceChildren(...nodes);
}

function failure(err) {
  return el("p", { class: "error" }, `error: ${err.message || err}`);
}

// ---------------------------------------------------------------------------------------------- home

async function home() {
  const [status, recent, vals] = await Promise.all([
    call("status"), call("ots_recentBlocks", { count: HOME_BLOCKS }), call("validators"),
  ]);
  const chron = [...recent].reverse();
  const intervals = chron.filter((b) => b.interval !== null).map((b) => b.interval);
  const avg = intervals.length ? intervals.reduce((a, b) => a + b, 0) / intervals.length : null;
  // Up: precommitted at least one of the last five blocks (a commit holds the quorum, not always every vote).
  const upSet = new Set(recent.slice(0, 5).flatMap((b) => b.signers.filter((s) => s.for_block).map((s) => s.validator)));
  const lastSigners = vals.validators.filter((v) => upSet.has(v.address)).length;
  const names = vals.validators.map((v) => v.address);
  const cells = new Map();
  for (const b of chron) for (const p of b.poi ?? []) cells.set(`${p.validator}@${b.height}`, p.outcome);
  const txs = recent.flatMap((b) => b.tx_hashes.map((h) => [b.height, h])).slice(0, 20);
  return [
    el("section", { class: "cards" },
      card("head", link(["block", status.height], status.height), `block ${short(status.block_id)}`),
      card("block interval", avg === null ? "–" : `${(avg / 1000).toFixed(2)} s`, `mean of the last ${intervals.length}`),
      card("validators up", `${lastSigners} / ${names.length}`, "precommitted one of the last 5 blocks"),
      card("chain", status.chain_id, `peers ${status.peers}, mempool ${status.mempool_size}`)),
    el("section", { class: "pictures" },
      barChart("block interval", chron.map((b) => b.height), chron.map((b) => (b.interval ?? NaN) / 1000), "s"),
      barChart("tx/s", chron.map((b) => b.height),
               chron.map((b) => (b.interval ? b.txs / (b.interval / 1000) : NaN)), "tx/s"),
      heatStrip("PoI per validator per challenge height", chron.map((b) => b.height), names,
                (v, h) => cells.get(`${v}@${h}`) ?? "unscored")),
    el("h2", {}, "Latest blocks"),
    table(["height", "id", "time", "txs", "gas", "proposer", "signed"], recent.slice(0, 15).map((b) => [
      link(["block", b.height], b.height), short(b.id), time(b.time), b.txs, b.gas_used,
      link(["account", b.proposer], short(b.proposer, 16)), `${b.signers.filter((s) => s.for_block).length}`,
    ]), "list blocks"),
    el("h2", {}, "Latest transactions"),
    txs.length ? table(["height", "hash"], txs.map(([h, hash]) => [link(["block", h], h), link(["tx", hash], hash)]),
                       "list txs")
      : el("p", {}, `no transactions in the last ${HOME_BLOCKS} blocks`),
  ];
}

function card(title, value, note) {
  return el("div", { class: "card" }, el("div", { class: "title" }, title), el("div", { class: "value" }, value),
            el("div", { class: "note" }, note));
}

// ---------------------------------------------------------------------------------------------- pages

async function blockPage(height) {
  const b = await call("block", { height: Number(height) });
  const h = b.header;
  return [
    el("h2", {}, `Block ${b.height}`),
    facts([["id", b.id], ["time", time(h.time)], ["round", h.round], ["proposer", link(["account", h.proposer], h.proposer)],
           ["transactions", b.txs.length], ["gas used", b.results.reduce((n, r) => n + r.gas_used, 0)],
           ["fees", b.txs.reduce((n, t) => n + t.fee, 0)], ["evidence", b.evidence],
           ["txs root", h.txs_root], ["results root", h.results_root], ["state root", h.state_root],
           ["previous", b.height > 1 ? link(["block", b.height - 1], h.last_block_id) : h.last_block_id],
           ["next", link(["block", b.height + 1], b.height + 1)]]),
    el("h3", {}, "Transactions"),
    table(["#", "hash", "kind", "sender", "status", "gas", "fee", "log"], b.txs.map((t, i) => [
      i, link(["tx", t.hash], short(t.hash, 16)), t.kind, link(["account", t.sender], short(t.sender, 16)),
      status(b.results[i].status), b.results[i].gas_used, t.fee, b.results[i].log,
    ]), "list txs"),
  ];
}

function status(s) {
  return el("span", { class: s === "ok" ? "ok" : "bad" }, s);
}

// A tensor as a table of numbers. `gridK`: the output is a float committed on the grid q = round(y * 2^k), and
// each cell shows q / 2^k (q itself in the cell's title).
function grid(tensor, name, gridK = null) {
  const rows = tensorRows(tensor);
  const cell = (v) => (gridK === null ? el("td", {}, v) : el("td", { title: `q = ${v}` }, Number(v) / 2 ** gridK));
  const note = `${name ? name + ": " : ""}${tensor.dtype} [${tensor.shape.join(", ")}]` +
    (gridK === null ? "" : `, committed on the grid q = round(y·2^${gridK}), shown as q / 2^${gridK}`);
  return el("div", { class: "tensor" }, el("div", { class: "note" }, note),
    el("table", { class: "grid" }, rows.slice(0, 64).map((r) => el("tr", {}, r.slice(0, 64).map(cell)))));
}

const FLOATS = new Set(["float16", "float32", "float64"]);

async function txPage(hash) {
  const t = await call("ots_txDetail", { hash });
  const p = t.payload;
  const parts = [
    el("h2", {}, "Transaction"),
    facts([["hash", t.hash], ["status", status(t.result.status)], ["block", link(["block", t.height], t.height)],
           ["index", t.index], ["time", time(t.block_time)], ["kind", p.kind],
           ["sender", link(["account", t.tx.sender], t.tx.sender)], ["nonce", t.tx.nonce], ["fee", t.tx.fee],
           ["gas limit", t.tx.gas_limit], ["gas used", t.result.gas_used], ["log (events)", t.result.log || "–"],
           ["result data", t.result.data || "–"]]),
  ];
  if (p.kind === "infer") {
    const model = await call("model", { model_id: p.model_id }).catch(() => null);
    const specs = model ? model.outputs : [];
    parts.push(el("h3", {}, "Inputs"), facts([["model", link(["model", p.model_id], model ? model.name : p.model_id)],
                                               ["max model fee", p.max_model_fee]]),
               ...p.inputs.map((x, i) => grid(x, model && model.inputs[i] ? model.inputs[i].name : "")));
    parts.push(el("h3", {}, "Outputs"), ...t.result.outputs.map((y, i) => {
      const spec = specs[i];
      return grid(y, spec ? spec.name : "", spec && FLOATS.has(spec.dtype) ? Number(model.grid_k) : null);
    }));
    const proof = el("p", { class: "proof", id: "proof" }, "checking the proof…");
    parts.push(el("h3", {}, "Proof"), proof);
    checkProof(t.hash, t.height, proof);
  } else {
    parts.push(el("h3", {}, "Payload"), facts(Object.entries(p).filter(([k]) => k !== "kind").map(([k, v]) => [
      k, typeof v === "object" ? JSON.stringify(v) : v])));
  }
  return parts;
}

async function checkProof(hash, height, target) {
  try {
    const [info, vals] = await Promise.all([call("inference", { hash }), call("validators", { height })]);
    const verdict = await verifyInference(info, vals);
    target.className = verdict.ok ? "proof verified" : "proof failed";
    target.textContent = verdict.ok
      ? `verified by ${verdict.signedPower} of ${verdict.totalPower} validators' power (${verdict.signers} signatures ` +
        `checked in this page against the results root and the commit of block ${verdict.height})`
      : `NOT verified: ${verdict.reasons.join("; ")}`;
  } catch (err) {
    target.className = "proof failed";
    target.textContent = `cannot check the proof: ${err.message || err}`;
  }
}

async function accountPage(address) {
  const [a, vals, recent, bonds] = await Promise.all([
    call("account", { address }), call("validators"), call("ots_accountTxs", { address, limit: 25 }),
    call("delegations", { address }),
  ]);
  const owned = vals.validators.filter((v) => v.owner === address || v.address === address);
  return [
    el("h2", {}, "Account"),
    facts([["address", a.address], ["balance", a.balance], ["nonce", a.nonce], ["exists", a.exists ? "yes" : "no"],
           ["stake", owned.reduce((n, v) => n + v.stake, 0)], ["at height", a.height]]),
    owned.length ? [el("h3", {}, "Validators it owns or is"), validatorTable(owned)] : [],
    el("h3", {}, "Delegations"),
    bonds.delegations.length
      ? table(["validator", "bonded", "rewards due", "commission"], bonds.delegations.map((d) => [
          link(["account", d.validator], short(d.validator, 20)), d.amount, d.rewards, `${d.commission_bps / 100} %`,
        ]), "list delegations")
      : el("p", {}, "no delegations"),
    el("h3", {}, "Recent transactions"),
    recent.txs.length
      ? table(["height", "hash", "kind", "from", "status", "fee"], recent.txs.map((t) => [
          link(["block", t.height], t.height), link(["tx", t.hash], short(t.hash, 16)), KINDS[t.kind] ?? t.kind,
          t.sender ? link(["account", t.sender], short(t.sender, 16)) : "–", t.status ? status(t.status) : "–", t.fee ?? "–",
        ]), "list account-txs")
      : el("p", {}, "no transactions"),
  ];
}

const KINDS = { 1: "transfer", 2: "stake", 3: "unstake", 4: "unjail", 5: "model chunk", 6: "infer", 7: "delegate",
                8: "undelegate", 9: "redelegate", 10: "withdraw rewards", 11: "edit validator", 20: "submit proposal",
                21: "deposit", 22: "vote" };

function validatorTable(list, window) {
  const head = ["address", "power", "stake", "self stake", "delegated", "commission", "self-stake floor", "PoI score",
                "correct", "wrong", "missed", "jailed", "slashed"];
  if (window) head.splice(11, 0, `misses in window (${window.miss_window}, jail at ${window.max_misses})`);
  return table(head, list.map((v) => {
    const row = [link(["account", v.address], short(v.address, 20)), v.power, v.stake, v.self_stake, v.delegated,
                 `${v.commission_bps / 100} %`, v.min_self_stake, v.poi.score, v.poi.correct, v.poi.wrong, v.poi.missed,
                 v.jailed ? (v.tombstoned ? "tombstoned" : `until ${v.jailed_until}`) : "no", v.slashed];
    if (window) row.splice(11, 0, v.window_misses);
    return row;
  }), "list validators");
}

async function validatorsPage() {
  const vals = await call("ots_validators");
  return [el("h2", {}, `Validators (next height ${vals.height}, total power ${vals.total_power})`),
          validatorTable(vals.validators, vals.miss_window === null ? null : vals)];
}

async function modelsPage() {
  const models = await call("models", { limit: 100 });
  return [el("h2", {}, "Models"), table(["name", "id", "owner", "class", "gas per call", "fee per call", "registered"],
    models.map((m) => [link(["model", m.model_id], m.name), short(m.model_id), short(m.owner, 16), m.model_class,
                       m.gas_per_call, m.fee_per_call, m.registered_at]), "list models")];
}

async function modelPage(id) {
  const [m, stats] = await Promise.all([call("model", { model_id: id }), call("ots_modelStats", { model_id: id })]);
  const spec = (s) => `${s.name}: ${s.dtype} [${s.shape.join(", ")}]`;
  return [el("h2", {}, `Model ${m.name}`), facts([
    ["id", m.model_id], ["owner", link(["account", m.owner], m.owner)], ["class", m.model_class],
    ["inputs", m.inputs.map(spec).join("; ")], ["outputs", m.outputs.map(spec).join("; ")],
    ["gas per call", m.gas_per_call], ["fee per call", m.fee_per_call], ["bytes", m.total_bytes],
    ["calls", stats.calls], ["golden", stats.golden_status],
    ["registered at", m.registered_at > 0 ? link(["block", m.registered_at], m.registered_at) : "genesis"],
  ])];
}

// ---------------------------------------------------------------------------------------------- routing

const PAGES = { block: blockPage, tx: txPage, account: accountPage, validators: validatorsPage,
                models: modelsPage, model: modelPage, governance: governancePage, proposal: proposalPage };

async function render() {
  const gen = ++generation;
  route = location.hash.replace(/^#\/?/, "");
  const [name, ...args] = route.split("/").map(decodeURIComponent);
  const page = name ? PAGES[name] : home;
  document.body.dataset.page = name || "home";
  document.body.dataset.ready = "0";
  if (page) {
    try {
      show(gen, ...[await page(...args)].flat(2));
    } catch (err) {
      if (err instanceof AuthError) document.body.dataset.page = "token";
      show(gen, err instanceof AuthError ? tokenForm(err.message) : failure(err));
    }
  } else {
    show(gen, el("p", { class: "error" }, "no such page"));
  }
  if (gen === generation) document.body.dataset.ready = "1";
}

// The node wants its rpc.auth_token: ask once; the page reloads with it (rpc.js keeps it for this tab only).
// The input has no name and the form no action: nothing can be submitted into a URL (and the policy's
// form-action 'none' forbids it anyway).
function tokenForm(message) {
  const input = el("input", { id: "token", type: "password", autocomplete: "off", placeholder: "rpc.auth_token" });
  const form = el("form", { id: "token-form" },
    el("p", { id: "token-note", class: "error" }, message),
    el("label", {}, "RPC token ", input), " ", el("button", { type: "submit" }, "use token"),
    el("p", { class: "note" }, "Kept in this tab's session storage until the tab closes; sent to this node only."));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setRpcToken(input.value.trim());
    location.reload();
  });
  return form;
}

async function search(event) {
  event.preventDefault();
  const input = document.getElementById("q");
  const note = document.getElementById("search-note");
  note.textContent = "";
  try {
    const hit = await call("ots_search", { query: input.value });
    const target = { block: ["block", hit.height], tx: ["tx", hit.hash], account: ["account", hit.address],
                     model: ["model", hit.model_id], proposal: ["proposal", hit.id] }[hit.kind];
    if (!target) { note.textContent = "nothing found"; return; }
    location.hash = "#/" + target.map(encodeURIComponent).join("/");
  } catch (err) {
    note.textContent = err.message || String(err);
  }
}

subscribeBlocks(async (b) => {
  document.getElementById("head").textContent = `head ${b.height}`;
  if (route === "" && !refreshing) {
    refreshing = true;
    const gen = generation;
    try { show(gen, ...(await home()).flat(2)); } catch (err) { show(gen, failure(err)); } finally { refreshing = false; }
  }
}, (state) => { liveState.textContent = state; liveState.className = state; });

document.getElementById("search").addEventListener("submit", search);
call("status").then((s) => {
  const head = document.getElementById("head");
  if (!head.textContent) head.textContent = `head ${s.height}`;
}).catch(() => {});
window.addEventListener("hashchange", render);
render();
