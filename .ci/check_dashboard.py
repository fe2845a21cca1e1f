#!/usr/bin/env python3
"""Checks the Grafana dashboard (and the metric names of the alerting rules).

Usage: check_dashboard.py DASHBOARD.json [--rules ALERTS.yml]... [--metrics DUMP]
                          [--src SRC_DIR]

Dashboard: valid JSON; title, uid, schemaVersion and panels at the top; a
Prometheus datasource input (`__inputs`) that every panel and target uses as
`${NAME}`, so Grafana's import asks for it; every panel (row panels' nested
ones included) has an id unique in the dashboard and a gridPos; every panel
but a row has a datasource and at least one target with a refId and an expr.

Metric names: every metric name in every PromQL expression (dashboard
targets, template variable queries, and the `expr:` of each `--rules` file)
must be one the server really exposes. Where the list comes from:

  --metrics DUMP   the text of a real `GET /metrics` (authoritative: what the
                   binary serves). Names come from its samples and from its
                   `# TYPE` lines, so a labelled family with no sample yet
                   still counts (a counter `x` exposes `x_total`, a histogram
                   `x_bucket`, `x_sum`, `x_count`).
  otherwise        the registrations in SRC/metrics.rs (`r.register(format!(
                   "{p}_name"), ..., m.field.clone())`), each field's type
                   (Counter, Gauge, Histogram, Family<_, T>) read from the
                   struct that declares it anywhere under SRC, with the same
                   suffixes. Default SRC: the repository's src/ (../src from here).

Prometheus's own per-target series (`up`, `scrape_*`) are always allowed.

--promql-rules OUT writes every dashboard target's expression, with Grafana's
variables replaced (`$__rate_interval` and the like by 5m, others by `.*`), as
recording rules into OUT, so that `promtool check rules OUT` parses them.
Standard library only.
"""

import argparse
import json
import os
import re
import sys

PROMETHEUS_SERIES = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
}

PROMQL_KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan", "atan2",
}

SUFFIXES = {
    "counter": ["_total"],
    "gauge": [""],
    "histogram": ["_bucket", "_sum", "_count"],
    "summary": ["", "_sum", "_count"],
    "unknown": [""],
    "untyped": [""],
    "info": ["_info"],
    "stateset": [""],
    "gaugehistogram": ["_bucket", "_gsum", "_gcount"],
}


# ---------------------------------------------------------------- known names

def names_from_dump(path):
    names = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                m = re.match(r"#\s*TYPE\s+([A-Za-z_:][A-Za-z0-9_:]*)\s+(\w+)", line)
                if m:
                    name, kind = m.group(1), m.group(2).lower()
                    for suffix in SUFFIXES.get(kind, [""]):
                        # The 0.0.4 format names a counter with its _total already.
                        if suffix and name.endswith(suffix):
                            names.add(name)
                        else:
                            names.add(name + suffix)
                continue
            m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)", line)
            if m:
                names.add(m.group(1))
    if not names:
        raise SystemExit(f"{path}: no metric names found; is it the text of GET /metrics?")
    return names


