"""The review as one self-contained HTML page with plots (``mttune review --html PATH``).

Plotly's JavaScript bundle is embedded once, inline, so the page opens offline from any
browser and can be mailed or archived as it is.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np

from tuner._errors import MttuneError
from tuner.review._diagnostics import search_rows
from tuner.review._report import Review
from tuner.review._terminal import (
    adaptation_sentence,
    fmt_value,
    guard_verdict,
    poor_proposals_sentence,
    worse_by,
)

__all__ = ["render_html", "write_html"]

_PARCOORDS_TRIALS = 2000

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1150px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid
#ddd; padding-bottom: 0.2em; font-size: 1.25em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
.fragile { color: #b00; font-weight: bold; } .muted { color: #777; font-size: 0.9em; }
.why { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 0.8em; }
.rec { font-weight: bold; }
"""


def _e(value: Any) -> str:
    return html.escape(fmt_value(value) if not isinstance(value, str) else value)


def _table(header: list[str], rows: list[list[Any]], left: int = 1) -> str:
    head = "".join(
        f"<th class='l'>{_e(h)}</th>" if j < left else f"<th>{_e(h)}</th>"
        for j, h in enumerate(header)
    )
    body = ""
    for row in rows:
        cells = "".join(
            f"<td class='l'>{c}</td>" if j < left else f"<td>{c}</td>" for j, c in enumerate(row)
        )
        body += f"<tr>{cells}</tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


def _interval(iv: list[float] | None) -> str:
    return "-" if iv is None else f"[{_e(iv[0])}, {_e(iv[1])}]"


def _pct(p: float | None) -> str:
    return "-" if p is None else f"{100 * p:.0f}%"


