"""The console's HTML: server-rendered pages over the dictionaries of ``api.py``.

No script at all, one stylesheet served by the gateway; every value is escaped. The markup aims
at WCAG 2.1 AA (checked with axe-core in tests/browser): a language, a skip link, landmarks,
headings in order, a label for every field, table headers with scope, contrast of 4.5:1 or more.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from gateway.console import api
from gateway.console.auth import Session, may
from gateway.core import audit

__all__ = ["layout", "sign_in", "dashboard", "search", "message", "audit_page", "bulk", "bulk_job", "rules", "problem"]


def e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def layout(title: str, body: str, s: Session | None = None, *, notice: str = "", error: str = "") -> str:
    nav = ""
    if s is not None:
        links = [("/console/", "Dashboard"), ("/console/messages", "Search"), ("/console/dead-letters", "Dead letters"),
                 ("/console/rules", "Rule sets and reports"), ("/console/audit", "Audit log")]
        nav = ('<nav aria-label="Main"><ul>' + "".join(f'<li><a href="{h}">{t}</a></li>' for h, t in links) + "</ul>"
               f'<form method="post" action="/console/sign-out" class="inline">{csrf_field(s)}'
               f'<span>Signed in as <strong>{e(s.operator)}</strong> ({e(", ".join(s.roles))})</span> '
               '<button type="submit">Sign out</button></form></nav>')
    flash = (f'<p class="notice" role="status">{e(notice)}</p>' if notice else "") + \
            (f'<p class="error" role="alert">{e(error)}</p>' if error else "")
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{e(title)} - chain gateway console</title><link rel="stylesheet" href="/console/static/console.css">'
            '</head><body><a class="skip" href="#main">Skip to content</a>'
            f'<header><p class="brand">Chain gateway console</p>{nav}</header>'
            f'<main id="main"><h1>{e(title)}</h1>{flash}{body}</main></body></html>')


def csrf_field(s: Session) -> str:
    return f'<input type="hidden" name="csrf" value="{e(s.csrf)}">'


def problem(status: int, message: str, s: Session | None) -> str:
    return layout(f"Refused ({status})", '<p><a href="/console/">Back to the dashboard</a></p>', s, error=message)


def sign_in(pre_csrf: str, error: str = "", notice: str = "", certificate: str | None = None) -> str:
    body = ""
    if certificate:
        body += ('<form method="post" action="/console/sign-in" class="card">'
                 f'<input type="hidden" name="csrf" value="{e(pre_csrf)}"><input type="hidden" name="method" '
                 f'value="certificate"><p>Your browser presented the certificate of <strong>{e(certificate)}</strong>.'
                 '</p><p><button type="submit">Sign in with your certificate</button></p></form>'
                 "<h2>Or with a password</h2>")
    body += ('<form method="post" action="/console/sign-in" class="card">'
            f'<input type="hidden" name="csrf" value="{e(pre_csrf)}">'
            '<p><label for="name">Operator name</label><input id="name" name="name" autocomplete="username" required></p>'
            '<p><label for="password">Password</label><input id="password" name="password" type="password" '
            'autocomplete="current-password" required></p><p><button type="submit">Sign in</button></p></form>')
    return layout("Sign in", body, error=error, notice=notice)


def _table(caption: str, head: list[str], rows: list[list[str]], *, raw: bool = False) -> str:
    th = "".join(f'<th scope="col">{e(h)}</th>' for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{c if raw else e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table><caption>{e(caption)}</caption><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>'


def _status(value: str) -> str:
    return f'<span class="st st-{e(value)}">{e(value)}</span>'


def dashboard(d: dict[str, Any], s: Session) -> str:
    routes = [[e(n), str(r["queued"]), str(r["in_flight"]), str(r["delivered_today"]), str(r["refused"]), str(r["dead"]),
               e(r["oldest_undelivered_seconds"]), _status(r["status"])] for n, r in d["routes"].items()]
    checks = [[e(c["name"]), _status(c["status"]), e(c["threshold"]), e(c["reason"])] for c in d["checks"]]
    circuits = [[e(p), _status(v)] for p, v in d["circuits"].items()]
    gaps = d["ind_gaps"]
    body = (f'<p>Overall: {_status(d["status"])}</p>'
            + _table("Routes", ["route", "queued", "in flight", "delivered today", "refused", "dead letters",
                                "oldest undelivered (s)", "status"], routes, raw=True)
            + _table("Health checks and their thresholds", ["check", "status", "threshold", "reason"], checks, raw=True)
            + _table("Partner circuits", ["partner", "circuit"], circuits, raw=True)
            + f'<p>IND sequence: {e(gaps.get("open_gaps", 0))} open gap(s); first missing '
              f'{e(", ".join(map(str, gaps.get("first_missing", []))) or "none")}.</p>'
            + "<h2>Deliveries and backlog, last 24 hours</h2>" + chart(d["chart_24h"], "per hour")
            + "<h2>Deliveries and backlog, last 30 days</h2>" + chart(d["chart_30d"], "per day"))
    return layout("Dashboard", body, s)


def chart(series: list[dict[str, Any]], unit: str) -> str:
    """Bars for deliveries, a line for the backlog, drawn here as SVG (no script)."""
    w, h, n = 720, 180, max(len(series), 1)
    top = max([p["delivered"] for p in series] + [p["backlog"] for p in series] + [1])
    bw = w / n
    bars = "".join(f'<rect x="{i * bw + 1:.1f}" y="{h - p["delivered"] / top * h:.1f}" width="{bw - 2:.1f}" '
                   f'height="{p["delivered"] / top * h:.1f}" class="bar"><title>{e(p["end"])}: {p["delivered"]} '
                   f'delivered</title></rect>' for i, p in enumerate(series))
    line = " ".join(f'{i * bw + bw / 2:.1f},{h - p["backlog"] / top * h:.1f}' for i, p in enumerate(series))
    total = sum(p["delivered"] for p in series)
    label = (f"{total} deliveries {unit} bars; backlog line ending at {series[-1]['backlog'] if series else 0}; "
             f"scale 0 to {top}")
    return (f'<figure><svg role="img" aria-label="{e(label)}" viewBox="0 0 {w} {h}" width="100%" height="{h}">'
            f'{bars}<polyline points="{line}" class="line"/></svg><figcaption>{e(label)}. Bars: deliveries; '
            'line: undelivered backlog.</figcaption></figure>')


def _select(name: str, label: str, options: tuple[str, ...], current: str | None) -> str:
    opts = '<option value="">any</option>' + "".join(
        f'<option value="{o}"{" selected" if o == current else ""}>{o}</option>' for o in options)
    return f'<p><label for="{name}">{label}</label><select id="{name}" name="{name}">{opts}</select></p>'


def _field(name: str, label: str, value: str | None, hint: str = "") -> str:
    return (f'<p><label for="{name}">{label}</label><input id="{name}" name="{name}" value="{e(value or "")}"'
            + (f' aria-describedby="{name}-hint"' if hint else "") + ">"
            + (f'<span class="hint" id="{name}-hint">{e(hint)}</span>' if hint else "") + "</p>")


def search(q: dict[str, str], result: dict[str, Any] | None, s: Session, error: str = "") -> str:
    # Posted, never echoed: the BSN or V-number goes into no URL and no page (only its keyed hash).
    form = ('<form method="post" action="/console/messages" class="card search">' + csrf_field(s)
            + _field("ref", "Id", q.get("ref"), "meldingId, berichtId, vorderingId, zaaknummer or number")
            + _field("person", "BSN or V-number", "", "searching by a person (kept hidden)" if q.get("pd")
                     else "found by keyed hash; never shown")
            + (f'<input type="hidden" name="pd" value="{e(q["pd"])}">' if q.get("pd") else "")
            + _select("state", "State", api.STATES, q.get("state"))
            + _select("route", "Route", api.ROUTES, q.get("route"))
            + _select("partner", "Partner", api.PARTNERS, q.get("partner"))
            + _field("error", "Error code", q.get("error"))
            + _field("since", "Received from", q.get("since"), "e.g. 2026-11-01")
            + _field("until", "Received before", q.get("until"))
            + '<p><button type="submit">Search</button></p></form>')
    body = form
    if result is not None:
        rows = [[f'<a href="/console/messages/{m["id"]}">{m["id"]}</a>', e(m["route"]), e(m["kind"]), e(m["key"]),
                 _status(m["state"]), e(m["received"]), e(_person(m["person"]))] for m in result["messages"]]
        body += _table(f"{len(rows)} message(s)", ["#", "route", "kind", "id", "state", "received", "person"],
                       rows, raw=True)
        if result["next"]:
            nq = {k: v for k, v in q.items() if v and k != "after"} | {"after": result["next"]}
            body += f'<p><a href="/console/messages?{e(urlencode(nq))}">Next page</a></p>'
    return layout("Search messages", body, s, error=error)


def _person(p: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in p.items() if v and k != "nationaliteit")


def message(t: dict[str, Any], s: Session, notice: str = "") -> str:
    ref = quote(str(t["id"]))
    facts = [[e(k), e(json.dumps(v) if not isinstance(v, str) else v)] for k, v in t["facts"].items()]
    person = [[e(k), e(v)] for k, v in t["person"].items()]
    events = [[e(x["at"]), e(x["stage"]), e(x["event"]), e(_compact(x["detail"]))] for x in t["events"]]
    inbound = [[e(x["at"]), e(x["channel"]), e(x["outcome"]), e(x["http_status"]), e(x["fault_code"])]
               for x in t["inbound"]]
    body = (f'<p>Route {e(t["route"])}, {e(t["kind"])} <strong>{e(t["key"])}</strong>, state {_status(t["state"])}, '
            f'received {e(t["received"])}. <a href="/api/v1/messages/{ref}">As JSON</a></p>'
            + _table("Facts", ["fact", "value"], facts, raw=True)
            + _table("Person" + (" (in clear)" if t["unmasked"] else " (masked)"), ["field", "value"], person, raw=True)
            + _table("Received", ["at", "channel", "outcome", "http", "fault"], inbound, raw=True)
            + _table("Timeline", ["at", "stage", "event", "detail"], events, raw=True))
    for d in t["deliveries"]:
        rows = [[str(a["attempt"]), e(a["at"]), e(a["duration_ms"]), e(a["http_status"]), e(a["outcome"]), e(a["detail"])]
                for a in d["attempts"]]
        body += (f'<h2>Delivery {d["id"]} to {e(d["partner"])}: {e(d["operation"])}</h2>'
                 f'<p>State {_status(d["state"])}; queued {e(d["queued"])}; delivered {e(d["delivered"] or "-")}; '
                 f'receipt {e(d["receipt_ref"] or "-")}; reason {e(d["dead_reason"] or "-")}</p>'
                 + _table(f"Attempts of delivery {d['id']}", ["#", "at", "ms", "http", "outcome", "detail"], rows, raw=True))
    body += _actions(t, s, ref) + _raw(t, s, ref)
    return layout(f"Message {t['id']}", body, s, notice=notice)


def _compact(detail: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(detail.items()))


def _actions(t: dict[str, Any], s: Session, ref: str) -> str:
    out = ""
    for a in t["actions"]:
        rid = f'reason-{a["action"]}-{a["delivery"] or t["id"]}'
        action = (f'/console/messages/{ref}/correct' if a["action"] == "correct"
                  else f'/console/deliveries/{a["delivery"]}/{a["action"]}')
        out += (f'<form method="post" action="{action}" class="card">'
                f'{csrf_field(s)}<p><label for="{rid}">Reason</label><input id="{rid}" name="reason"'
                f'{"" if a["action"] == "retry" else " required"}></p>'
                f'<p><button type="submit">{e(a["label"])}</button></p></form>')
    if may(s, "unmask") and not t["unmasked"]:
        out += (f'<form method="post" action="/console/messages/{ref}/unmask" class="card">{csrf_field(s)}'
                '<p><label for="unmask-reason">Reason to see this person in clear</label>'
                '<input id="unmask-reason" name="reason" required></p>'
                '<p><button type="submit">Show personal data</button></p></form>')
    return ("<h2>Actions</h2>" + out) if out else ""


def _raw(t: dict[str, Any], s: Session, ref: str) -> str:
    out = "<h2>Raw bytes</h2>"
    for r in t["raw"]:
        out += f'<details><summary>{e(r["what"])}, {r["bytes"]} bytes</summary><pre>{e(r["text"])}</pre>'
        if may(s, "unmask"):
            rid = f'dl-{e(r["name"])}'
            out += (f'<form method="post" action="/console/messages/{ref}/raw/{e(r["name"])}">{csrf_field(s)}'
                    f'<label for="{rid}">Reason</label><input id="{rid}" name="reason" required> '
                    '<button type="submit">Download exact bytes</button></form>')
        out += "</details>"
    return out


def audit_page(d: dict[str, Any], q: dict[str, str], s: Session) -> str:
    form = ('<form method="get" action="/console/audit" class="card">'
            + _field("actor", "Operator", q.get("actor"))
            + _select("action", "Action", tuple(audit.ACTIONS), q.get("action"))
            + _field("since", "Since", q.get("since"), "e.g. 2026-11-01") + '<p><button type="submit">Filter</button></p></form>')
    rows = [[x["at"], x["actor"], x["channel"], x["action"], x["target"] or "-", x["outcome"], x["reason"] or "-"]
            for x in d["entries"]]
    return layout("Audit log", form + "<p>Append-only: nothing here can be edited.</p>"
                  + _table(f"{len(rows)} entries", ["at", "who", "via", "action", "target", "outcome", "reason"], rows), s)


def bulk_job(j: dict[str, Any], s: Session) -> str:
    """The progress of a bulk action; the operator reloads it (no script, no timed refresh: WCAG 2.2.1)."""
    handled = j["done"] + j["skipped"]
    state = "finished" if j["finished"] else "running"
    body = (f'<p><label for="progress">{e(j["action"])}: {handled} of {j["total"]} handled ({state})</label> '
            f'<progress id="progress" max="{j["total"]}" value="{handled}">{handled} of {j["total"]}</progress></p>'
            f'<p role="status">{j["done"]} done, {j["skipped"]} skipped (their state had changed; see the audit log).'
            f'{" " + e(j["error"]) if j["error"] else ""}</p>'
            + ("" if j["finished"] else f'<p><a href="/console/dead-letters/jobs/{e(j["id"])}">Show progress</a></p>')
            + '<p><a href="/console/dead-letters">Back to the dead letters</a></p>')
    return layout("Bulk action", body, s)


def bulk(d: dict[str, Any], q: dict[str, str], s: Session, *, error: str = "") -> str:
    form = ('<form method="get" action="/console/dead-letters" class="card">'
            + _select("partner", "Partner", api.PARTNERS, q.get("partner"))
            + _select("route", "Route", api.ROUTES, q.get("route")) + '<p><button type="submit">Preview</button></p></form>')
    body = form + f'<p role="status">{d["count"]} dead letter(s) match.</p>'
    if d["count"] and may(s, "act"):
        hidden = "".join(f'<input type="hidden" name="{k}" value="{e(d[k])}">' for k in ("partner", "route") if d[k])
        body += ('<form method="post" action="/console/dead-letters" class="card">' + csrf_field(s) + hidden
                 + f'<input type="hidden" name="expected" value="{d["count"]}">'
                 '<p><label for="bulk-reason">Reason (required to resolve)</label><input id="bulk-reason" name="reason"></p>'
                 f'<p><button type="submit" name="action" value="retry">Retry all {d["count"]}</button> '
                 f'<button type="submit" name="action" value="resolve">Resolve all {d["count"]}</button></p></form>')
    body += _table("Matching deliveries (first 200)", ["delivery"], [[str(i)] for i in d["deliveries"]])
    return layout("Dead letters", body, s, error=error)


def _counts(caption: str, d: dict[str, Any]) -> str:
    return _table(caption, ["what", "count"], [[k, str(v)] for k, v in d.items()])


def rules(d: dict[str, Any], q: dict[str, str], s: Session, notice: str = "") -> str:
    rows = [[x["at"], x["actor"], x["channel"], x["target"] or "-", x["outcome"], x["reason"] or "-"]
            for x in d["history"]]
    body = (f'<p>Active rule set: <strong>{e(d["active"])}</strong></p>'
            + _table("Roll-outs", ["at", "who", "via", "rule set", "outcome", "note"], rows)
            + _counts("Corrections queued by roll-outs, by state", d["corrections"])
            + '<form method="get" action="/console/rules" class="card">'
            + _select("impact", "Impact of rolling out", tuple(d["available"]), q.get("impact"))
            + '<p><button type="submit">Show the impact</button></p></form>')
    if "impact" in d:
        body += _impact(d["impact"], q.get("impact", ""), s)
    c = d["claims_backlog"]
    body += ("<h2>Claims backlog (DUO to CJIB)</h2>"
             f'<p>{c["waiting"]} claim(s) waiting for CJIB, {c["dead"]} dead; the oldest waits {c["oldest_seconds"]} s; '
             f'{c["delivered_last_hour"]} delivered in the last hour'
             + (f'; at that pace drained in about {c["hours_to_drain"]} h' if c["hours_to_drain"] else "") + ".</p>")
    dl = d["delays"]
    people = [[x["meldingId"], x["received"], str(x["vertragingDagen"]), _person(x["person"])] for x in dl["people"]]
    body += ("<h2>Delay report</h2>" + f'<p>{dl["total"]} late notification(s), {dl["total_days"]} day(s) in all.</p>'
             + _counts("Late notifications by delay", dl["distribution"])
             + _table("Delay per person (masked)", ["meldingId", "received", "days late", "person"], people))
    return layout("Rule sets and reports", body, s, notice=notice)


def _impact(r: dict[str, Any], name: str, s: Session) -> str:
    people = [[x["meldingId"], x["old"]["plichtIndicatie"] + " -> " + x["new"]["plichtIndicatie"], x["regime"],
               _person(x["person"])] for x in r["people"][:200]]
    out = (f'<h2>Impact of {e(r["ruleset"])}</h2><p>{r["evaluated"]} evaluated, {r["changed"]} would change, '
           f'{r["unchanged"]} unchanged. Nothing has changed yet.</p>'
           + _counts("Changes by indication", r["by_indication"]) + _counts("Changes by rule", r["by_rule"])
           + _table("People whose indication would change (masked, first 200)",
                    ["meldingId", "indication", "regime", "person"], people))
    if may(s, "act"):
        out += ('<form method="post" action="/console/rules/apply" class="card">' + csrf_field(s)
                + f'<input type="hidden" name="ruleset" value="{e(name)}">'
                f'<input type="hidden" name="expected" value="{r["changed"]}">'
                '<p><label for="apply-reason">Reason for the roll-out</label><input id="apply-reason" name="reason" '
                f'required></p><p><button type="submit">Roll out and queue {r["changed"]} correction(s)</button></p>'
                "</form>")
    return out
