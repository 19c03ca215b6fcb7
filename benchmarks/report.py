"""Pure helpers of benchmarks/run.py: number formatting, the Markdown report and the plots.

Nothing here runs a benchmark; everything takes the report dictionary that run.py writes as report.json
(see run.py for its shape), so it can be unit-tested and re-rendered:

    python benchmarks/report.py benchmarks/results/report.json   # rewrites report.md and the plots next to it
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

README_TARGETS = {
    "image": ">= 0.85 (published 0.774)",
    "sketch": "P@5 >= 0.80 (published 0.445); source in top 5 >= 0.80",
    "recommend": "HitRate@10 >= 3x popularity",
    "embed": ">= 100 img/s",
    "reindex": "<= 180 s",
    "hnsw": "p95 <= 20 ms at recall@10 >= 0.95",
    "hnsw_1m": "recall@10 >= 0.95 at p95 <= 4x the 100k p95; filtered (1 of 20) recall@10 >= 0.90 with 10 rows",
    "homepage": "p95 <= 50 ms",
    "freshness": "<= 2 s",
}
PLOTS = {
    "hnsw_latency_vs_size": "hnsw_latency_vs_size.png",
    "hnsw_recall_vs_ef": "hnsw_recall_vs_ef.png",
    "http_latency": "http_latency.png",
}


# --- numbers -----------------------------------------------------------------------------------


def num(value, digits=1) -> str:
    """A number with `digits` decimals and thousands separators; '-' for None."""
    if value is None:
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def fmt_spread(s: dict | None, digits=1, unit="", bold=False) -> str:
    """'**44.7 ms** (43.3-51.1, n=3)' for a spread dict {median, min, max, runs}; just the median if n=1."""
    if not s:
        return "-"
    median = f"{num(s['median'], digits)}{unit}"
    if bold:
        median = f"**{median}**"
    if s.get("runs", 1) <= 1:
        return f"{median} (n=1)"
    return f"{median} ({num(s['min'], digits)}-{num(s['max'], digits)}, n={s['runs']})"


def mib(nbytes) -> str:
    return "-" if nbytes is None else f"{nbytes / 2**20:,.0f} MiB"


def machine_line(m: dict) -> str:
    gpu = m.get("gpu") or "no GPU"
    return (
        f"{m.get('cpu_count')} x {m.get('cpu')} CPU cores, {gpu}; {m.get('platform')}; "
        f"Python {m.get('python')}, torch {m.get('torch')}"
    )


# --- access to report.json -------------------------------------------------------------------


def job(report: dict, name: str) -> dict | None:
    """The job entry named `name` in any stage, or None."""
    for stage in report.get("stages", {}).values():
        if name in stage.get("jobs", {}):
            return stage["jobs"][name]
    return None


def result(report: dict, name: str) -> dict | None:
    entry = job(report, name)
    return entry.get("result") if entry and entry.get("status") == "ok" else None


def vector_kind(res: dict) -> str:
    """ "synthetic" or "real" (results from before --vectors are synthetic)."""
    return (res.get("vectors") or {}).get("kind", "synthetic")


def scale_results(report: dict) -> list[dict]:
    """hnsw_scale results of every size that succeeded (a multi-size result counts once per size), by vector kind
    (synthetic first) and size."""
    stage = report.get("stages", {}).get("scale", {})
    out = []
    for j in stage.get("jobs", {}).values():
        if j.get("status") == "ok" and j.get("result"):
            out += j["result"].get("sizes") or [j["result"]]
    return sorted(out, key=lambda r: (vector_kind(r) != "synthetic", r["rows"]))


def config(res: dict, mode: str, ef) -> dict | None:
    """The configuration of ``mode`` at ``ef`` (a number, or "auto": the plugin's choice)."""
    if ef == "auto":
        return next(
            (c for c in res.get("configs", []) if c["mode"] == mode and c.get("ef_search_choice") == "auto"), None
        )
    return next(
        (
            c
            for c in res.get("configs", [])
            if c["mode"] == mode and c["ef_search"] == ef and c.get("ef_search_choice", "fixed") == "fixed"
        ),
        None,
    )


def p95_ratio(res: dict, scale: list[dict], reference_rows: int = 100_000) -> float | None:
    """p95 of the plugin's own choice (unfiltered) at this size over the same at ``reference_rows``, same vectors."""
    ref = next((r for r in scale if r["rows"] == reference_rows and vector_kind(r) == vector_kind(res)), None)
    mine, theirs = config(res, "unfiltered", "auto"), config(ref, "unfiltered", "auto") if ref else None
    if not mine or not theirs:
        return None
    return mine["query_p95_ms"]["median"] / theirs["query_p95_ms"]["median"]


def nested_p_at_5(obj, path=()):
    """(path, p_at_5) of nested result dicts, e.g. per-mode sketch results: [(('modes', 'gan'), 0.5)]."""
    found = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, dict):
                if "p_at_5" in value:
                    found.append(((*path, str(key)), value["p_at_5"]))
                found += nested_p_at_5(value, (*path, str(key)))
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, dict) and "p_at_5" in item:
                        label = item.get("mode") or item.get("pipeline") or str(i)
                        found.append(((*path, str(key), str(label)), item["p_at_5"]))
    return found