class _Figures:
    """Turns plotly figures into HTML, embedding plotly.js with the first one only."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, fig: Any, height: int = 420) -> str:
        fig.update_layout(
            height=height, margin={"l": 60, "r": 20, "t": 50, "b": 50}, template="plotly_white"
        )
        out = fig.to_html(
            full_html=False,
            include_plotlyjs=self.count == 0,
            config={"displaylogo": False, "responsive": True},
            div_id=f"mttune-fig-{self.count}",
        )
        self.count += 1
        return f"<div class='figure'>{out}</div>"


def render_html(review: Review) -> str:
    """The review page as an HTML string."""
    import plotly.graph_objects as go

    r = review.report
    fig = _Figures()
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>mttune review: {html.escape(r['study'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>mttune review: {html.escape(r['study'])}</h1>",
        f"<p class='muted'>{html.escape(str(r['storage']))} &middot; {r['direction']} "
        f"{html.escape(r['objective'])} &middot; {r['trials']['search']} search trials, "
        f"{r['trials']['complete']} complete &middot; {r['trials']['verification']} "
        "verification runs</p>",
    ]
    parts += _choice(r)
    parts += _confidence(r, fig, go)
    parts += _robustness(r, fig, go)
    parts += _importance(r, fig, go)
    parts += _history(r, fig, go)
    parts += _parallel(review, fig, go)
    parts += _failures(r)
    parts += _prior(r, fig, go)
    if r["notes"]:
        parts.append("<h2>Notes</h2><ul>")
        parts += [f"<li>{html.escape(n)}</li>" for n in r["notes"]]
        parts.append("</ul>")
    parts.append(
        "<p class='muted'>Made by mttune review (read-only). Format "
        f"{html.escape(r['format'])}.</p></body></html>"
    )
    return "\n".join(parts)


def write_html(review: Review, path: str | Path) -> Path:
    """Write the page to ``path``.

    Raises:
        MttuneError: if the file cannot be written.
    """
    path = Path(path)
    try:
        path.write_text(render_html(review), encoding="utf-8")
    except OSError as e:
        raise MttuneError(
            f"cannot write the HTML report to {path}: {e.strerror}. Pass a path in a writable "
            "folder with --html."
        ) from None
    return path


def _choice(r: dict[str, Any]) -> list[str]:
    best, rec = r["best_observed"], r["recommended"]
    out = ["<h2>Recommended config</h2>"]
    if rec is None or best is None:
        return [*out, "<p>No completed trial: nothing to recommend yet.</p>"]
    est = best.get("estimate") or {}
    rows = [
        ["trial", f"#{best['number']}", f"#{rec['number']}"],
        ["best single run", _e(best["value"]), _e(rec["observed_best"])],
        ["runs", _e(est.get("runs", 1)), _e(rec["runs"])],
        ["estimated true value", _e(est.get("mean")), _e(rec["mean"])],
        [
            f"{round(100 * rec['level'])}% interval",
            _interval(est.get("interval")),
            _interval(rec["interval"]),
        ],
        ["method", _e(est.get("method", "-")), _e(rec["method"])],
        ["P(best of top-k)", _pct(est.get("p_best")), _pct(rec["p_best"])],
    ]
    for name in sorted(set(best["params"]) | set(rec["params"])):
        rows.append(
            [f"&nbsp;&nbsp;{_e(name)}", _e(best["params"].get(name)), _e(rec["params"].get(name))]
        )
    out.append(_table(["", "best observed", "recommended"], rows))
    if r["why"]:
        out.append(f"<p class='why'>Why they differ: {html.escape(r['why'])}</p>")
    else:
        out.append("<p>The best observed config is also the recommended one.</p>")
    return out + _promising(r)


def _promising(r: dict[str, Any]) -> list[str]:
    """The "promising, verify it" candidates and the command that measures them."""
    promising = r.get("promising") or []
    if not promising:
        return []
    rows = [
        [f"#{d['number']}", _e(d["mean"]), _interval(d["interval"]), _e(d["method"])]
        for d in promising
    ]
    return [
        "<h3 id='promising'>Promising, verify it</h3>",
        f"<p>{len(promising)} config(s) run once look better than the measured "
        f"recommendation (#{r['recommended']['number']}), on the strength of that one run. "
        "Measure them:</p>",
        f"<pre>{html.escape(r['verify_command'])}</pre>",
        _table(["trial", "estimate", "interval", "method"], rows),
    ]


def _confidence(r: dict[str, Any], fig: _Figures, go: Any) -> list[str]:
    conf = r["confidence"]
    if not conf["top_k"]:
        return []
    out = ["<h2>Confidence</h2>", f"<p>{html.escape(conf['method'] or '')}</p>"]
    if conf["noise_sd"] is not None:
        out.append(
            f"<p>Noise of one run: sd {_e(conf['noise_sd'])} "
            f"({html.escape(conf['noise_method'])}).</p>"
        )
    rows = [
        [
            _e(c["rank"]),
            f"#{c['number']}",
            _e(c["runs"]),
            _e(c["observed_best"]),
            _e(c["mean"]),
            _interval(c["interval"]),
            _e(c["method"]),
            _pct(c["p_best"]),
        ]
        for c in conf["top_k"]
    ]
    out.append(
        _table(
            ["rank", "trial", "runs", "best run", "estimate", "interval", "method", "P(best)"],
            rows,
        )
    )
    out.append(f"<p class='muted'>P(best): {html.escape(conf['p_best_method'])}.</p>")
    labels = [f"#{c['number']}" for c in conf["top_k"]]
    means = [c["mean"] for c in conf["top_k"]]
    lo = [c["mean"] - c["interval"][0] if c["interval"] else 0 for c in conf["top_k"]]
    hi = [c["interval"][1] - c["mean"] if c["interval"] else 0 for c in conf["top_k"]]
    f = go.Figure()
    f.add_trace(
        go.Scatter(
            x=labels,
            y=means,
            mode="markers",
            name="estimated true value",
            error_y={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo},
            marker={"size": 10},
        )
    )
    f.add_trace(
        go.Scatter(
            x=labels,
            y=[c["observed_best"] for c in conf["top_k"]],
            mode="markers",
            name="best single run",
            marker={"symbol": "x", "size": 9},
        )
    )
    f.update_layout(title="Top candidates: estimate and interval", yaxis_title=r["objective"])
    out.append(fig(f, 380))
    return out


def _robustness(r: dict[str, Any], fig: _Figures, go: Any) -> list[str]:
    rob = r["robustness"]
    if rob is None:
        return []
    out = [
        "<h2>Robustness</h2>",
        f"<p>Each numeric parameter of trial #{rob['number']}'s config moved by "
        f"&plusmn;{rob['perturb']:g} of its range (unit-cube encoding). Degradation: how much "
        "worse the objective gets (positive = worse). Fragile: significant and above "
        f"{_e(rob['threshold'])} ({html.escape(rob['threshold_rule'])}).</p>",
    ]
    if rob["params"]:
        out.append(_robustness_table(rob["params"]))
    for b in rob["better"]:
        out.append(
            f"<p class='why'>Moving {_e(b['param'])} to {_e(b['value'])} improves the objective "
            f"by {_e(b['gain'])}: the config is not at an optimum along {_e(b['param'])}.</p>"
        )
    for name, reason in rob["skipped"].items():
        out.append(f"<p class='muted'>{_e(name)}: not perturbed ({html.escape(reason)})</p>")
    if rob["seeds"]:
        s = rob["seeds"]
        out.append(
            f"<p>Spread across seeds ({s['n']} {html.escape(s['from'])}): sd {_e(s['sd'])}, "
            f"range [{_e(s['min'])}, {_e(s['max'])}].</p>"
        )
    curves = [p for p in rob["params"] if p["curve"]]
    if curves or any(s["runs"] for p in rob["params"] for s in p["sides"]):
        out.append(fig(_robustness_figure(r, go), 420))
    return out


def _robustness_table(params: list[dict[str, Any]]) -> str:
    """Per parameter: its value, each side's degradation, the worst, the verdict."""
    rows = []
    for p in params:
        sides = {s["sign"]: s for s in p["sides"]}
        cells = [
            "-"
            if sides.get(sg) is None
            else f"{html.escape(worse_by(sides[sg], fmt_value))} "
            f"<span class='muted'>({_e(sides[sg]['value'])})</span>"
            for sg in (-1, 1)
        ]
        rows.append(
            [
                _e(p["name"]),
                _e(p["value"]),
                *cells,
                f"{_e(p['degradation'])} &plusmn; {_e(p['se'])}",
                _e(p["method"]),
                "<span class='fragile'>FRAGILE</span>" if p["fragile"] else "ok",
            ]
        )
    return _table(
        ["parameter", "value", "worse at -move", "worse at +move", "worst", "from", ""], rows
    )


