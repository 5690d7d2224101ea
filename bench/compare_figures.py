"""Reads the reports bench/compare.sh kept (DIR/old.N.md, DIR/new.N.md: the benches'
Markdown tables) and prints every figure both sides reported: each side's median and
range over the rounds, the NEW/OLD ratio of the medians, and the range of the ratios of
round N's pair. Figures are the numbers in the measure columns (those that hold a rate, a
time, a size or a ratio); the cells before them name the row.

    python3 bench/compare_figures.py DIR
"""
import glob
import os
import re
import statistics
import sys

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
# A column holds figures when its header says it measures something.
MEASURES = ("/s", "per second", "p50", "p99", "figure", "ratio", "ms", "kb", "mb", "rss",
            "latency", "memory")
# Where a larger figure is worse (a time, a size); elsewhere larger is better.
WORSE_WHEN_LARGER = ("p50", "p99", "ms", "latency", "kb", "mb", "rss", "memory")


def cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def figures(path):
    """{(table, row, column[, part]): number} of one report."""
    found = {}
    header = measured = None
    with open(path) as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("|"):
            header = None
            continue
        if i + 1 < len(lines) and lines[i + 1].startswith("| ---"):
            header = cells(line)
            measured = [any(m in h.lower() for m in MEASURES) for h in header]
            continue
        if header is None or line.startswith("| ---") or header[0].lower() in ("target", "baseline"):
            continue
        row = cells(line)
        if len(row) != len(header) or not any(measured):
            continue
        first = measured.index(True) if not measured[0] else 1
        name = " · ".join(row[:first])
        for index, (column, cell) in enumerate(zip(header, row)):
            if index < first or not measured[index]:
                continue
            numbers = NUMBER.findall(cell.replace(",", ""))
            for part, number in enumerate(numbers[:2]):  # "p50 / p99" cells hold two
                key = (header[0], name, column + (" [%d]" % (part + 1) if len(numbers) > 1 else ""))
                found[key] = float(number)
    return found


def describe(values):
    return "%s (%s–%s)" % (fmt(statistics.median(values)), fmt(min(values)), fmt(max(values)))


def fmt(x):
    return "%.0f" % x if abs(x) >= 100 else "%.3g" % x


def main(folder):
    sides = {"old": {}, "new": {}}
    for path in sorted(glob.glob(os.path.join(folder, "*.md"))):
        side, round_no = os.path.basename(path).split(".")[:2]
        sides[side][int(round_no)] = figures(path)
    rounds = sorted(set(sides["old"]) & set(sides["new"]))
    if not rounds:
        raise SystemExit("compare: no round has both sides' reports in %s" % folder)
    keys = [k for k in sides["new"][rounds[0]] if all(k in sides[s][r] for s in sides for r in rounds)]
    if not keys:
        raise SystemExit("compare: the two sides' reports share no figure")
    print("| table | row | figure | old: median (range) | new: median (range) | new/old | pairs |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for key in keys:
        old = [sides["old"][r][key] for r in rounds]
        new = [sides["new"][r][key] for r in rounds]
        ratio = statistics.median(new) / statistics.median(old) if statistics.median(old) else float("nan")
        pairs = [n / o for n, o in zip(new, old) if o]
        spread = "%.2f–%.2f" % (min(pairs), max(pairs)) if pairs else "–"
        named = (key[1] + " " + key[2]).lower()
        worse = "ratio" not in named and any(m in named for m in WORSE_WHEN_LARGER)
        flag = ""
        if pairs and (min(pairs) > 1 or max(pairs) < 1):  # every pair agrees
            slower = (min(pairs) > 1) == worse
            flag = " **worse**" if slower else " better"
        print("| %s | %s | %s | %s | %s | %.2f%s | %s |" % (
            key[0], key[1], key[2], describe(old), describe(new), ratio, flag, spread))
    print("\nA figure is flagged better or **worse** only when every pair of rounds agrees; with "
          "%d rounds chance alone does that to a figure that did not move %.0f%% of the time "
          "(run more rounds to decide)." % (len(rounds), 100 * 2 ** (1 - len(rounds))))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