# --- the Markdown report -----------------------------------------------------------------------


def _row(what, target, measured, command):
    return f"| {what} | {target} | {measured} | {command} |"


def _failed(report, name):
    entry = job(report, name)
    if entry is None or entry.get("status") == "ok":
        return None
    error = (entry.get("error") or "").strip().splitlines()
    return f"**{entry.get('status', 'failed')}**: {error[-1][:160] if error else 'see report.json'}"


def quality_rows(report) -> list[str]:
    rows = []
    image = result(report, "evaluate_image")
    if image:
        rows.append(
            _row(
                f"image -> image P@5, CC0 test split ({num(image.get('queries'))} queries, gallery "
                f"{num(image.get('gallery'))})",
                README_TARGETS["image"],
                f"**{num(image.get('p_at_5'), 3)}** (mAP@10 {num(image.get('map_at_10'), 3)})",
                "`manage.py fashion_evaluate --task image --json`",
            )
        )
    sketch = result(report, "evaluate_sketch")
    if sketch:
        what = f"sketch -> product P@5, {sketch.get('source', 'drawings')}"
        for key in ("mode", "pipeline"):
            if key in sketch:
                what += f", {key} {sketch[key]}"
        if sketch.get("query_expansion") is not None:
            what += f", query expansion {sketch['query_expansion'] or 'off'}"
        if sketch.get("category_boost") is not None:
            what += f", category boost {sketch['category_boost'] or 'off'}"
        if "p_at_5" in sketch:
            measured = f"**{num(sketch['p_at_5'], 3)}**"
        else:
            measured = "see report.json"
        hits = [sketch.get(f"source_hit_at_{n}") for n in (1, 5, 10)]
        if all(h is not None for h in hits):
            measured += f"; source product in top 1/5/10: {' / '.join(num(h, 3) for h in hits)}"
        plain = sketch.get("plain_similarity")
        if plain:
            measured += f"; plain similarity {num(plain['p_at_5'], 3)}, top 5 {num(plain.get('source_hit_at_5'), 3)}"
        extra = [(p, v) for p, v in nested_p_at_5(sketch) if p[0] != "plain_similarity"]
        if extra:
            measured += "; " + ", ".join(f"{'/'.join(p[1:] or p)} {num(v, 3)}" for p, v in extra)
        rows.append(
            _row(
                what,
                README_TARGETS["sketch"],
                measured,
                "`manage.py fashion_evaluate --task sketch --pipeline all --json`",
            )
        )
    gen = result(report, "generalisation")
    if gen:
        base = gen["models"].get("imagenet-gap-160", {})
        for name, entry in gen["models"].items():
            if name.startswith("imagenet-gap"):
                continue
            cells = []
            for key, label in (
                ("in_domain", "CC0"),
                ("cross_domain", "studio"),
                ("unseen_classes", "5 unseen classes"),
            ):
                if key in entry:
                    cells.append(
                        f"{label} **{num(entry[key]['p_at_5'], 3)}** "
                        f"(ImageNet {num(base.get(key, {}).get('p_at_5'), 3)})"
                    )
            rows.append(
                _row(
                    f"generalisation, {gen.get('split')} splits, {name} (trained on which data: its model card)",
                    "never below ImageNet",
                    "; ".join(cells),
                    f"`python benchmarks/generalisation.py --split {gen.get('split')} --photo {name}`",
                )
            )
    rec = result(report, "evaluate_recommend")
    if rec:
        pop = rec["baselines"]["popularity"]
        rnd = rec["baselines"]["random"]
        lift = rec.get("lift_over_popularity")
        rows.append(
            _row(
                f"recommendations, {num(rec.get('shoppers'))} simulated shoppers",
                README_TARGETS["recommend"],
                f"**{num(rec['hit_rate_at_10'], 3)}** vs popularity {num(pop['hit_rate_at_10'], 3)}, random "
                f"{num(rnd['hit_rate_at_10'], 3)} ({num(lift, 0)}x); NDCG@10 {num(rec['ndcg_at_10'], 4)} vs "
                f"{num(pop['ndcg_at_10'], 4)}",
                f"`manage.py fashion_evaluate --task recommend --shoppers {rec.get('shoppers')} --json`",
            )
        )
    return rows


