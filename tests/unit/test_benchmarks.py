"""Pure helpers of benchmarks/run.py: percentiles and spread, JSON extraction, stage selection, report rendering.

No benchmark runs here (the full run needs a loaded catalog and minutes of CPU); these tests only make sure a
bug in the arithmetic or the rendering fails CI.
"""

import copy
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import _common
import report
import run


def test_percentile_nearest_rank():
    values = list(range(1, 101))  # 1..100
    assert _common.percentile(values, 50) in (50, 51)
    assert _common.percentile(values, 95) == 95
    assert _common.percentile(values, 0) == 1
    assert _common.percentile(values, 100) == 100
    assert _common.percentile([7.0], 95) == 7.0
    assert _common.percentile([3, 1, 2], 50) == 2  # unsorted input
    with pytest.raises(ValueError):
        _common.percentile([], 95)


def test_spread():
    assert _common.spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "runs": 3}
    assert _common.spread([1.0, 4.0])["median"] == 2.5
    assert _common.spread([5])["runs"] == 1
    with pytest.raises(ValueError):
        _common.spread([])


def test_fmt_spread_and_numbers():
    s = {"median": 44.6725, "min": 43.27, "max": 51.14, "runs": 3}
    assert report.fmt_spread(s, 1, " ms", bold=True) == "**44.7 ms** (43.3-51.1, n=3)"
    assert report.fmt_spread({"median": 2.0, "min": 2.0, "max": 2.0, "runs": 1}, 0) == "2 (n=1)"
    assert report.fmt_spread(None) == "-"
    assert report.num(5096) == "5,096"
    assert report.num(0.83483, 3) == "0.835"
    assert report.num(None) == "-"
    assert report.mib(137 * 2**20) == "137 MiB"


def test_stdout_json_skips_logging():
    text = 'INFO loading model\n{"task": "image", "p_at_5": 0.8}\n'
    assert run.stdout_json(text) == {"task": "image", "p_at_5": 0.8}
    assert run.stdout_json('{\n  "a": 1\n}\n') == {"a": 1}  # pretty-printed
    assert run.stdout_json('{"a": 1}\nnot json {\n') == {"a": 1}
    two = run.stdout_json('{"mode": "gan", "p_at_5": 0.5}\n{"mode": "direct", "p_at_5": 0.4}\n')
    assert two == {"outputs": [{"mode": "gan", "p_at_5": 0.5}, {"mode": "direct", "p_at_5": 0.4}]}
    assert report.nested_p_at_5(two) == [(("outputs", "gan"), 0.5), (("outputs", "direct"), 0.4)]
    with pytest.raises(ValueError):
        run.stdout_json("no json here")


def test_stage_selection_and_plan():
    args = run.parse_args(["--quick", "--only", "quality,scale", "--skip", "scale"])
    assert args.stages == ["quality"]
    assert [j.name for j in run.plan(args)] == [
        "evaluate_image",
        "evaluate_sketch",
        "evaluate_recommend",
        "generalisation",
    ]
    args = run.parse_args(["--only", "scale", "--sizes", "1000,2000"])
    jobs = run.plan(args)
    assert [j.name for j in jobs] == [
        "hnsw_scale_1000",
        "hnsw_scale_2000",
        "hnsw_scale_1000_real",
        "hnsw_scale_2000_real",
    ]
    assert "--ef-search" in jobs[0].argv and "auto,40,100,200,400" in jobs[0].argv
    assert jobs[2].argv[jobs[2].argv.index("--vectors") + 1] == "real"
    jobs = run.plan(run.parse_args(["--only", "scale", "--sizes", "1000", "--vectors", "synthetic"]))
    assert [j.name for j in jobs] == ["hnsw_scale_1000"]
    speed = [j.name for j in run.plan(run.parse_args(["--only", "speed", "--gpu"]))]
    assert speed[-1] == "reindex_worker"  # it clears the vectors while it runs: last
    assert "embed_throughput_cuda" in speed
    with pytest.raises(SystemExit):
        run.parse_args(["--only", "nonsense"])


def test_summarise_marks_failed_and_skipped_stages():
    stages = {
        "quality": {
            "status": "pending",
            "jobs": {"a": {"status": "ok", "seconds": 1.0}, "b": {"status": "failed", "seconds": 2.0}},
        },
        "speed": {"status": "pending", "jobs": {"c": {"status": "ok", "seconds": 3.0}}},
        "scale": {"status": "skipped", "jobs": {}},
    }
    run.summarise(stages)
    assert stages["quality"]["status"] == "failed" and stages["quality"]["seconds"] == 3.0
    assert stages["speed"]["status"] == "ok"
    assert stages["scale"]["status"] == "skipped"


def spread_of(x, runs=3):
    return {"median": float(x), "min": x * 0.9, "max": x * 1.1, "runs": runs}


