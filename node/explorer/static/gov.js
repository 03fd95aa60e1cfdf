// The governance pages: `#/governance[/<after id>]` lists proposals a page at a time, `#/proposal/<id>` shows
// one (its content, deposits, votes, tally and result). Read from the `proposals`, `proposal` and `upgrade` RPCs.
import { el, facts, link, short, table } from "./dom.js";
import { call } from "./rpc.js";

const PAGE = 50;
const KIND_NAMES = { parameter_change: "parameter change", poi_models: "PoI models", software_upgrade: "software upgrade",
                     text: "text", retire_models: "model retirement" };

function kindName(kind) {
  return KIND_NAMES[kind] ?? kind;
}

function statusName(s) {
  return el("span", { class: `gov-${s}` }, s.replace("_", " "));
}

function tallyText(t) {
  return t ? `yes ${t.yes}, no ${t.no}, veto ${t.no_with_veto}, abstain ${t.abstain} of ${t.bonded} bonded` : "–";
}

// When the proposal's current period ends: the vote's last block, or the deposit deadline before it opens.
function periodEnd(p) {
  return p.voting_start > 0 ? link(["block", p.voting_end], p.voting_end) : `deposits until ${p.deposit_end}`;
}

function isClosed(p) {
  return p.status !== "deposit_period" && p.status !== "voting_period";
}

export async function governancePage(after = "0") {
  const from = Number(after);
  const [list, upgrade] = await Promise.all([call("proposals", { after: from, limit: PAGE }), call("upgrade")]);
  const parts = [el("h2", {}, "Governance")];
  if (upgrade.plan) {
    parts.push(el("p", { class: "upgrade" }, `upgrade '${upgrade.plan.name}' scheduled at height ${upgrade.plan.height}`));
  }
  parts.push(list.length
    ? table(["id", "title", "kind", "status", "deposit", "voting end", "tally"], list.map((p) => [
        link(["proposal", p.id], `#${p.id}`), link(["proposal", p.id], p.title), kindName(p.kind), statusName(p.status),
        p.total_deposit, periodEnd(p), isClosed(p) ? tallyText(p.tally) : "voting",
      ]), "list proposals")
    : el("p", {}, from ? `no proposals after #${from}` : "no proposals yet"));
  if (list.length === PAGE) parts.push(el("p", {}, link(["governance", list[list.length - 1].id], "next page")));
  if (upgrade.applied.length) {
    parts.push(el("h3", {}, "Upgrades run"), table(["name", "height"], upgrade.applied.map((u) => [
      u.name, link(["block", u.height], u.height)]), "list upgrades"));
  }
  return parts;
}

function contentParts(p) {
  const c = p.content;
  if (p.kind === "parameter_change") {
    return table(["parameter", "new value"], c.changes.map((x) => [x.path, x.value]), "list changes");
  }
  if (p.kind === "poi_models") {
    const row = (what) => (id) => [what, link(["model", id], id)];
    return table(["change", "model"], [...c.add.map(row("added")), ...c.retire.map(row("retired"))], "list changes");
  }
  if (p.kind === "software_upgrade") {
    return facts([["upgrade", c.name], ["height", c.height], ["info", c.info || "–"]]);
  }
  return el("p", {}, "a text proposal: nothing to execute, the title and summary are the proposal");
}

export async function proposalPage(id) {
  const p = await call("proposal", { id: Number(id) });
  const closed = isClosed(p);
  return [
    el("h2", {}, `Proposal #${p.id}: ${p.title}`),
    facts([["id", p.id], ["title", p.title], ["summary", p.summary || "–"], ["kind", kindName(p.kind)],
           ["status", statusName(p.status)], ["proposer", link(["account", p.proposer], p.proposer)],
           ["submitted", link(["block", p.submit_height], p.submit_height)], ["deposit end", p.deposit_end],
           ["voting", p.voting_start > 0 ? `${p.voting_start} to ${p.voting_end}` : "not open (deposit below the minimum)"],
           ["total deposit", p.total_deposit], ["result", p.result || (closed ? "–" : "open")]]),
    el("h3", {}, "Content"), contentParts(p),
    el("h3", {}, closed ? "Tally" : "Tally so far"),
    p.tally ? facts([["yes", p.tally.yes], ["no", p.tally.no], ["no with veto", p.tally.no_with_veto],
                     ["abstain", p.tally.abstain], ["bonded", p.tally.bonded]])
      : el("p", {}, "no tally until the vote opens"),
    closed ? el("p", { class: "note" }, "deposits and votes are removed from state when the vote closes (the deposits " +
                "refunded or burnt); the tally above is what remains") : [
      el("h3", {}, `Deposits (${p.deposits.length})`),
      table(["depositor", "amount"], p.deposits.map((d) => [link(["account", d.depositor], short(d.depositor, 20)),
                                                           d.amount]), "list deposits"),
      el("h3", {}, `Votes (${p.votes.length})`),
      table(["voter", "option"], p.votes.map((v) => [link(["account", v.voter], short(v.voter, 20)),
                                                     v.option.replaceAll("_", " ")]), "list votes"),
    ],
  ];
}