def speed_rows(report) -> list[str]:
    rows = []
    for name in ("embed_throughput", "embed_throughput_cuda"):
        emb = result(report, name)
        if emb:
            rows.append(
                _row(
                    f"embedding throughput, decode + preprocess + model ({emb.get('runtime')}, "
                    f"{emb.get('image_size')} px, "
                    f"{num(emb.get('images'))} images)",
                    README_TARGETS["embed"],
                    f"{fmt_spread(emb['end_to_end_images_per_s'], 0, ' img/s', bold=True)} end to end; model alone "
                    f"{fmt_spread(emb['model_only_images_per_s'], 0, ' img/s')}",
                    f"`{emb.get('command')}`",
                )
            )
    http = result(report, "http_latency")
    if http:
        for endpoint, data in http.get("endpoints", {}).items():
            levels = data.get("levels", {})
            clients = " / ".join(levels)
            p95 = " / ".join(num(v["p95_ms"]["median"]) for v in levels.values())
            p50 = " / ".join(num(v["p50_ms"]["median"]) for v in levels.values())
            rps = " / ".join(num(v["requests_per_s"]["median"]) for v in levels.values())
            errors = sum(v.get("errors", 0) for v in levels.values())
            runs = max((v["p95_ms"]["runs"] for v in levels.values()), default=0)
            rows.append(
                _row(
                    f"{HTTP_LABELS.get(endpoint, endpoint)} over HTTP, {clients} concurrent clients "
                    f"({http.get('server', 'server')})",
                    "-",
                    f"p95 **{p95} ms** (p50 {p50} ms; {rps} req/s; median of {runs} rounds, {errors} errors)",
                    f"`{http.get('command')}`",
                )
            )
    home = result(report, "homepage")
    if home:
        rows.append(
            _row(
                "homepage server time, logged-in shopper with a cached profile",
                README_TARGETS["homepage"],
                f"{fmt_spread(home['server_time_p95_ms_cached_profile'], 1, ' ms', bold=True)}; uncached "
                "(cache cleared before every request) "
                f"{fmt_spread(home['server_time_p95_ms_uncached'], 0, ' ms')}",
                f"`{home.get('command')}`",
            )
        )
        rows.append(
            _row(
                "product view -> personalised homepage, running worker",
                README_TARGETS["freshness"],
                fmt_spread(home["freshness_after_view_s"], 2, " s", bold=True),
                "same",
            )
        )
    re = result(report, "reindex_worker")
    if re:
        spread_s = re.get("seconds_spread") or {
            "median": re["seconds"],
            "min": re["seconds"],
            "max": re["seconds"],
            "runs": 1,
        }
        scope = (
            "the full catalog"
            if re.get("queued") == re.get("products")
            else f"{num(re.get('queued'))} of {num(re.get('products'))} products (--limit)"
        )
        status = "" if re.get("completed", True) else " **did not complete**"
        rows.append(
            _row(
                f"reindex {scope} through a real Celery worker",
                README_TARGETS["reindex"],
                f"{fmt_spread(spread_s, 1, ' s', bold=True)} for {num(re.get('queued'))} products "
                f"({num(re.get('products_per_s'))} products/s, {re.get('worker')}), "
                f"{num(re.get('failed'))} failures{status}",
                f"`{re.get('command')}`",
            )
        )
    return rows