def hnsw_result(rows):
    configs = []
    for mode in ("unfiltered", "filter_off", "filter_relaxed"):
        for ef in (40, 100):
            configs.append(
                {
                    "mode": mode,
                    "ef_search": ef,
                    "query_p50_ms": spread_of(1.0 + rows / 1e6),
                    "query_p95_ms": spread_of(2.0 + rows / 1e6),
                    "recall_at_10": spread_of(0.9),
                    "mean_rows_returned": spread_of(10.0),
                    "uses_index": True,
                }
            )
    return {
        "rows": rows,
        "dim": 256,
        "categories": 20,
        "index_build_s": 3.5,
        "load_s": 0.1,
        "index_bytes": 13 * 2**20,
        "table_bytes": 12 * 2**20,
        "max_parallel_maintenance_workers": "2",
        "configs": configs,
    }


SAMPLE = {
    "date": "2026-11-27T03:00:00+00:00",
    "command": "python benchmarks/run.py --quick",
    "profile": "quick",
    "wall_s": 240.0,
    "ok": False,
    "notes": ["a note"],
    "plots": ["hnsw_recall_vs_ef.png"],
    "machine": {
        "platform": "Linux",
        "cpu": "x86_64",
        "cpu_count": 2,
        "gpu": None,
        "python": "3.11.7",
        "torch": "2.14.1",
    },
    "stages": {
        "quality": {
            "status": "failed",
            "seconds": 10,
            "jobs": {
                "evaluate_image": {
                    "status": "ok",
                    "seconds": 5,
                    "command": "c",
                    "result": {"task": "image", "p_at_5": 0.8348, "map_at_10": 0.8561, "queries": 999, "gallery": 5096},
                },
                "evaluate_sketch": {
                    "status": "ok",
                    "seconds": 5,
                    "command": "c",
                    "result": {
                        "task": "sketch",
                        "p_at_5": 0.4714,
                        "queries": 999,
                        "gallery": 5096,
                        "source_hit_at_1": 0.006,
                        "source_hit_at_5": 0.023,
                        "source_hit_at_10": 0.048,
                        "pipeline": "direct",
                        "source": "synthetic XDoG drawings of the test split",
                        "modes": {"gan": {"p_at_5": 0.61}, "fusion": {"p_at_5": 0.7}},
                        "query_expansion": 0,
                        "category_boost": 0.05,
                        "plain_similarity": {"p_at_5": 0.45, "source_hit_at_5": 0.03},
                    },
                },
                "evaluate_recommend": {
                    "status": "failed",
                    "seconds": 1,
                    "command": "python manage.py x",
                    "error": "exit status 1\nCommandError: Index at least 50 products first",
                },
            },
        },
        "speed": {
            "status": "ok",
            "seconds": 100,
            "jobs": {
                "embed_throughput": {
                    "status": "ok",
                    "seconds": 10,
                    "command": "c",
                    "result": {
                        "runtime": "onnxruntime",
                        "image_size": 160,
                        "images": 512,
                        "command": "python e.py",
                        "end_to_end_images_per_s": spread_of(134.3),
                        "model_only_images_per_s": spread_of(137.1),
                    },
                },
                "http_latency": {
                    "status": "ok",
                    "seconds": 60,
                    "command": "c",
                    "result": {
                        "server": "gunicorn",
                        "command": "python h.py",
                        "note": "closed loop",
                        "endpoints": {
                            "sketch": {
                                "levels": {
                                    "1": {
                                        "p50_ms": spread_of(50),
                                        "p95_ms": spread_of(60),
                                        "requests_per_s": spread_of(20),
                                        "ok": 30,
                                        "errors": 0,
                                    },
                                    "16": {
                                        "p50_ms": spread_of(500),
                                        "p95_ms": spread_of(700),
                                        "requests_per_s": spread_of(30),
                                        "ok": 30,
                                        "errors": 1,
                                    },
                                }
                            }
                        },
                    },
                },
                "reindex_worker": {
                    "status": "ok",
                    "seconds": 70,
                    "command": "c",
                    "result": {
                        "products": 5096,
                        "queued": 500,
                        "failed": 0,
                        "seconds": 9.0,
                        "seconds_spread": spread_of(9.0, 1),
                        "products_per_s": 55.0,
                        "worker": "celery prefork",
                        "command": "python r.py --limit 500",
                        "completed": True,
                    },
                },
            },
        },
        "scale": {
            "status": "ok",
            "seconds": 20,
            "jobs": {
                "hnsw_scale_100000": {"status": "ok", "seconds": 15, "result": hnsw_result(100000)},
                "hnsw_scale_10000": {"status": "ok", "seconds": 5, "result": hnsw_result(10000)},
            },
        },
    },
}