def struct_fields(src_dir):
    """struct name -> {field -> type text}, for every `struct X { ... }` under src_dir."""
    structs = {}
    for root, _, files in os.walk(src_dir):
        for name in files:
            if not name.endswith(".rs"):
                continue
            with open(os.path.join(root, name), encoding="utf-8") as f:
                text = f.read()
            for m in re.finditer(r"\bstruct\s+(\w+)\s*\{(.*?)\n\}", text, re.S):
                fields = {}
                for fm in re.finditer(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(\w+)\s*:\s*([^\n]+?),?\s*$", m.group(2), re.M):
                    fields[fm.group(1)] = fm.group(2)
                structs.setdefault(m.group(1), {}).update(fields)
    return structs


def kind_of(type_text):
    if "Histogram" in type_text:
        return "histogram"
    if "Counter" in type_text:
        return "counter"
    if "Gauge" in type_text:
        return "gauge"
    return None


def names_from_src(src_dir):
    path = os.path.join(src_dir, "metrics.rs")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    prefix = re.search(r'let\s+p\s*=\s*"(\w+)"\s*;', text)
    if not prefix:
        raise SystemExit(f'{path}: no `let p = "...";` metric prefix found; update check_dashboard.py')
    p = prefix.group(1)
    structs = struct_fields(src_dir)
    names = set()
    registrations = re.findall(
        r'\.register\(\s*format!\("\{p\}_(\w+)"\)\s*,\s*"(?:[^"\\]|\\.)*"\s*,\s*m\.([\w.]+)\.clone\(\)\s*,?\s*\)', text
    )
    if not registrations:
        raise SystemExit(f"{path}: no registrations found; update check_dashboard.py")
    for base, field_path in registrations:
        owner, type_text = "Metrics", None
        for part in field_path.split("."):
            type_text = structs.get(owner, {}).get(part)
            if type_text is None:
                raise SystemExit(f"{path}: cannot find the type of m.{field_path} ({owner}.{part})")
            owner = type_text.strip()
        kind = kind_of(type_text)
        if kind is None:
            raise SystemExit(f"{path}: m.{field_path} has type {type_text}, not a Counter, Gauge or Histogram")
        for suffix in SUFFIXES[kind]:
            names.add(f"{p}_{base}{suffix}")
    return names


# ----------------------------------------------------------- PromQL names

def metric_names(expr):
    """The metric names an expression selects (functions, labels, keywords left out)."""
    e = expr
    # Grafana's label_values(metric{...}, label): only the first argument is a series.
    e = re.sub(r"\blabel_values\s*\(\s*([^,()]*?(?:\{[^}]*\})?)\s*,\s*\w+\s*\)", r" \1 ", e)
    e = re.sub(r"\blabel_values\s*\(\s*(\w+)\s*\)", " ", e)  # label_values(label): no metric
    e = re.sub(r"\$\{[^}]*\}|\$\w+", " ", e)  # Grafana variables
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', " ", e)  # strings
    e = re.sub(r"\{[^}]*\}", " ", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)  # ranges and subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\boffset\s+-?\w+", " ", e)
    e = re.sub(r"(?<![A-Za-z0-9_:])\d[\w.]*(?:[eE][+-]?\d+)?", " ", e)  # numbers, durations
    found = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        name = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("("):
            continue  # a function or an aggregation
        if name.lower() in PROMQL_KEYWORDS:
            continue
        found.add(name)
    return found


def rule_exprs(path):
    """(line, expr) of each `expr:` in a rules file (inline, quoted, or a | / > block)."""
    out = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(?:-\s+)?expr:\s*(.*?)\s*$", lines[i])
        if not m:
            i += 1
            continue
        indent, value, start = len(m.group(1)), m.group(2), i + 1
        if re.match(r"^[|>][-+]?$", value):
            block = []
            i += 1
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                block.append(lines[i])
                i += 1
            out.append((start, "\n".join(block)))
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out.append((start, value))
        i += 1
    return out


# -------------------------------------------------------------- dashboard

def all_panels(panels):
    for p in panels:
        yield p
        if isinstance(p, dict) and isinstance(p.get("panels"), list):
            yield from all_panels(p["panels"])


def as_promql(expr):
    """A Grafana target expression as plain PromQL (for promtool to parse)."""
    e = re.sub(r"\$\{?__\w+\}?", "5m", expr)
    return re.sub(r"\$\{[^}]*\}|\$\w+", ".*", e)


def write_promql_rules(out, targets):
    """`targets`: (where, expr). One recording rule per expression, in one group."""
    with open(out, "w", encoding="utf-8") as f:
        f.write("# Generated by .ci/check_dashboard.py for `promtool check rules`; not for use.\n")
        f.write("groups:\n  - name: dashboard-targets\n    rules:\n")
        for i, (where, expr) in enumerate(targets):
            f.write(f"      # {where}\n")
            f.write(f"      - record: dashboard:target_{i}\n")
            # A JSON string is a valid YAML double-quoted scalar.
            f.write(f"        expr: {json.dumps(as_promql(expr))}\n")


def check_dashboard(path, known, errors, targets_out=None):
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        errors.append(f"{path}: not valid JSON: {e}")
        return 0, 0
    if not isinstance(d, dict):
        errors.append(f"{path}: the top level is not an object")
        return 0, 0
    for key, kind in (("title", str), ("uid", str), ("schemaVersion", int), ("panels", list)):
        if not isinstance(d.get(key), kind) or (kind is str and not d[key].strip()):
            errors.append(f"{path}: top-level {key!r} missing or not a {'non-empty string' if kind is str else kind.__name__}")
    inputs = {i.get("name") for i in d.get("__inputs", []) if i.get("type") == "datasource" and i.get("pluginId") == "prometheus"}
    if not inputs:
        errors.append(f"{path}: no Prometheus datasource in __inputs (Grafana's import would not ask for one)")
    allowed_ds = {"${%s}" % n for n in inputs}

    def check_ds(where, ds):
        uid = ds.get("uid") if isinstance(ds, dict) else ds
        if uid not in allowed_ds:
            errors.append(f"{path}: {where}: datasource {ds!r} is not one of the __inputs ({sorted(allowed_ds)})")

    exprs = []
    ids = {}
    panels = list(all_panels(d.get("panels", []) if isinstance(d.get("panels"), list) else []))
    for p in panels:
        if not isinstance(p, dict):
            errors.append(f"{path}: a panel is not an object: {p!r}")
            continue
        where = f"panel {p.get('id')!r} ({p.get('title', '?')})"
        pid = p.get("id")
        if not isinstance(pid, int):
            errors.append(f"{path}: {where}: no integer id")
        elif pid in ids:
            errors.append(f"{path}: {where}: id {pid} is also panel {ids[pid]!r}'s")
        else:
            ids[pid] = p.get("title")
        g = p.get("gridPos")
        if not isinstance(g, dict) or not all(isinstance(g.get(k), int) for k in "hwxy"):
            errors.append(f"{path}: {where}: gridPos must have integer h, w, x, y")
        elif g["x"] < 0 or g["w"] <= 0 or g["x"] + g["w"] > 24:
            errors.append(f"{path}: {where}: gridPos x {g['x']} + w {g['w']} is outside the 24 columns")
        if p.get("type") == "row":
            continue
        if "datasource" not in p:
            errors.append(f"{path}: {where}: no datasource")
        else:
            check_ds(where, p["datasource"])
        targets = p.get("targets")
        if not isinstance(targets, list) or not targets:
            errors.append(f"{path}: {where}: no targets")
            continue
        refs = set()
        for t in targets:
            ref = t.get("refId")
            if not ref or ref in refs:
                errors.append(f"{path}: {where}: target refId {ref!r} missing or repeated")
            refs.add(ref)
            if "datasource" in t:
                check_ds(f"{where} target {ref}", t["datasource"])
            expr = t.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                errors.append(f"{path}: {where}: target {ref} has no expr")
                continue
            exprs.append((f"{where} target {ref}", expr))
            if targets_out is not None:
                targets_out.append((f"{path}: {where} target {ref}", expr))
    for v in d.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        where = f"variable {v.get('name')!r}"
        if "datasource" in v:
            check_ds(where, v["datasource"])
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if isinstance(q, str) and q.strip():
            exprs.append((where, q))
    for where, expr in exprs:
        check_names(f"{path}: {where}", expr, known, errors)
    return len(panels), len(exprs)


def check_names(where, expr, known, errors):
    names = metric_names(expr)
    if not names:
        errors.append(f"{where}: no metric name found in {expr!r}")
    for name in sorted(names - known):
        errors.append(f"{where}: {name!r} is not a series the server exposes (expr: {' '.join(expr.split())})")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dashboard", nargs="+")
    ap.add_argument("--rules", action="append", default=[], help="a Prometheus rules file whose expr: names to check too")
    ap.add_argument("--metrics", help="a file holding the text of a real GET /metrics (authoritative)")
    ap.add_argument("--src", default=os.path.join(here, "..", "src"), help="the Rust sources (used without --metrics)")
    ap.add_argument("--promql-rules", help="write the dashboard's expressions here as recording rules, for promtool")
    args = ap.parse_args()

    if args.metrics:
        known, source = names_from_dump(args.metrics), f"the /metrics dump {args.metrics}"
    else:
        known, source = names_from_src(args.src), f"the registrations in {os.path.relpath(args.src)}/metrics.rs"
    known |= PROMETHEUS_SERIES

    errors = []
    counts = []
    targets = []
    for path in args.dashboard:
        counts.append((path,) + check_dashboard(path, known, errors, targets))
    if args.promql_rules:
        write_promql_rules(args.promql_rules, targets)
    n_rules = 0
    for path in args.rules:
        exprs = rule_exprs(path)
        if not exprs:
            errors.append(f"{path}: no expr: found")
        for line, expr in exprs:
            n_rules += 1
            check_names(f"{path}:{line}", expr, known, errors)

    if errors:
        for e in errors:
            print("FAIL:", e, file=sys.stderr)
        print(f"{len(errors)} problem(s); metric names from {source}", file=sys.stderr)
        return 1
    for path, panels, exprs in counts:
        print(f"ok: {path}: {panels} panels, {exprs} PromQL expressions")
    if args.rules:
        print(f"ok: {n_rules} rule expressions in {', '.join(args.rules)}")
    print(f"ok: every metric name is one of the {len(known)} names from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