HTTP_LABELS = {
    "sketch": "sketch search (POST /fashion-ai/api/search/sketch/)",
    "photo": "photo search (POST /fashion-ai/api/search/photo/)",
    "similar": "similar-products API (GET /fashion-ai/api/products/&lt;id&gt;/similar/)",
    "homepage": "homepage, anonymous shopper (GET /fashion-ai/)",
}


def scale_rows(report) -> list[str]:
    scale = scale_results(report)
    rows = []
    for res in scale:
        plain = (
            config(res, "unfiltered", "auto")
            or config(res, "unfiltered", 100)
            or next(iter(res.get("configs", [])), None)
        )
        if plain is None:
            continue
        auto = plain.get("ef_search_choice") == "auto"
        ef = plain["ef_search"]
        measured = (
            f"**p95 {num(plain['query_p95_ms']['median'])} ms** (p50 {num(plain['query_p50_ms']['median'])} "
            f"ms), recall@10 **{num(plain['recall_at_10']['median'], 3)}**"
        )
        ratio = p95_ratio(res, scale)
        if ratio is not None and res["rows"] > 100_000:
            measured += f", {num(ratio, 1)}x the p95 at 100,000"
        filt = config(res, "filter_relaxed", "auto" if auto else ef)
        if filt:
            measured += (
                f"; category filter (1 of {res.get('categories')}, iterative_scan relaxed_order, ef_search "
                f"{filt['ef_search']}) p95 {num(filt['query_p95_ms']['median'])} ms, recall@10 "
                f"**{num(filt['recall_at_10']['median'], 3)}**, at least {filt.get('min_rows_returned', '-')} "
                "rows per query"
            )
        off = config(res, "filter_off", "auto" if auto else ef)
        if off:
            measured += (
                f"; same filter, iterative_scan off: recall@10 {num(off['recall_at_10']['median'], 3)} "
                f"({num(off['mean_rows_returned']['median'])} rows per query)"
            )
        measured += f"; index build {num(res.get('index_build_s'), 0)} s, index {mib(res.get('index_bytes'))}"
        if res.get("build_backend_peak_mib"):
            measured += (
                f", build memory {num(res['build_backend_peak_mib'], 0)} MiB peak (maintenance_work_mem "
                f"{res.get('maintenance_work_mem')})"
            )
        if res.get("load_average_1min") is not None:
            measured += f"; load average {num(res['load_average_1min'])}"
        kind = vector_kind(res)
        vectors = (
            "synthetic clustered"
            if kind == "synthetic"
            else "real embeddings of both data sets, grown (benchmarks/real_vectors.py)"
        )
        target = README_TARGETS["hnsw"]
        if res["rows"] >= 1_000_000:
            target = README_TARGETS["hnsw_1m"]
        command = (
            f"`python benchmarks/hnsw_scale.py --rows {res['rows']}"
            + ("" if kind == "synthetic" else " --vectors real")
            + "`"
        )
        rows.append(
            _row(
                f"similar-products query, {num(res['rows'])} vectors ({res.get('dim')}-d, {vectors}), HNSW "
                f"m={res.get('m', 16)}/ef_construction={res.get('ef_construction', 64)}, ef_search={ef}"
                + (" (the plugin's choice for this size)" if auto else ""),
                target,
                measured,
                command,
            )
        )
    return rows


