#!/usr/bin/env python3
"""Plot metrics from mentor's JSONL logs (include/mentor/train/jsonl.hpp) to a PNG with gnuplot.

One panel per metric, stacked, x = step (or any numeric field); one line per input file, so runs can
be compared. Optional exponential smoothing (as TensorBoard's, debiased) draws the raw curve faint
and the smoothed one on top. Standard library only; needs gnuplot (Debian: gnuplot-nox).

  tools/plot_metrics.py run/metrics.jsonl -o loss.png
  tools/plot_metrics.py a.jsonl b.jsonl -m loss,lr --smooth 0.9 --logy loss -o compare.png

Records without the metric, or with null (NaN/Inf) values, are skipped; a torn last line (a run
killed mid-write) is ignored with a warning.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile


COLORS = ["1F77B4", "D62728", "2CA02C", "FF7F0E", "9467BD", "8C564B", "E377C2", "7F7F7F"]


def read_jsonl(path):
    records = []
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                print(f"plot_metrics: {path}: ignoring torn last line {number}", file=sys.stderr)
                continue
            sys.exit(f"plot_metrics: {path}: line {number} is not JSON")
        if isinstance(record, dict):
            records.append(record)
    return records


def series(records, x_key, metric):
    points = []
    for record in records:
        x, y = record.get(x_key), record.get(metric)
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and math.isfinite(y):
            points.append((x, float(y)))
    points.sort(key=lambda p: p[0])
    return points


def smoothed(values, weight):
    out, average = [], 0.0
    for i, value in enumerate(values, 1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**i))  # debias the start
    return out


def quote(text):
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", help="JSONL metric files")
    parser.add_argument("-o", "--output", required=True, help="PNG to write")
    parser.add_argument("-m", "--metrics", default="loss", help="comma-separated metric names (default: loss)")
    parser.add_argument("-x", "--x", default="step", help="field for the x axis (default: step)")
    parser.add_argument("--smooth", type=float, default=0.0, help="EMA weight in [0, 1), 0 = off")
    parser.add_argument("--no-smooth", default="lr", help="comma-separated metrics never smoothed (default: lr)")
    parser.add_argument("--logy", default="", help="comma-separated metrics drawn on a log y axis")
    parser.add_argument("--title", default="", help="title above the panels")
    parser.add_argument("--size", default="900,320", help="width,height in pixels of ONE panel")
    args = parser.parse_args()

    if not 0.0 <= args.smooth < 1.0:
        sys.exit("plot_metrics: --smooth must be in [0, 1)")
    gnuplot = shutil.which("gnuplot")
    if gnuplot is None:
        sys.exit("plot_metrics: gnuplot not found (Debian: apt-get install gnuplot-nox)")
    metrics = [m for m in args.metrics.split(",") if m]
    log_metrics = set(m for m in args.logy.split(",") if m)
    unsmoothed = set(m for m in args.no_smooth.split(",") if m)
    width, panel_height = (int(v) for v in args.size.split(","))
    runs = []
    for path in args.files:
        if not os.path.isfile(path):
            sys.exit(f"plot_metrics: file not found: {path}")
        runs.append((path, read_jsonl(path)))

    with tempfile.TemporaryDirectory(prefix="plot_metrics_") as tmp:
        script = [
            f"set terminal pngcairo size {width},{panel_height * len(metrics) + (30 if args.title else 0)} "
            "font 'sans,10' noenhanced",
            f"set output {quote(os.path.abspath(args.output))}",
            "set grid lc rgb '#dddddd'",
            "set key top right noenhanced",
            f"set multiplot layout {len(metrics)},1" + (f" title {quote(args.title)}" if args.title else ""),
        ]
        any_points = False
        for m_index, metric in enumerate(metrics):
            plots = []
            for r_index, (path, records) in enumerate(runs):
                points = series(records, args.x, metric)
                if not points:
                    print(f"plot_metrics: {path}: no values of '{metric}'", file=sys.stderr)
                    continue
                any_points = True
                if metric in log_metrics:
                    points = [p for p in points if p[1] > 0]
                ys = [p[1] for p in points]
                smoothing = args.smooth > 0 and metric not in unsmoothed
                smooth = smoothed(ys, args.smooth) if smoothing else ys
                data = os.path.join(tmp, f"{m_index}_{r_index}.dat")
                with open(data, "w") as f:
                    for (x, y), s in zip(points, smooth):
                        f.write(f"{x!r} {y!r} {s!r}\n")
                name = os.path.basename(path) if len(runs) > 1 else metric
                color = COLORS[r_index % len(COLORS)]
                if smoothing:  # raw curve translucent underneath, smoothed on top
                    plots.append(f"{quote(data)} using 1:2 with lines lc rgb '#B0{color}' lw 1 notitle")
                    plots.append(f"{quote(data)} using 1:3 with lines lc rgb '#{color}' lw 2 title {quote(name)}")
                else:
                    plots.append(f"{quote(data)} using 1:2 with lines lc rgb '#{color}' lw 2 title {quote(name)}")
            script.append(f"set ylabel {quote(metric)}")
            script.append(f"set xlabel {quote(args.x)}" if m_index == len(metrics) - 1 else "unset xlabel")
            script.append("set logscale y" if metric in log_metrics else "unset logscale y")
            script.append("set format y '%g'")
            if plots:
                script.append("plot " + ", ".join(plots))
            else:
                script.append(f"set label 1 {quote('no data for ' + metric)} at graph 0.5,0.5 center")
                script.append("plot [0:1] [0:1] NaN notitle")
                script.append("unset label 1")
        script.append("unset multiplot")
        if not any_points:
            sys.exit(f"plot_metrics: none of {metrics} found in {args.files}")
        script_path = os.path.join(tmp, "plot.gp")
        with open(script_path, "w") as f:
            f.write("\n".join(script) + "\n")
        result = subprocess.run([gnuplot, script_path], capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"plot_metrics: gnuplot failed:\n{result.stderr}")
    print(f"plot_metrics: wrote {args.output}")


if __name__ == "__main__":
    main()
