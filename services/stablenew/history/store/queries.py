"""The SQL of the history's lists: a filter and a keyset position in, one statement out.

Paging is keyset on (create_time DESC, job_id DESC). Every filter has an index whose leading
column is the filter and whose next columns are (create_time, job_id), so a filtered page is a
range scan of one index that stops after page_size rows, whatever the page number. Several
states are read as one such scan per state, merged. The pack filter scans `job_packs`, which
holds one row per (pack, job) in that same order, so a job that mixes packs is found by each
of them at the cost of a single-pack one.

Text search (a case-insensitive substring of a prompt or the label) uses two ways, chosen per
query, because measurements on 1,000,000 records showed each failing where the other shines:
an FTS5 trigram index finds a rare word in about 2 ms but a common one in about 1 s (every match
is sorted by time); scanning the records newest first and testing a lowercase copy of the text
with instr() fills a page of a common word in about 4 ms but needs the whole table (about 300 ms)
for a rare one. So the trigram index is asked first for at most TEXT_INDEX_LIMIT matches: if there
are no more, those are the candidates (a few rowid lookups and a small sort); otherwise the word is
common and the ordered scan fills a page quickly. Words shorter than a trigram, or with LIKE
wildcards in them, always scan. The remaining slow case is a phrase made of very common words that
matches a few hundred records: the trigram lists of its common trigrams are long (about 120 ms at
1,000,000 records). The trigram index (detail=none) costs about 90 bytes per job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stablenew.contract.job_row import to_micros
from stablenew.contract.model import JobState
from stablenew.history.domain import JobFilter
from stablenew.history.store.rows import JOB_ROW_COLUMNS

# The trigram index is used when a word has at most this many matches (see the docstring).
TEXT_INDEX_LIMIT = 2000
MIN_TRIGRAM_LENGTH = 3

# Every column of a record, qualified: the pack scan joins a table with columns of the same names.
JOB_SELECT = ", ".join(f"jobs.{name}" for name in ("id", *JOB_ROW_COLUMNS))


@dataclass(frozen=True)
class Query:
    """One statement and its parameters."""

    sql: str
    params: list[Any]


def _newest_first(table: str) -> str:
    return f"ORDER BY {table}.create_time DESC, {table}.job_id DESC"


def trigram_lookup(needle: str) -> Query | None:
    """The records whose search text holds `needle`, from the trigram index, at most one more
    than TEXT_INDEX_LIMIT; None when the index cannot look the needle up."""
    if len(needle) < MIN_TRIGRAM_LENGTH or "%" in needle or "_" in needle:
        return None
    return Query("SELECT rowid FROM search_index WHERE text LIKE ? LIMIT ?",
                 [f"%{needle}%", TEXT_INDEX_LIMIT + 1])


def list_query(f: JobFilter, after: tuple[int, str] | None, limit: int,
               candidates: list[int] | None) -> Query:
    """Up to `limit` records matching `f`, newest first, after a keyset position (create_time
    micros, job_id). `candidates`: the only records that can match the text (from the trigram
    index), or None when the text is to be tested row by row."""
    if candidates is not None:
        # A rare word: the few records that have it, sorted (rowid lookups only).
        conditions, params = _conditions(f, after, text=False, states=True, pack=True)
        sql = f"SELECT {JOB_SELECT} FROM jobs NOT INDEXED WHERE jobs.id IN " \
              "(SELECT value FROM json_each(?))"
        return Query(_where(sql, conditions, joined=True) + f" {_newest_first('jobs')} LIMIT ?",
                     [json.dumps(candidates), *params, limit])
    if f.prompt_pack_id:
        # The pack's rows of job_packs in list order, each joined to its record.
        conditions, params = _conditions(f, after, text=True, states=True, pack=False,
                                         keyed="job_packs")
        sql = _where(f"SELECT {JOB_SELECT} FROM job_packs CROSS JOIN jobs "
                     "WHERE jobs.id = job_packs.job_ref AND job_packs.pack_id = ?",
                     conditions, joined=True)
        return Query(sql + f" {_newest_first('job_packs')} LIMIT ?",
                     [f.prompt_pack_id, *params, limit])
    index, driving, driving_params = _driving_index(f)
    conditions, params = _conditions(f, after, text=True, states=index != "jobs_state",
                                     pack=False)
    if len(driving) > 1:
        # Several states: one ordered range scan per state, merged.
        parts = []
        merged_params: list[Any] = []
        for term, term_params in zip(driving, driving_params, strict=True):
            parts.append(_where(f"SELECT id FROM (SELECT jobs.id FROM jobs INDEXED BY {index}",
                                [term, *conditions])
                         + f" {_newest_first('jobs')} LIMIT ?)")
            merged_params += [*term_params, *params, limit]
        sql = (f"SELECT {JOB_SELECT} FROM jobs NOT INDEXED WHERE jobs.id IN ("
               + " UNION ALL ".join(parts) + f") {_newest_first('jobs')} LIMIT ?")
        return Query(sql, [*merged_params, limit])
    sql = _where(f"SELECT {JOB_SELECT} FROM jobs INDEXED BY {index}", [*driving, *conditions])
    return Query(sql + f" {_newest_first('jobs')} LIMIT ?",
                 [*(p for group in driving_params for p in group), *params, limit])


def _where(select: str, conditions: list[str], joined: bool = False) -> str:
    if not conditions:
        return select
    keyword = " AND " if joined else " WHERE "
    return select + keyword + " AND ".join(conditions)


def _driving_index(f: JobFilter) -> tuple[str, list[str], list[list[Any]]]:
    """The index of `jobs` a filtered list scans, its equality terms (one per scan) and their
    values (the pack filter scans job_packs instead)."""
    if f.states:
        states = sorted(set(f.states))
        return "jobs_state", ["jobs.state = ?"] * len(states), [[int(s)] for s in states]
    if f.bookmarked:
        return "jobs_bookmarked", ["jobs.bookmarked = 1"], [[]]
    if f.run_mode:
        return "jobs_run_mode", ["jobs.run_mode = ?"], [[int(f.run_mode)]]
    if f.prompt_source:
        return "jobs_prompt_source", ["jobs.prompt_source = ?"], [[int(f.prompt_source)]]
    if f.source:
        return "jobs_source", ["jobs.source = ?"], [[int(f.source)]]
    return "jobs_created", [], []


def _conditions(f: JobFilter, after: tuple[int, str] | None, *, text: bool, states: bool,
                pack: bool, keyed: str = "jobs") -> tuple[list[str], list[Any]]:
    """The filters as row conditions: the states unless the scan is per state, the text unless
    the trigram index chose the candidates, the pack unless job_packs drives the scan. The time
    range and the keyset position are on `keyed`, the table whose order the scan follows."""
    conditions: list[str] = []
    params: list[Any] = []
    if states and f.states:
        unique = sorted({int(state) for state in f.states})
        conditions.append(f"jobs.state IN ({', '.join('?' * len(unique))})")
        params += unique
    for column, value in (("run_mode", f.run_mode), ("source", f.source),
                          ("prompt_source", f.prompt_source)):
        if value:
            conditions.append(f"jobs.{column} = ?")
            params.append(int(value))
    if pack and f.prompt_pack_id:
        conditions.append("EXISTS (SELECT 1 FROM job_packs WHERE job_packs.job_ref = jobs.id "
                          "AND job_packs.pack_id = ?)")
        params.append(f.prompt_pack_id)
    if f.bookmarked is not None:
        conditions.append("jobs.bookmarked = ?")
        params.append(int(f.bookmarked))
    if f.created_after is not None:
        conditions.append(f"{keyed}.create_time >= ?")
        params.append(to_micros(f.created_after))
    if f.created_before is not None:
        conditions.append(f"{keyed}.create_time < ?")
        params.append(to_micros(f.created_before))
    if after is not None:
        conditions.append(f"({keyed}.create_time, {keyed}.job_id) < (?, ?)")
        params += [after[0], after[1]]
    if text and f.needle:
        conditions.append("instr((SELECT text FROM search WHERE search.job_ref = jobs.id), ?) > 0")
        params.append(f.needle)
    return conditions, params


def prunable(state: JobState, columns: str, older_than: datetime | None,
             keep_bookmarked: bool) -> Query:
    """The records of one state that pruning may remove (a range scan of jobs_state)."""
    sql = f"SELECT {columns} FROM jobs INDEXED BY jobs_state WHERE state = ?"
    params: list[Any] = [int(state)]
    if older_than is not None:
        sql += " AND create_time < ?"
        params.append(to_micros(older_than))
    if keep_bookmarked:
        sql += " AND bookmarked = 0"
    return Query(sql, params)
