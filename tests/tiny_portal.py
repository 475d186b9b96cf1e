"""A tiny portal for unit tests: the checked spec of tests/fixtures/tiny, plain SQLAlchemy models with the
columns the generator would make (on their own metadata, so FAB's shared Model.metadata is left alone), and
known rows on the database of the run (conftest.database_url: SQLite, or a fresh PostgreSQL schema)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from conftest import ROOT
from sqlalchemy import Boolean, Date, DateTime, ForeignKey, Integer, Numeric, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from app.schema import load_portal

SPEC, _problems = load_portal(ROOT / "tests" / "fixtures" / "tiny")
assert not _problems, _problems


class Base(DeclarativeBase):
    pass


class Site(Base):
    __tablename__ = "site"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    region: Mapped[str | None] = mapped_column(String(5))


class Job(Base):
    __tablename__ = "job"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("site.id"))
    site = relationship(Site)
    owner_id: Mapped[int | None] = mapped_column(Integer)
    phone: Mapped[str | None] = mapped_column(String(30))
    email: Mapped[str | None] = mapped_column(String(100))
    cost: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    hours: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str | None] = mapped_column(String(4))
    urgent: Mapped[bool | None] = mapped_column(Boolean)
    done_on: Mapped[dt.date | None] = mapped_column(Date)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


MODELS = {"Site": Site, "Job": Job}
SITES = [(1, "北区工地", "north"), (2, "South yard", "south"), (3, "No region", None)]


def job_rows() -> list[dict]:
    """60 jobs spread over sites, owners, statuses and dates across month, quarter and year ends; some blanks."""
    rows = []
    day0 = dt.date(2025, 12, 20)
    for n in range(1, 61):
        start = dt.datetime(2025, 12, 30, 8) + dt.timedelta(hours=13 * n)
        rows.append(dict(
            id=n, title=f"job {n}", site_id=None if n % 11 == 0 else SITES[n % 3][0], owner_id=None if n % 13 == 0 else n % 3 + 1,
            phone=f"1380000{n:04d}", email=f"user{n}@example.com",
            cost=None if n % 7 == 0 else Decimal(n * 37 % 500) + Decimal("0.25") * (n % 4),
            hours=None if n % 9 == 0 else 8 if n % 2 else n % 12, status="open" if n % 4 else "done",
            urgent=n % 5 == 0, done_on=None if n % 10 == 0 else day0 + dt.timedelta(days=n * 3),
            started_at=None if n % 8 == 0 else start, ended_at=None if n % 6 == 0 else start + dt.timedelta(minutes=45 * n)))
    return rows


@dataclass
class TinyDatabase:
    engine: object
    rows: list[dict]

    def session(self) -> Session:
        return Session(self.engine)


def tiny_database(tmp_path_factory, name: str) -> TinyDatabase:
    from conftest import database_url

    engine = create_engine(database_url(tmp_path_factory, name))
    Base.metadata.create_all(engine)
    rows = job_rows()
    with Session(engine) as session, session.begin():
        session.add_all(Site(id=i, name=n, region=r) for i, n, r in SITES)
        session.flush()
        session.add_all(Job(**row) for row in rows)
    return TinyDatabase(engine, rows)


@dataclass
class RoleName:
    name: str


@dataclass
class User:
    id: int | None
    roles: list

    @classmethod
    def with_roles(cls, user_id, *names):
        return cls(user_id, [RoleName(n) for n in names])