def render_markdown(report: dict) -> str:
    """The whole report.md: a Results table in README's format, detail tables, stage runtimes, failures."""
    lines = []
    m = report.get("machine", {})
    lines.append(
        f"Measured on {machine_line(m)} ({report.get('date', '')[:10]}) with `{report.get('command')}` "
        f"({report.get('profile')} profile, {num(report.get('wall_s', 0) / 60, 1)} min). Each figure is "
        "the median of repeated runs with (min-max, n); the quality metrics are deterministic (one run). "
        "The JSON files are in the same folder as this report."
    )
    load = report.get("load_average")
    if load:
        lines[-1] += (
            f" Load average (1 min) {load['start']} at the start, {load['end']} at the end "
            "(other work on the machine slows every figure)."
        )
    lines.append("")
    lines.append("| what | target | measured | command |")
    lines.append("|---|---|---|---|")
    table = quality_rows(report) + speed_rows(report) + scale_rows(report)
    for stage_name, stage in report.get("stages", {}).items():
        for name, entry in stage.get("jobs", {}).items():
            failed = _failed(report, name)
            if failed:
                table.append(_row(f"{stage_name}: {name}", "-", failed, f"`{entry.get('command', '')}`"))
    lines += table
    lines.append("")

    scale = scale_results(report)
    if scale:
        lines.append("### HNSW scale (pgvector)")
        lines.append("")
        lines.append(
            "| vectors | rows | index | load s | index build s | index size | table size | build memory "
            "(peak / maintenance_work_mem) | parallel maintenance workers | load average |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for res in scale:
            lines.append(
                f"| {vector_kind(res)} | {num(res['rows'])} | m={res.get('m', 16)}, ef_construction="
                f"{res.get('ef_construction', 64)}{', halfvec' if res.get('index_type') == 'halfvec' else ''}"
                f" | {num(res.get('load_s'))} | {num(res.get('index_build_s'))} | "
                f"{mib(res.get('index_bytes'))} | {mib(res.get('table_bytes'))} | "
                f"{num(res.get('build_backend_peak_mib'), 0)} MiB / {res.get('maintenance_work_mem', '-')} | "
                f"{res.get('max_parallel_maintenance_workers', '-')} | {num(res.get('load_average_1min'))} |"
            )
        lines.append("")
        lines.append(
            "| vectors | rows | query | ef_search | p50 ms | p95 ms | recall@10 | rows returned (mean / min) |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        for res in scale:
            for c in res.get("configs", []):
                ef = f"{c['ef_search']} (auto)" if c.get("ef_search_choice") == "auto" else c["ef_search"]
                lines.append(
                    f"| {vector_kind(res)} | {num(res['rows'])} | {MODE_LABELS.get(c['mode'], c['mode'])} | "
                    f"{ef} | {num(c['query_p50_ms']['median'], 2)} | {fmt_spread(c['query_p95_ms'], 2)} | "
                    f"{fmt_spread(c['recall_at_10'], 3)} | {num(c['mean_rows_returned']['median'])} / "
                    f"{c.get('min_rows_returned', '-')} |"
                )
        lines.append("")
    http = result(report, "http_latency")
    if http:
        lines.append(f"### HTTP latency ({http.get('server')})")
        lines.append("")
        lines.append("| endpoint | clients | p50 ms | p95 ms | req/s | ok | errors |")
        lines.append("|---|---|---|---|---|---|---|")
        for endpoint, data in http.get("endpoints", {}).items():
            for c, v in data.get("levels", {}).items():
                lines.append(
                    f"| {endpoint} | {c} | {fmt_spread(v['p50_ms'])} | {fmt_spread(v['p95_ms'])} | "
                    f"{fmt_spread(v['requests_per_s'])} | {v.get('ok')} | {v.get('errors')} |"
                )
        lines.append("")
        lines.append(http.get("note", ""))
        lines.append("")
    lines.append("### Stages")
    lines.append("")
    lines.append("| stage | job | status | seconds |")
    lines.append("|---|---|---|---|")
    for stage_name, stage in report.get("stages", {}).items():
        if stage.get("status") == "skipped":
            lines.append(f"| {stage_name} | - | skipped | - |")
            continue
        for name, entry in stage.get("jobs", {}).items():
            lines.append(f"| {stage_name} | {name} | {entry.get('status')} | {num(entry.get('seconds'))} |")
    lines.append("")
    for note in report.get("notes", []):
        lines.append(f"* {note}")
    if report.get("notes"):
        lines.append("")
    plots = [p for p in report.get("plots", []) if p]
    if plots:
        lines.append("### Plots")
        lines.append("")
        lines += [f"![{Path(p).stem}]({p})" for p in plots]
        lines.append("")
    lines.append(f"Overall: {'all stages passed' if report.get('ok') else '**at least one stage failed**'}.")
    return "\n".join(lines) + "\n"


MODE_LABELS = {
    "unfiltered": "no filter",
    "filter_off": "category filter, iterative_scan off",
    "filter_relaxed": "category filter, relaxed_order",
}


# --- plots ---------------------------------------------------------------------------------------


def plot_series(report: dict) -> dict:
    """The data of each plot as {plot: {line label: [(x, y), ...]}} (pure; used by write_plots and tests)."""
    scale = scale_results(report)
    latency, recall = {}, {}
    for res in scale:
        prefix = "" if vector_kind(res) == "synthetic" else f"{vector_kind(res)}, "
        for c in res.get("configs", []):
            auto = c.get("ef_search_choice") == "auto"
            label = f"{prefix}{MODE_LABELS.get(c['mode'], c['mode'])}, ef_search {'auto' if auto else c['ef_search']}"
            latency.setdefault(label, []).append((res["rows"], c["query_p95_ms"]["median"]))
            if not auto:
                label = f"{prefix}{num(res['rows'])} rows, {MODE_LABELS.get(c['mode'], c['mode'])}"
                recall.setdefault(label, []).append((c["ef_search"], c["recall_at_10"]["median"]))
    http_series = {}
    http = result(report, "http_latency")
    for endpoint, data in (http or {}).get("endpoints", {}).items():
        http_series[endpoint] = [(int(c), v["p95_ms"]["median"]) for c, v in data.get("levels", {}).items()]
    out = {"hnsw_latency_vs_size": latency, "hnsw_recall_vs_ef": recall, "http_latency": http_series}
    return {k: {label: sorted(points) for label, points in v.items()} for k, v in out.items() if v}


def write_plots(report: dict, out_dir: Path) -> list[str]:
    """PNG line charts with matplotlib (requirements-dev.txt); returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {
        "hnsw_latency_vs_size": (
            "pgvector HNSW: p95 query latency vs catalog size",
            "vectors",
            "p95 latency (ms)",
            True,
        ),
        "hnsw_recall_vs_ef": ("pgvector HNSW: recall@10 vs ef_search", "hnsw.ef_search", "recall@10", False),
        "http_latency": ("HTTP p95 latency vs concurrent clients", "concurrent clients", "p95 latency (ms)", True),
    }
    written = []
    for name, series in plot_series(report).items():
        title, xlabel, ylabel, logx = titles[name]
        fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
        for label, points in series.items():
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", label=label)
        if logx:
            ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        fig.text(0.01, 0.01, machine_line(report.get("machine", {}))[:110], fontsize=6, color="grey")
        fig.tight_layout()
        fig.savefig(out_dir / PLOTS[name])
        plt.close(fig)
        written.append(PLOTS[name])
    return written


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0] if argv else Path(__file__).resolve().parent / "results" / "report.json")
    report = json.loads(path.read_text())
    try:
        report["plots"] = write_plots(report, path.parent)
    except ImportError:
        pass
    (path.parent / "report.md").write_text(render_markdown(report))
    print(path.parent / "report.md")


if __name__ == "__main__":
    main()