def test_render_markdown_table():
    md = report.render_markdown(copy.deepcopy(SAMPLE))
    lines = md.splitlines()
    header = lines.index("| what | target | measured | command |")
    assert lines[header + 1] == "|---|---|---|---|"
    table = []
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        table.append(line)
    # Every table row has exactly the four README columns (no stray pipes inside a cell).
    assert all(line.count(" | ") == 3 and line.endswith(" |") for line in table), table
    text = "\n".join(table)
    assert "**0.835** (mAP@10 0.856)" in text
    assert "**0.471**; source product in top 1/5/10: 0.006 / 0.023 / 0.048" in text
    assert "gan 0.610" in text and "fusion 0.700" in text  # per-mode sketch results passed through
    assert "query expansion off, category boost 0.05" in text and "plain similarity 0.450, top 5 0.030" in text
    assert "**134 img/s** (121-148, n=3)" in text
    assert "p95 **60.0 / 700.0 ms**" in text and "1 errors" in text
    assert "500 of 5,096 products (--limit)" in text
    assert "**failed**: CommandError: Index at least 50 products first" in text
    # Scale rows sorted by size, with the filtered figures.
    assert text.index("10,000 vectors") < text.index("100,000 vectors")
    assert "iterative_scan relaxed_order" in text
    assert "2 x x86_64 CPU cores, no GPU" in md
    assert "at least one stage failed" in md
    assert "![hnsw_recall_vs_ef](hnsw_recall_vs_ef.png)" in md


def test_plot_series():
    series = report.plot_series(copy.deepcopy(SAMPLE))
    latency = series["hnsw_latency_vs_size"]["no filter, ef_search 100"]
    assert [x for x, _ in latency] == [10000, 100000]
    recall = series["hnsw_recall_vs_ef"]["10,000 rows, no filter"]
    assert [x for x, _ in recall] == [40, 100]
    assert series["http_latency"]["sketch"] == [(1, 60), (16, 700)]


def test_write_plots(tmp_path):
    pytest.importorskip("matplotlib")
    written = report.write_plots(copy.deepcopy(SAMPLE), tmp_path)
    assert sorted(written) == sorted(report.PLOTS.values())
    for name in written:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scale_rows_use_the_plugins_choice_and_compare_with_100k():
    def sized(rows, kind, p95):
        res = hnsw_result(rows)
        res.update(
            {
                "vectors": {"kind": kind},
                "m": 24,
                "ef_construction": 100,
                "build_backend_peak_mib": 2000.0,
                "maintenance_work_mem": "2400MB",
                "load_average_1min": 3.0,
            }
        )
        for mode, ef in (("unfiltered", 400), ("filter_relaxed", 800)):
            res["configs"].append(
                {
                    "mode": mode,
                    "ef_search": ef,
                    "ef_search_choice": "auto",
                    "query_p50_ms": spread_of(p95 / 2),
                    "query_p95_ms": spread_of(p95),
                    "recall_at_10": spread_of(0.97),
                    "mean_rows_returned": spread_of(10.0),
                    "min_rows_returned": 10,
                    "uses_index": True,
                }
            )
        return res

    sample = copy.deepcopy(SAMPLE)
    sample["stages"]["scale"]["jobs"] = {
        "hnsw_scale_1000000_real": {"status": "ok", "result": sized(1_000_000, "real", 12.0)},
        "hnsw_scale_100000_real": {"status": "ok", "result": sized(100_000, "real", 4.0)},
        "hnsw_scale_100000": {"status": "ok", "result": sized(100_000, "synthetic", 3.0)},
    }
    rows = report.scale_rows(sample)
    assert len(rows) == 3 and "synthetic clustered" in rows[0] and "real embeddings" in rows[2]
    big = rows[2]
    assert "1,000,000 vectors" in big and "m=24/ef_construction=100, ef_search=400 (the plugin's choice" in big
    assert "3.0x the p95 at 100,000" in big and "ef_search 800) p95 12.0 ms" in big and "at least 10 rows" in big
    assert report.README_TARGETS["hnsw_1m"] in big and "--vectors real" in big
    md = report.render_markdown(sample)
    assert "| real | 1,000,000 | no filter | 400 (auto) |" in md


def test_photo_crop_choice_rule_and_box_iou():
    """benchmarks/photo_crop.py: within TIE of the best mean P@5 the smaller trunk input wins, then the box that
    overlaps the garment more; IoU of boxes in pixels."""
    import photo_crop as P

    from oscar_fashion_ai.ml.crop import Box

    assert P.iou(Box(0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert abs(P.iou(Box(0, 0, 10, 10), (5, 0, 10, 10)) - 50 / 150) < 1e-9
    assert P.iou(Box(0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    small, small_wide, big = (
        P.cam("cam-pool", 224, 0.5, 0.2),
        P.cam("cam-pool", 224, 0.5, 0.2, 0.5),
        P.cam("cam-pool", 288, 0.5, 0.2),
    )

    def results(scores):
        return {kind: {name: {"p_at_5": p, "box_iou": i} for name, (p, i) in scores.items()} for kind in P.TARGET_KINDS}

    close = results({small.name: (0.971, 0.1), small_wide.name: (0.970, 0.4), big.name: (0.974, 0.1)})
    assert P.choose(close, [small, small_wide, big])[0] == small_wide  # within TIE: smaller input, larger IoU
    apart = results({small.name: (0.960, 0.1), small_wide.name: (0.955, 0.4), big.name: (0.974, 0.1)})
    assert P.choose(apart, [small, small_wide, big])[0] == big