def _robustness_figure(r: dict[str, Any], go: Any) -> Any:
    """The surrogate along each parameter, and the verify runs of its neighbours."""
    f = go.Figure()
    for p in r["robustness"]["params"]:
        if p["curve"]:
            xs = [c["delta"] for c in p["curve"]]
            f.add_trace(
                go.Scatter(
                    x=xs,
                    y=[c["mean"] for c in p["curve"]],
                    error_y={"type": "data", "array": [1.96 * c["sd"] for c in p["curve"]]},
                    mode="lines+markers",
                    name=f"{p['name']} (surrogate)",
                )
            )
        runs = [s for s in p["sides"] if s["runs"]]
        if runs:
            base = r["confidence"]["top_k"][0]["mean"] if r["confidence"]["top_k"] else 0.0
            sign = 1.0 if r["direction"] == "minimize" else -1.0
            f.add_trace(
                go.Scatter(
                    x=[s["delta"] for s in runs],
                    y=[base + sign * s["degradation"] for s in runs],
                    mode="markers",
                    marker={"symbol": "diamond", "size": 11},
                    name=f"{p['name']} (verify runs)",
                )
            )
    f.update_layout(
        title="Robustness: objective along each parameter around the config",
        xaxis_title="move in the unit-cube encoding",
        yaxis_title=r["objective"],
    )
    return f


def _importance(r: dict[str, Any], fig: _Figures, go: Any) -> list[str]:
    imp = r["importance"]
    out = ["<h2>Importance</h2>"]
    if not imp["values"]:
        return [*out, f"<p>{html.escape(imp['note'] or 'not available')}</p>"]
    names = list(imp["values"])[::-1]
    f = go.Figure(go.Bar(x=[imp["values"][n] for n in names], y=names, orientation="h"))
    f.update_layout(
        title=f"Hyperparameter importance ({imp['method']}, {imp['trials']} trials)",
        xaxis_title="share of variance explained",
    )
    out.append(fig(f, max(260, 60 + 30 * len(names))))
    for name, reason in imp["not_rated"].items():
        out.append(f"<p class='muted'>{_e(name)}: not rated ({html.escape(reason)})</p>")
    return out


def _history(r: dict[str, Any], fig: _Figures, go: Any) -> list[str]:
    c = r["convergence"]
    if not c["points"]:
        return []
    pts = np.array(c["points"], dtype=float)
    last = c["last_improvement"]
    out = [
        "<h2>Convergence</h2>",
        f"<p>{c['trials']} completed search trials; the best improved {c['improvements']} "
        f"times, last at trial #{last['number']} ({_e(last['value'])}), "
        f"{c['trials_since_improvement']} trials ago.</p>",
    ]
    f = go.Figure()
    f.add_trace(go.Scattergl(x=pts[:, 0], y=pts[:, 1], mode="markers", name="trial", opacity=0.6))
    f.add_trace(go.Scatter(x=pts[:, 0], y=pts[:, 2], mode="lines", name="best so far"))
    f.update_layout(title="History", xaxis_title="trial", yaxis_title=r["objective"])
    out.append(fig(f, 400))
    return out


