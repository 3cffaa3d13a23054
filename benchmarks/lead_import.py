"""Benchmark of the lead import: full import vs a raw bulk load vs the naive per-row way.

    .venv/bin/python benchmarks/lead_import.py                 # 1,000,000 rows (2% bad)
    .venv/bin/python benchmarks/lead_import.py --rows 100000 --rss-rows 25000
    .venv/bin/python benchmarks/lead_import.py --rows 100000 --rss-rows 100000 --naive-rows 200

In one run it generates CSV files of N leads, then measures, each in a fresh child process
(so peak RSS is that phase's own):

- ``full/postgresql`` and ``full/sqlite``: ``import_lead_file`` end to end (read, validate,
  quality suite, load, ledger, reports) of a clean generated file (2% bad rows); all new
  leads, so it loads them directly;
- ``full/postgresql+repeats``: the same for a file where ``--repeat-share`` (1%) of the rows
  repeat an earlier row's email: loaded directly, the repeats (and the lines they repeat)
  staged and merged;
- ``full/postgresql+realistic`` and ``full/sqlite+realistic``: a realistic file
  (:func:`generate_realistic`: accented names, phones of several countries in their own
  formats, quoted cells with commas, quotes and line breaks, 1% invalid rows, 1% repeated
  emails in another case or with spaces: loaded directly, the repeats staged and merged);
- ``raw/postgresql``: ``COPY`` of the clean file into an UNLOGGED table of text columns;
  ``raw/sqlite``: ``executemany`` of the parsed rows in one transaction;
- ``naive/postgresql``: per row, validate + INSERT + COMMIT, on a sample (``--naive-rows``);
- ``full/postgresql`` again at ``--rss-rows`` rows, for the peak-RSS ratio.

Peak RSS is the phase process's own (``RUSAGE_SELF``); beside it, in brackets, the largest
child it waited for (``RUSAGE_CHILDREN``: the import's quality worker, which holds Great
Expectations), and "together": the peak of the import's RSS plus its worker's private memory,
sampled every 50 ms (an upper bound of the two at once), so no memory hides in another
process. The CPU seconds of the children (the worker, PostgreSQL's are not in it) are printed
beside the phase's own.

Each import prints its counts (inserted, updated, duplicates, rejected), so the repeated
emails are seen to reach the merge, and the CPU seconds of its process (user + system: what
the other load on the machine changes least; PostgreSQL's own work is not in it).

PostgreSQL is a throwaway server on loopback (the test suite's: ``fsync=off``), unless
``--pg-url`` names one. Prints rows/s, peak RSS and the ratios the issue sets targets for.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT_DIR / "include"), str(PROJECT_DIR)]

HEADER = ["First Name", "Last Name", "Company", "Email", "Phone", "Title", "Industry", "City", "Country"]
FIRST = ["Ada", "Alan", "Grace", "Linus", "Margaret", "Edsger", "Barbara", "Tim", "Katherine", "Donald", "Frances"]
LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Dijkstra", "Liskov", "Lee", "Johnson", "Knuth"]
INDUSTRY = ["Technology", "Finance", "Healthcare", "Retail", "Manufacturing", "Education", ""]
CITY = [("Boston", "USA"), ("London", "United Kingdom"), ("Berlin", "Germany"), ("Austin", "USA"), ("Paris", "France")]


def generate(path: Path, rows: int, bad_share: float = 0.02, seed: int = 7, repeat_share: float = 0.0) -> int:
    """A CSV of ``rows`` leads; ``bad_share`` of them are bad in one of several ways, and
    ``repeat_share`` repeat the email of an earlier row (so the import must merge, not load
    directly). Returns the number of rows written with an earlier row's email."""
    rnd = random.Random(seed)
    repeats = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for i in range(rows):
            city, country = rnd.choice(CITY)
            serial = _serial(rnd, i, repeat_share)
            repeats += serial != i
            first, last = FIRST[serial % len(FIRST)], LAST[serial * 7 // 11 % len(LAST)]
            row = [
                first,
                last,
                f"{last} {rnd.choice(['Inc', 'Ltd', 'GmbH', 'LLC', 'Partners'])} {i % 5000}",
                # A function of the serial only: a repeated serial is a repeated email.
                f"{first}.{last}.{serial}@company{serial % 997}.example.com",
                f"+1 ({rnd.randint(201, 989)}) 555-{rnd.randint(0, 9999):04d}" if rnd.random() < 0.8 else "",
                rnd.choice(["CTO", "VP Sales", "Engineer", "Buyer", ""]),
                rnd.choice(INDUSTRY),
                city,
                country,
            ]
            if rnd.random() < bad_share:
                kind = rnd.randrange(4)
                if kind == 0:
                    row[3] = f"{first}.{last}.{i}-at-nowhere"
                elif kind == 1:
                    row[0] = ""
                elif kind == 2:
                    row[4] = "12"
                else:
                    row = row[:5]
            writer.writerow(row)
    return repeats


def _serial(rnd: random.Random, i: int, repeat_share: float) -> int:
    """The email's serial: the row's own, or (``repeat_share`` of the time) an earlier row's."""
    return rnd.randrange(i) if repeat_share and i and rnd.random() < repeat_share else i


# The realistic file: what CRM exports from several countries look like.
REAL_HEADER = [*HEADER, "Notes"]
REAL_FIRST = [
    *("José", "François", "Zoë", "Søren", "Łukasz", "Ñuño", "Björn", "Anaïs", "Jürgen", "Małgorzata"),
    *("María", "Siobhán", "Ada", "Grace", "Chloé", "Dvořák", "Ingrid", "Miguel Ángel", "Øyvind", "Ana"),
]
REAL_LAST = [
    *("Müller", "Groß", "Østergaard", "Łącki", "Núñez", "García", "O'Brien", "Nguyễn", "Weiß", "Dubois"),
    *("Kowalski", "Smith", "Johansson", "Ferreira", "Lefèvre", "Schröder", "Hernández", "Brontë"),
]
REAL_COMPANY = [
    *("Müller & Söhne, GmbH", "Société Générale", "Łódź Logistics", "Acme, Inc.", "Nørre Data ApS"),
    *("Telefónica", "Café Crème SARL", "Zürich Re", "Smith & Co", "Straße Bau AG"),
]
REAL_CITY = [
    *(("Washington, D.C.", "USA"), ("São Paulo", "Brazil"), ("München", "Germany"), ("Paris", "France")),
    *(("Kraków", "Poland"), ("Malmö", "Sweden"), ("London", "United Kingdom"), ("Austin", "USA")),
    *(("Zürich", "Switzerland"), ("A Coruña", "Spain")),
]
_TRANSLIT = str.maketrans({"ß": "ss", "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d", " ": "", "'": ""})


def _ascii(name: str) -> str:
    import unicodedata

    decomposed = unicodedata.normalize("NFKD", name.translate(_TRANSLIT))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def _real_phone(rnd: random.Random, country: str) -> str:
    """A phone as people type them: national formats of the row's Country, international
    numbers written the way each country groups them, or none."""
    digits = f"{rnd.getrandbits(40):013d}"[-12:]
    a, b, c, e = digits[0:2], digits[2:4], digits[4:6], digits[6:8]
    area, line, last4 = f"{rnd.randint(2, 9)}{a}", f"{rnd.randint(2, 9)}{b}", digits[8:12]
    d = rnd.randint(2, 9)
    international = [
        f"+33 6 {a} {b} {c} {e}",
        f"+33 (0)1 {a} {b} {c} {e}",
        f"+49 (0)30 {d}{a}{b}{c}",
        f"+49 89 {d}{a}{b}{c}{e[0]}",
        f"+44 20 7946 {last4}",
        f"+44 7700 {a}{b}{c}",
        f"+34 6{a} {b} {c} {e}",
        f"+48 12 {a}{b[0]} {c} {e}",
        f"+46 8 {a}{b[0]} {b[1]}{c} {e}",
        f"+41 44 {a}{b[0]} {c} {e}",
        f"+55 11 9{a}{b}-{c}{e}",
        f"+45 {a} {b} {c} {e}",
        f"+1 {area} {line} {last4}",
        f"+1 ({area}) {line}-{last4}",
    ]
    # National formats, read in the row's Country (countries not listed write theirs with "+").
    national = {
        "USA": [
            f"({area}) {line}-{last4}",
            f"{area}-{line}-{last4}",
            f"{area}.{line}.{last4}",
            f"1-{area}-{line}-{last4}",
        ],  # noqa: E501
        "France": [f"06 {a} {b} {c} {e}", f"01 {a} {b} {c} {e}"],
        "Germany": [f"030 {d}{a}{b}{c}", f"089 {d}{a}{b}{c}{e[0]}"],
        "United Kingdom": [f"020 7946 {last4}", f"07700 {a}{b}{c}"],
    }.get(country)
    kind = rnd.random()
    if kind < 0.2:
        return ""
    shapes = national if national and kind < 0.6 else international
    return shapes[rnd.randrange(len(shapes))]


_REAL_DOMAINS = ["".join(c for c in _ascii(name) if c.isalnum())[:12] for name in REAL_COMPANY]
_REAL_ASCII = ({n: _ascii(n) for n in REAL_FIRST}, {n: _ascii(n) for n in REAL_LAST})


def _real_name(serial: int) -> tuple[str, str]:
    return REAL_FIRST[serial % len(REAL_FIRST)], REAL_LAST[serial * 7 // 11 % len(REAL_LAST)]


def _real_email(serial: int) -> str:
    first, last = _real_name(serial)
    domain = _REAL_DOMAINS[serial % len(_REAL_DOMAINS)]
    return f"{_REAL_ASCII[0][first]}.{_REAL_ASCII[1][last]}.{serial}@{domain}{serial % 499}.example.com"


def generate_realistic(path: Path, rows: int, seed: int = 11, repeat_share: float = 0.01, bad_share: float = 0.01):
    """A realistic CSV of ``rows`` leads: accented names, phones of several countries in their
    own formats, quoted cells with commas, quotes and line breaks; ``repeat_share`` of the rows
    repeat an earlier row's email in another case or with spaces around it (the later row
    wins); ``bad_share`` are invalid. Returns the rows written with a repeated email."""
    rnd = random.Random(seed)
    repeats = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(REAL_HEADER)
        for i in range(rows):
            serial = i
            if i and rnd.random() < repeat_share:
                serial = rnd.randrange(i)
                repeats += 1
            email = _real_email(serial)
            if serial != i:
                email = rnd.choice([email.upper(), email.title(), f" {email} ", email.capitalize()])
            first, last = _real_name(serial)
            city, country = rnd.choice(REAL_CITY)
            phone = _real_phone(rnd, country)
            note = ""
            if rnd.random() < 0.05:
                note = rnd.choice(
                    [
                        "Met at the booth, wants a demo",
                        "Call back\nafter the 15th",
                        'Said "not now", try Q3',
                        "Budget: 12.500,00 €",
                        "Intro via Zoë\r\nCC: sales, marketing",
                    ]  # fmt: skip
                )
            row = [
                first,
                last,
                rnd.choice(REAL_COMPANY),
                email,
                phone,
                rnd.choice(["CTO", "Directeur Général", "Geschäftsführer", "VP Sales, EMEA", "Ingeniero", ""]),
                rnd.choice(INDUSTRY),
                city,
                country,
                note,
            ]
            if rnd.random() < bad_share:
                kind = rnd.randrange(4)
                if kind == 0:
                    row[3] = email.replace("@", " at ")
                elif kind == 1:
                    row[1] = ""
                elif kind == 2:
                    row[4] = "12"
                else:
                    row = row[:6]
            writer.writerow(row)
    return repeats


def _peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def _fresh_database(kind: str, work: Path, pg) -> str:
    from hotcrm.crm import migrate

    url = f"sqlite:///{work / f'bench-{time.time_ns()}.db'}" if kind == "sqlite" else pg["url_for"](pg["create"]())
    migrate.upgrade(url)
    return url


class _TogetherPeak:
    """The peak of this process's RSS (sampled every 50 ms) plus its children's private memory
    (every 0.25 s: the quality worker's pages no other process maps; those it shares are the
    libraries this process loads too): what the import and its worker use together."""

    def __init__(self) -> None:
        import threading

        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _TogetherPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
        children_kb, tick = 0, 0
        while not self._stop.wait(0.05):
            # statm is cheap; smaps_rollup walks the page tables: the worker's, every 0.25 s only.
            own_kb = int(Path("/proc/self/statm").read_text().split()[1]) * page_kb
            if tick % 5 == 0:
                children_kb = 0
                for task in Path("/proc/self/task").iterdir():
                    children = (task / "children").read_text().split() if (task / "children").exists() else []
                    children_kb += sum(_smaps(int(pid), ("Private_Clean", "Private_Dirty")) for pid in children)
            tick += 1
            self.peak_kb = max(self.peak_kb, own_kb + children_kb)


def _smaps(pid: int, keys: tuple[str, ...]) -> int:
    """Kilobytes of ``keys`` in a process's ``smaps_rollup`` (0 once it is gone)."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return 0
    return sum(int(line.split()[1]) for line in lines if line.split(":")[0] in keys)


def phase_full(url: str, path: str, work: str) -> dict:
    """The whole import, as the DAG runs it."""
    from hotcrm.leads.importer import import_lead_file

    src = Path(work) / "incoming" / Path(path).name
    for sub in ("incoming", "processed", "failed"):
        (Path(work) / sub).mkdir(parents=True, exist_ok=True)
    os.link(path, src) if not src.exists() else None
    started = time.perf_counter()
    with _TogetherPeak() as together:
        outcome = import_lead_file(
            src,
            url,
            processed_dir=Path(work) / "processed",
            failed_dir=Path(work) / "failed",
            progress=lambda m: None,
        )
    elapsed = time.perf_counter() - started
    if outcome.status != "imported":
        raise SystemExit(f"import did not succeed: {outcome.to_dict()}")
    result = {"rows": outcome.rows_read, "seconds": elapsed, "outcome": outcome.to_dict()}
    return {**result, "together_mb": together.peak_kb / 1024}


def phase_raw(url: str, path: str, work: str) -> dict:
    """The floor: the same bytes bulk-loaded with no validation at all."""
    from hotcrm.crm.db import get_engine, is_postgresql

    engine = get_engine(url)
    started = time.perf_counter()
    cols = ", ".join(f"c{i} TEXT" for i in range(len(HEADER)))
    with engine.begin() as conn:
        postgresql = is_postgresql(engine)
        conn.exec_driver_sql(f"CREATE {'UNLOGGED ' if postgresql else ''}TABLE raw_leads ({cols})")
        marks = ", ".join("?" for _ in HEADER)
        rows = 0
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            next(reader)
            batch = []
            # Parsed by the csv module (ragged rows padded), so the baseline reads the file as the import does.
            for row in reader:
                batch.append(tuple((row + [""] * len(HEADER))[: len(HEADER)]))
                if len(batch) >= 20_000:
                    rows += _raw_flush(conn, postgresql, batch, marks)
            rows += _raw_flush(conn, postgresql, batch, marks)
    return {"rows": rows, "seconds": time.perf_counter() - started}


def _raw_flush(conn, postgresql: bool, batch: list, marks: str) -> int:
    n = len(batch)
    if postgresql:
        cursor = conn.connection.dbapi_connection.cursor()
        with cursor.copy("COPY raw_leads FROM STDIN") as copy:
            for row in batch:
                copy.write_row(row)
    elif batch:
        conn.exec_driver_sql(f"INSERT INTO raw_leads VALUES ({marks})", batch)
    batch.clear()
    return n


def phase_naive(url: str, path: str, work: str, limit: int) -> dict:
    """What a first attempt does: validate a row, INSERT it, COMMIT, next row."""
    from hotcrm.crm.db import session_scope
    from hotcrm.crm.models import Lead, api_to_attr
    from hotcrm.leads.rules import normalize_lead

    fields = ["FirstName", "LastName", "Company", "Email", "Phone", "Title", "Industry", "City", "Country"]
    rows = 0
    started = time.perf_counter()
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            if rows >= limit:
                break
            rows += 1
            if len(row) != len(fields):
                continue
            clean, errors = normalize_lead(dict(zip(fields, row, strict=True)))
            if errors:
                continue
            with session_scope(url) as session:
                session.add(Lead(**{api_to_attr(k): v for k, v in clean.items()}))
    return {"rows": rows, "seconds": time.perf_counter() - started}


def _child(args: argparse.Namespace) -> None:
    url, path, work = args.url, args.file, args.work
    if args.phase == "full":
        result = phase_full(url, path, work)
    elif args.phase == "raw":
        result = phase_raw(url, path, work)
    else:
        result = phase_naive(url, path, work, args.naive_rows)
    result["peak_rss_mb"] = _peak_rss_mb()
    # The largest reaped child: the quality worker (Great Expectations), not hidden in another process.
    result["peak_rss_children_mb"] = _peak_rss_mb(resource.RUSAGE_CHILDREN)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["children_cpu_seconds"] = children.ru_utime + children.ru_stime
    print("RESULT " + json.dumps(result, default=str), flush=True)


def _run_phase(phase: str, url: str, path: Path, work: Path, naive_rows: int) -> dict:
    command = [sys.executable, __file__, "--phase", phase, "--url", url, "--file", str(path), "--work", str(work)]
    command += ["--naive-rows", str(naive_rows)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "GX_ANALYTICS_ENABLED": "False"})
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"phase {phase} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    """Run every phase and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="leads in the generated file")
    parser.add_argument("--rss-rows", type=int, default=250_000, help="a second, smaller full run for the RSS ratio")
    parser.add_argument("--naive-rows", type=int, default=2_000, help="rows of the per-row baseline's sample")
    parser.add_argument("--pg-url", help="an existing PostgreSQL database (default: a throwaway server)")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument(
        "--repeat-share",
        type=float,
        default=0.01,
        help="share of repeated emails in a second file, which the import must merge (0: skip that phase)",
    )
    parser.add_argument(
        "--skip-realistic", action="store_true", help="skip the realistic file (accents, phones, quotes, repeats)"
    )
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        _child(args)
        return

    from hotcrm.crm.db import dispose_engine

    server = None
    if args.pg_url:
        pg = {"create": lambda: None, "url_for": lambda _name: args.pg_url}
    else:
        from tests.support.postgres import PostgresServer

        server = PostgresServer().start()
        pg = {"create": server.create_database, "url_for": server.url}
    results: dict[str, dict] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="hotcrm-bench-") as tmp:
            work = Path(tmp)
            files = {}
            for rows in sorted({args.rows, args.rss_rows}, reverse=True):
                files[f"clean@{rows}"] = _timed_generate(work / f"leads_{rows}.csv", rows, generate, rows)
            if args.repeat_share:
                path = work / f"leads_{args.rows}_repeats.csv"
                files["repeats"] = _timed_generate(path, args.rows, generate, args.rows, repeat_share=args.repeat_share)
            if not args.skip_realistic:
                path = work / f"leads_{args.rows}_realistic.csv"
                files["realistic"] = _timed_generate(path, args.rows, generate_realistic, args.rows)
            clean = f"clean@{args.rows}"
            plan = [("full", "postgresql", clean, ""), ("raw", "postgresql", clean, "")]
            if args.repeat_share:
                plan.append(("full", "postgresql", "repeats", "+repeats"))
            if not args.skip_realistic:
                plan.append(("full", "postgresql", "realistic", "+realistic"))
            if not args.skip_sqlite:
                plan += [("full", "sqlite", clean, ""), ("raw", "sqlite", clean, "")]
                if not args.skip_realistic:
                    plan.append(("full", "sqlite", "realistic", "+realistic"))
            plan.append(("naive", "postgresql", clean, ""))
            if args.rss_rows != args.rows:
                plan.append(("full", "postgresql", f"clean@{args.rss_rows}", f"@{args.rss_rows}"))
            for phase, kind, file_key, label in plan:
                url = _fresh_database(kind, work, pg)
                dispose_engine(url)
                key = f"{phase}/{kind}{label}"
                phase_work = work / key.replace("/", "-")
                phase_work.mkdir()
                result = _run_phase(phase, url, files[file_key], phase_work, args.naive_rows)
                result["rate"] = result["rows"] / result["seconds"]
                results[key] = result
                outcome = result.get("outcome")
                counts = together = ""
                if "together_mb" in result:
                    together = f"; together {result['together_mb']:4.0f} MB"
                if outcome:
                    counts = (
                        f"  inserted {outcome['inserted']:,} updated {outcome['updated']:,} "
                        f"duplicates {outcome['duplicates']:,} rejected {outcome['rejected']:,}"
                    )
                print(
                    f"{key:26s} {result['rows']:>10,} rows {result['seconds']:8.1f}s "
                    f"{result['rate']:>10,.0f} rows/s  peak RSS {result['peak_rss_mb']:6.0f} MB"
                    f" (children {result['peak_rss_children_mb']:4.0f} MB{together})"
                    f"  cpu {result['cpu_seconds']:6.1f}s (children {result['children_cpu_seconds']:4.1f}s){counts}",
                    flush=True,
                )
    finally:
        if server is not None:
            server.stop()

    print("\nratios")
    for kind in ("postgresql", "sqlite"):
        if f"full/{kind}" in results and f"raw/{kind}" in results:
            print(f"  full/raw   {kind:10s} {results[f'full/{kind}']['rate'] / results[f'raw/{kind}']['rate']:.2f}")
    if "full/postgresql+repeats" in results and "raw/postgresql" in results:
        ratio = results["full/postgresql+repeats"]["rate"] / results["raw/postgresql"]["rate"]
        print(f"  full/raw   postgresql, {args.repeat_share:.0%} repeated emails (repeats merged) {ratio:.2f}")
    for kind in ("postgresql", "sqlite"):
        realistic, clean_key = f"full/{kind}+realistic", f"full/{kind}"
        if realistic in results and clean_key in results:
            ratio = results[realistic]["rate"] / results[clean_key]["rate"]
            print(f"  realistic/clean {kind:10s} {ratio:.2f}  (target >= 0.5)")
            cpu = results[clean_key]["cpu_seconds"] / results[realistic]["cpu_seconds"]
            print(f"  realistic/clean {kind:10s} {cpu:.2f}  by the import process's CPU seconds per row")
    if "full/postgresql+realistic" in results and "raw/postgresql" in results:
        ratio = results["full/postgresql+realistic"]["rate"] / results["raw/postgresql"]["rate"]
        print(f"  realistic (repeats staged and merged)/raw postgresql {ratio:.2f}  (target >= 0.25)")
    if "naive/postgresql" in results:
        print(
            f"  full/naive postgresql {results['full/postgresql']['rate'] / results['naive/postgresql']['rate']:.0f}x"
        )
    small = f"full/postgresql@{args.rss_rows}"
    if small in results:
        ratio = results["full/postgresql"]["peak_rss_mb"] / results[small]["peak_rss_mb"]
        print(f"  peak RSS {args.rows:,} rows / {args.rss_rows:,} rows (postgresql): {ratio:.2f}")


def _timed_generate(path: Path, rows: int, generator, *args, **kwargs) -> Path:
    started = time.perf_counter()
    repeats = generator(path, *args, **kwargs)
    size_mb = path.stat().st_size / 1e6
    extra = f", {repeats:,} rows repeat an earlier email" if repeats is not None else ""
    print(f"generated {path.name}: {rows:,} rows ({size_mb:.0f} MB{extra}) in {time.perf_counter() - started:.1f}s")
    return path


if __name__ == "__main__":
    main()
