"""Generate realistic registration exports in the demo event's columns, fast and repeatably.

The columns are those of include/mappings/demo/README.md. Names are Latin or Cyrillic,
categories are multi-value (``TO;LEI;LUX``), and a chosen share of rows is bad in the ways
partner exports are: broken e-mail addresses, ids containing "admin", repeated ids, titles too
long for a headline, unknown category codes, dates in another format, missing names.

    python -m bench.datagen visitor --rows 100000 --out var/demo/visitors.csv
    python -m bench.datagen exhibitor --rows 500 --out var/demo/drop/exhibitors_2026-03-01.csv

From Python: ``visitors(1_000_000)``, ``exhibitors(500)``, ``representatives(2000)`` return
DataFrames with pyarrow-backed text columns (the first data row is row 1 of the index).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

TEXT = pa.large_string()

FIRST_LATIN = [
    "Claudio", "Anna", "James", "Maria", "Oliver", "Sophie", "Lucas", "Emma", "Noah", "Mia",
    "Giulia", "Marco", "Hannah", "Felix", "Chloe", "Liam", "Isabel", "Pierre", "Ingrid", "Tomás",
    "Zoë", "Mateo", "Aoife", "Søren", "José",
]  # fmt: skip
LAST_LATIN = [
    "Cadeddu", "Smith", "Rossi", "Müller", "Dubois", "García", "O'Neil", "Jones", "Kowalski",
    "Nielsen", "Silva", "Brown", "Bianchi", "Fischer", "Martin", "Lopez", "van der Berg",
    "McDonald", "Nowak", "Novák", "Andersen", "Costa", "Schmidt", "Moreau", "Taylor",
]  # fmt: skip
FIRST_CYRILLIC = [
    "Иван", "Анна", "Мария", "Алексей", "Ольга", "Дмитрий", "Екатерина", "Сергей", "Наталья",
    "Михаил", "Татьяна", "Андрей", "Елена", "Павел", "Юлия",
]  # fmt: skip
LAST_CYRILLIC = [
    "Иванов", "Смирнова", "Кузнецов", "Попова", "Соколов", "Лебедева", "Козлов", "Новикова",
    "Морозов", "Петрова", "Волков", "Соловьёва", "Васильев", "Зайцева", "Павлов",
]  # fmt: skip
LATIN_FOR_CYRILLIC = [
    "ivan", "anna", "maria", "alexey", "olga", "dmitry", "ekaterina", "sergey", "natalia",
    "mikhail", "tatiana", "andrey", "elena", "pavel", "yulia",
]  # fmt: skip
LAST_LATIN_FOR_CYRILLIC = [
    "ivanov", "smirnova", "kuznetsov", "popova", "sokolov", "lebedeva", "kozlov", "novikova",
    "morozov", "petrova", "volkov", "solovyova", "vasiliev", "zaitseva", "pavlov",
]  # fmt: skip
DOMAINS = [
    "example.com", "example.org", "travel.example", "mail.example.net", "agency.example",
    "пример.рф",
]  # fmt: skip
JOB_TITLES = [
    "FOUNDER", "Sales Manager", "product manager", "Head of Partnerships", "CEO", "Travel Agent",
    "Marketing Director", "  Account   Executive ", "Генеральный директор", "Менеджер по продажам",
    "Destination Specialist", "", "Owner", "Buyer", "Press officer",
]  # fmt: skip
COMPANIES = [
    "Example.com Ltd", "Blue Lagoon Tours", "Alpine Escapes GmbH", "Sunset Cruises S.p.A.",
    "Nordic Trails AB", "Globe & Co", "ООО «Турцентр»", "АО «Аэротур»", "Silk Road Travel",
    "Atlas Voyages", "Coral Reef Resorts", "Metro Business Travel", "", "Pegasus Incoming",
]  # fmt: skip
COMPANIES_RU = [
    "", "", "", "Пример Ком", "Голубая лагуна", "Альпийские каникулы", "Турцентр", "Аэротур",
    "Шёлковый путь",
]  # fmt: skip
CITIES = [
    ("London", "United Kingdom"), ("Moscow", "Russia"), ("Milan", "Italy"), ("Berlin", "Germany"),
    ("Москва", "Россия"), ("Санкт-Петербург", "Россия"), ("Paris", "France"), ("Madrid", "Spain"),
    ("Dubai", "United Arab Emirates"), ("Almaty", "Kazakhstan"), ("", ""), ("City", "Country"),
]  # fmt: skip
BIOS = [
    "",
    "Example.com Ltd is specialized in opera, music, cultural and sporting events in Italy and "
    "all over the world.- Example.com специализируется на опере, музыке, культурных и "
    "спортивных мероприятиях в Италии и во всем мире.",
    "Family-run incoming agency for groups and individuals.",
    "Мы организуем деловые поездки и инсентив-туры по всему миру.",
    'Award-winning "boutique" operator; tailor-made trips since 1998.',
    "Line one.\nLine two with a tab\tinside.",
]
CATEGORY_CODES = [
    "TO", "LEI", "LUX", "BIT", "EDU", "ADV", "MED", "CRU", "SKI", "BEA", "ECO", "HOT", "AVI",
    "TEC", "INS", "GOV",
]  # fmt: skip
VISITOR_TYPES = ["TRADE", "VIP", "PRESS", "STUDENT", "trade ", "XX"]
VISITOR_TYPE_WEIGHTS = [0.78, 0.05, 0.05, 0.08, 0.03, 0.01]
STATUSES = ["confirmed", "cancelled", "pending", "Cancelled"]
STATUS_WEIGHTS = [0.93, 0.03, 0.035, 0.005]


def _pick(rng: np.random.Generator, pool: list[str], n: int, p: list[float] | None = None):
    return pc.take(pa.array(pool, type=TEXT), pa.array(rng.choice(len(pool), size=n, p=p)))


def _join(*parts, sep: str = ""):
    return pc.binary_join_element_wise(*parts, pa.scalar(sep, TEXT))


def _s(value: str) -> pa.Scalar:
    return pa.scalar(value, TEXT)


def _where(mask: np.ndarray, left, right):
    return pc.if_else(pa.array(mask), left, right)


def _ids(prefix: str, numbers: np.ndarray, width: int = 7):
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers), TEXT), width=width, padding="0")
    return _join(_s(prefix), digits)


def _people(rng: np.random.Generator, n: int, prefix: str, bad_share: float) -> dict:
    cyrillic = rng.random(n) < 0.25
    first_l, last_l = rng.integers(0, len(FIRST_LATIN), n), rng.integers(0, len(LAST_LATIN), n)
    first_c, last_c = (
        rng.integers(0, len(FIRST_CYRILLIC), n),
        rng.integers(0, len(LAST_CYRILLIC), n),
    )
    first = _where(
        cyrillic,
        pc.take(pa.array(FIRST_CYRILLIC, TEXT), pa.array(first_c)),
        pc.take(pa.array(FIRST_LATIN, TEXT), pa.array(first_l)),
    )
    last = _where(
        cyrillic,
        pc.take(pa.array(LAST_CYRILLIC, TEXT), pa.array(last_c)),
        pc.take(pa.array(LAST_LATIN, TEXT), pa.array(last_l)),
    )
    local_first = _where(
        cyrillic,
        pc.take(pa.array(LATIN_FOR_CYRILLIC, TEXT), pa.array(first_c)),
        pc.utf8_lower(pc.take(pa.array(FIRST_LATIN, TEXT), pa.array(first_l))),
    )
    local_last = _where(
        cyrillic,
        pc.take(pa.array(LAST_LATIN_FOR_CYRILLIC, TEXT), pa.array(last_c)),
        pc.utf8_lower(pc.take(pa.array(LAST_LATIN, TEXT), pa.array(last_l))),
    )
    local_last = pc.replace_substring_regex(local_last, pattern=r"[^a-zü-ÿ]", replacement="")
    numbers = rng.permutation(n) + 1
    email = _join(
        local_first, _s("."), local_last, pc.cast(pa.array(numbers % 997), TEXT), _s("@"),
        _pick(rng, DOMAINS, n, [0.4, 0.2, 0.15, 0.1, 0.1, 0.05]),
    )  # fmt: skip
    messy = rng.random(n)
    email = _where(messy < 0.05, pc.utf8_upper(email), email)
    email = _where((messy >= 0.05) & (messy < 0.08), _join(_s("  "), email, _s(" ")), email)
    first = _where(rng.random(n) < 0.03, _join(_s(" "), first, _s("  ")), first)

    phone_digits = pc.cast(pa.array(rng.integers(10**9, 10**10, n)), TEXT)
    phone_style = rng.integers(0, 5, n)
    phone = _where(phone_style == 0, _join(_s("+44 "), phone_digits), phone_digits)
    phone = _where(
        phone_style == 1, _join(_s("8 (495) "), pc.utf8_slice_codeunits(phone_digits, 0, 7)), phone
    )
    phone = _where(phone_style == 2, _join(_s("00 7 "), phone_digits), phone)
    phone = _where(phone_style == 3, pa.scalar(None, TEXT), phone)

    city_index = rng.integers(0, len(CITIES), n)
    columns = {
        "reg_id": _ids(prefix, numbers),
        "first_name": first,
        "last_name": last,
        "email": email,
        "phone": phone,
        "job_title": _pick(rng, JOB_TITLES, n),
        "company": _pick(rng, COMPANIES, n),
        "bio": _pick(rng, BIOS, n),
        "city": pc.take(pa.array([c for c, _ in CITIES], TEXT), pa.array(city_index)),
        "country": pc.take(pa.array([c for _, c in CITIES], TEXT), pa.array(city_index)),
        "status": _pick(rng, STATUSES, n, STATUS_WEIGHTS),
        "is_test": pa.array(np.where(rng.random(n) < 0.005, "1", "0"), type=TEXT),
    }
    _spoil(rng, columns, n, bad_share)
    return columns


def _spoil(rng: np.random.Generator, columns: dict, n: int, bad_share: float) -> None:
    """Make about ``bad_share`` of the rows bad, each in one of the usual ways."""
    bad = np.flatnonzero(rng.random(n) < bad_share)
    kinds = rng.integers(0, 6, len(bad))

    def spoil(column: str, rows: np.ndarray, values) -> None:
        mask = np.zeros(n, dtype=bool)
        mask[rows] = True
        current = columns[column]
        replacement = values if isinstance(values, pa.Scalar) else pa.array(values, type=TEXT)
        if not isinstance(replacement, pa.Scalar):
            full = pa.array(np.full(n, None, dtype=object), type=TEXT)
            full = pc.replace_with_mask(full, pa.array(mask), replacement)
            columns[column] = pc.if_else(pa.array(mask), full, current)
        else:
            columns[column] = pc.if_else(pa.array(mask), replacement, current)

    spoil("email", bad[kinds == 0], _s("no-at-sign.example.com"))
    spoil("email", bad[kinds == 1], _s("broken@"))
    admin_rows = bad[kinds == 2]
    spoil("reg_id", admin_rows, [f"Admin{i}" for i in range(len(admin_rows))])
    repeat_rows = bad[kinds == 3]
    if len(repeat_rows) and n > 1:
        first_ids = pc.take(columns["reg_id"], pa.array((repeat_rows + 1) % n)).to_pylist()
        spoil("reg_id", repeat_rows, first_ids)
    spoil("job_title", bad[kinds == 4], _s("Senior Vice President " * 8))
    spoil("last_name", bad[kinds == 5], _s(""))


def _categories(rng: np.random.Generator, n: int, unknown_share: float):
    """0 to 5 category codes per row, ';'-separated, now and then with spaces, lower case or an
    unknown code."""
    counts = rng.choice(6, size=n, p=[0.1, 0.25, 0.25, 0.2, 0.1, 0.1])
    codes = pa.array(CATEGORY_CODES, TEXT)
    result = pa.array(np.full(n, "", dtype=object), type=TEXT)
    for slot in range(5):
        picked = pc.take(codes, pa.array(rng.integers(0, len(CATEGORY_CODES), n)))
        candidate = _join(result, _s(";"), picked) if slot else picked
        result = _where(counts > slot, candidate, result)
    odd = rng.random(n)
    result = _where(odd < 0.02, pc.utf8_lower(result), result)
    result = _where((odd >= 0.02) & (odd < 0.04), pc.replace_substring(result, ";", "; "), result)
    unknown = rng.random(n) < unknown_share
    return _where(unknown, _join(result, _s(";ZZZ")), result)


def _dates(rng: np.random.Generator, n: int, bad_share: float):
    days = pa.array(np.datetime64("2025-09-01") + rng.integers(0, 200, n).astype("timedelta64[D]"))
    dotted = pc.strftime(days, format="%d.%m.%Y").cast(TEXT)
    iso = pc.strftime(days, format="%Y-%m-%d").cast(TEXT)
    style = rng.random(n)
    result = _where(style < 0.2, iso, dotted)
    return _where(style > 1 - bad_share, _s("31/02/2026"), result)


def _updated(rng: np.random.Generator, n: int):
    stamps = np.datetime64("2026-01-01T00:00:00") + rng.integers(0, 90 * 86400, n).astype(
        "timedelta64[s]"
    )
    return pc.strftime(pa.array(stamps), format="%Y-%m-%d %H:%M:%S").cast(TEXT)


def _frame(columns: dict) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    data = {name: pd.array(values, dtype="str") for name, values in columns.items()}
    return pd.DataFrame(data, index=pd.RangeIndex(1, n + 1, name="source_row"))


def visitors(n: int, *, seed: int = 7, bad_share: float = 0.01) -> pd.DataFrame:
    """Visitor registrations (table ``visitors`` of the demo partner database)."""
    rng = np.random.default_rng(seed)
    columns = _people(rng, n, "V", bad_share)
    columns["company_ru"] = _pick(rng, COMPANIES_RU, n)
    columns["categories"] = _categories(rng, n, bad_share / 2)
    columns["visitor_type"] = _pick(rng, VISITOR_TYPES, n, VISITOR_TYPE_WEIGHTS)
    columns["registered_on"] = _dates(rng, n, bad_share / 2)
    columns["updated_at"] = _updated(rng, n)
    order = [
        "reg_id", "first_name", "last_name", "email", "phone", "job_title", "company",
        "company_ru", "bio", "city", "country", "categories", "visitor_type", "registered_on",
        "status", "is_test", "updated_at",
    ]  # fmt: skip
    return _frame({name: columns[name] for name in order})


def exhibitors(n: int, *, seed: int = 11, bad_share: float = 0.01) -> pd.DataFrame:
    """Exhibitor contacts (the ``exhibitors_*.csv`` files of the demo drop)."""
    rng = np.random.default_rng(seed)
    columns = _people(rng, n, "E", bad_share)
    columns["exhibitor_id"] = pc.cast(pa.array(np.arange(n) + 65000), TEXT)
    columns["categories"] = _categories(rng, n, bad_share / 2)
    columns["updated_at"] = _updated(rng, n)
    order = [
        "reg_id", "exhibitor_id", "first_name", "last_name", "email", "phone", "job_title",
        "company", "bio", "city", "country", "categories", "status", "is_test", "updated_at",
    ]  # fmt: skip
    return _frame({name: columns[name] for name in order})


def representatives(
    n: int, *, exhibitor_count: int = 500, seed: int = 13, bad_share: float = 0.01
) -> pd.DataFrame:
    """Exhibitors' staff (the ``representatives_*.csv`` files), each tied to an exhibitor id."""
    rng = np.random.default_rng(seed)
    columns = _people(rng, n, "R", bad_share)
    columns["exhibitor_id"] = pc.cast(pa.array(rng.integers(0, exhibitor_count, n) + 65000), TEXT)
    columns["updated_at"] = _updated(rng, n)
    order = [
        "reg_id", "exhibitor_id", "first_name", "last_name", "email", "phone", "job_title",
        "company", "bio", "city", "country", "status", "is_test", "updated_at",
    ]  # fmt: skip
    return _frame({name: columns[name] for name in order})


GENERATORS = {"visitor": visitors, "exhibitor": exhibitors, "representative": representatives}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_type", choices=sorted(GENERATORS))
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--bad-share", type=float, default=0.01)
    parser.add_argument("--out", type=Path, required=True, help=".csv or .parquet")
    args = parser.parse_args(argv)
    kwargs = {"bad_share": args.bad_share}
    if args.seed is not None:
        kwargs["seed"] = args.seed
    frame = GENERATORS[args.data_type](args.rows, **kwargs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.suffix == ".parquet":
        frame.to_parquet(args.out, index=False)
    else:
        frame.to_csv(args.out, index=False)
    print(f"wrote {len(frame):,} {args.data_type} rows to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