def _parallel(review: Review, fig: _Figures, go: Any) -> list[str]:
    data = review.analysis.data
    rows = search_rows(data)
    rows = rows[(data.states[rows] == "COMPLETE") & np.isfinite(data.values[rows])]
    if len(rows) < 2 or not data.distributions:
        return []
    if len(rows) > _PARCOORDS_TRIALS:
        y = data.sign * data.values[rows]
        order = rows[np.argsort(y, kind="stable")]
        rng = np.random.default_rng(0)
        half = _PARCOORDS_TRIALS // 2
        rows = np.concatenate([order[:half], rng.choice(order[half:], half, replace=False)])
    dims = []
    for name, dist in data.distributions.items():
        vals = [data.params[i].get(name) for i in rows]
        choices = getattr(dist, "choices", None)
        if choices is not None:
            index = {c: j for j, c in enumerate(choices)}
            col = [index.get(v, math.nan) if v is not None else math.nan for v in vals]
            dims.append(
                {
                    "label": name,
                    "values": col,
                    "tickvals": list(range(len(choices))),
                    "ticktext": [str(c) for c in choices],
                }
            )
            continue
        col = [float(v) if isinstance(v, int | float) else math.nan for v in vals]
        if getattr(dist, "log", False):
            col = [math.log10(v) if v > 0 else math.nan for v in col]
            dims.append({"label": f"log10({name})", "values": col})
        else:
            dims.append({"label": name, "values": col})
    values = data.values[rows].tolist()
    dims.append({"label": str(review.report["objective"]), "values": values})
    f = go.Figure(
        go.Parcoords(
            line={
                "color": values,
                "colorscale": "Viridis",
                "reversescale": data.direction == "minimize",
                "showscale": True,
            },
            dimensions=dims,
        )
    )
    f.update_layout(title=f"Parallel coordinates ({len(rows)} completed trials)")
    return ["<h2>Parallel coordinates</h2>", fig(f, 460)]


def _failures(r: dict[str, Any]) -> list[str]:
    f = r["failures"]
    out = ["<h2>Trials by state</h2>"]
    rows = [[_e(s), _e(n)] for s, n in f["by_state"].items()]
    rows += [[f"verification {_e(s)}", _e(n)] for s, n in f["verification"].items()]
    out.append(_table(["state", "trials"], rows))
    if f["top_reasons"]:
        out.append(f"<p>Top failure reasons ({f['distinct_reasons']} distinct):</p>")
        out.append(
            _table(
                ["count", "reason", "trials"],
                [
                    [
                        _e(x["count"]),
                        html.escape(x["reason"]),
                        ", ".join(f"#{n}" for n in x["trials"]),
                    ]
                    for x in f["top_reasons"]
                ],
                left=0,
            )
        )
    return out


def _prior(r: dict[str, Any], fig: _Figures, go: Any) -> list[str]:
    p = r["prior"]
    if p is None:
        return []
    out = ["<h2>Prior diagnostics</h2>"]
    rows = [
        [_e(s), _e(e["trials"]), _e(e["complete"]), _e(e["mean"]), _e(e["best"])]
        for s, e in p["sources"].items()
    ]
    if rows:
        out.append(_table(["source", "trials", "complete", "mean value", "best value"], rows))
    corr = p["correlation"]
    if corr["spearman"] is not None:
        out.append(
            f"<p>Prior predicted vs observed over {corr['n']} trials: Spearman "
            f"{corr['spearman']:.2f}, Kendall {corr['kendall']:.2f} (rank correlation of the "
            "prediction with the direction-adjusted value; 1 = perfect order, 0 = none).</p>"
        )
    for sentence in (adaptation_sentence(p), poor_proposals_sentence(p)):
        if sentence is not None:
            out.append(f"<p>{html.escape(sentence[0].upper() + sentence[1:], quote=False)}.</p>")
    verdict = guard_verdict(p)
    if verdict is not None:
        fired, detail = verdict
        out.append(
            f"<p class='fragile'>The negative-transfer guard fired {_e(detail)}.</p>"
            if fired
            else f"<p>The negative-transfer guard never fired; {_e(detail)}.</p>"
        )
    sp = p["study_prior"]
    if sp:
        sources = [str(s) for s in sp.get("sources") or []]
        out.append(
            f"<p>Prior {html.escape(str(sp.get('path') or '(no path)'))} learned from "
            f"{len(sources)} studies ({_e(sp.get('source_trials'))} trials): "
            f"{html.escape(', '.join(sources[:30]))}{' ...' if len(sources) > 30 else ''}</p>"
        )
    if p["points"]:
        f = go.Figure()
        for src in sorted({pt["source"] for pt in p["points"]}):
            pts = [pt for pt in p["points"] if pt["source"] == src]
            f.add_trace(
                go.Scatter(
                    x=[pt["pred_mean"] for pt in pts],
                    y=[pt["value"] for pt in pts],
                    mode="markers",
                    name=src,
                    text=[f"#{pt['number']}" for pt in pts],
                )
            )
        f.update_layout(
            title="Prior: predicted (rank units, lower = better) vs observed",
            xaxis_title="prior's prediction",
            yaxis_title=r["objective"],
        )
        out.append(fig(f, 420))
    return out
