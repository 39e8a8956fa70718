"""The history database's schema: one script per version, keyed on PRAGMA user_version
(runtime.sqlite_db applies the ones a database has not had yet, each in its own transaction).

A script is never edited once released: a change is a new script that brings existing databases
along."""

from __future__ import annotations

MIGRATIONS = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL UNIQUE,
        state INTEGER NOT NULL,
        run_mode INTEGER NOT NULL,
        source INTEGER NOT NULL,
        prompt_source INTEGER NOT NULL,
        prompt_pack_id TEXT NOT NULL,
        create_time INTEGER NOT NULL,
        bookmarked INTEGER NOT NULL,
        label TEXT NOT NULL,
        draft_id TEXT NOT NULL,
        draft_revision INTEGER NOT NULL,
        retry_of_job_id TEXT NOT NULL,
        priority INTEGER NOT NULL,
        stage_count INTEGER NOT NULL,
        has_adetailer INTEGER NOT NULL,
        has_upscale INTEGER NOT NULL,
        config_hash TEXT NOT NULL,
        start_time INTEGER,
        complete_time INTEGER,
        update_time INTEGER,
        error_message TEXT NOT NULL,
        payload_summary TEXT NOT NULL,
        runner_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        entry_count INTEGER NOT NULL,
        estimated_images INTEGER NOT NULL,
        queue_position INTEGER NOT NULL,
        cancel_requested INTEGER NOT NULL,
        -- 0 recorded from the queue, 1 from the queue without its submission, 2 imported.
        provenance INTEGER NOT NULL,
        metadata TEXT NOT NULL,
        progress BLOB
    );
    CREATE INDEX jobs_created ON jobs (create_time, job_id);
    CREATE INDEX jobs_state ON jobs (state, create_time, job_id);
    CREATE INDEX jobs_run_mode ON jobs (run_mode, create_time, job_id);
    CREATE INDEX jobs_source ON jobs (source, create_time, job_id);
    CREATE INDEX jobs_prompt_source ON jobs (prompt_source, create_time, job_id);
    CREATE INDEX jobs_pack ON jobs (prompt_pack_id, create_time, job_id)
        WHERE prompt_pack_id <> '';
    CREATE INDEX jobs_bookmarked ON jobs (create_time, job_id) WHERE bookmarked = 1;

    -- The normalized jobs exactly as queued, with the columns a history row shows.
    CREATE TABLE entries (
        job_ref INTEGER NOT NULL,
        entry_index INTEGER NOT NULL,
        prompt_pack_id TEXT NOT NULL,
        pack_name TEXT NOT NULL,
        row_index INTEGER NOT NULL,
        prompt TEXT NOT NULL,
        stage_plan TEXT NOT NULL,
        config_hash TEXT NOT NULL,
        entry BLOB NOT NULL,
        PRIMARY KEY (job_ref, entry_index)
    );
    -- What the runner reported per entry, in the order it reported them.
    CREATE TABLE results (
        job_ref INTEGER NOT NULL,
        ordinal INTEGER NOT NULL,
        entry_index INTEGER NOT NULL,
        prompt_pack_id TEXT NOT NULL,
        pack_name TEXT NOT NULL,
        row_index INTEGER NOT NULL,
        prompt TEXT NOT NULL,
        stage_plan TEXT NOT NULL,
        status INTEGER NOT NULL,
        error_message TEXT NOT NULL,
        executed_config_hash TEXT NOT NULL,
        duration_us INTEGER,
        PRIMARY KEY (job_ref, ordinal)
    ) WITHOUT ROWID;
    CREATE TABLE images (
        job_ref INTEGER NOT NULL,
        result_ordinal INTEGER NOT NULL,
        ordinal INTEGER NOT NULL,
        path TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        seed INTEGER NOT NULL,
        stage INTEGER NOT NULL,
        size_bytes INTEGER NOT NULL,
        runner_id TEXT NOT NULL,
        PRIMARY KEY (job_ref, result_ordinal, ordinal)
    ) WITHOUT ROWID;
    -- Append-only: one row per state change (the submission first). sequence is the queue
    -- event's; 0 for imported jobs.
    CREATE TABLE transitions (
        id INTEGER PRIMARY KEY,
        job_ref INTEGER NOT NULL,
        sequence INTEGER NOT NULL,
        from_state INTEGER NOT NULL,
        to_state INTEGER NOT NULL,
        time INTEGER NOT NULL,
        reason TEXT NOT NULL,
        runner_id TEXT NOT NULL,
        attempt INTEGER NOT NULL
    );
    CREATE INDEX transitions_job ON transitions (job_ref, id);
    -- The queue's events of each job (progress aside). The primary key on the sequence makes
    -- applying an event twice impossible, whatever happens above.
    CREATE TABLE events (
        sequence INTEGER PRIMARY KEY,
        job_ref INTEGER NOT NULL,
        cut INTEGER NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE INDEX events_job ON events (job_ref, sequence);
    -- Lowercase label and prompts, and a trigram index over them.
    CREATE TABLE search (job_ref INTEGER PRIMARY KEY, text TEXT NOT NULL);
    CREATE VIRTUAL TABLE search_index USING fts5(
        text, content='search', content_rowid='job_ref', tokenize='trigram', detail='none');
    CREATE TRIGGER search_inserted AFTER INSERT ON search BEGIN
        INSERT INTO search_index (rowid, text) VALUES (new.job_ref, new.text);
    END;
    CREATE TRIGGER search_deleted AFTER DELETE ON search BEGIN
        INSERT INTO search_index (search_index, rowid, text)
            VALUES ('delete', old.job_ref, old.text);
    END;
    CREATE TRIGGER search_updated AFTER UPDATE ON search BEGIN
        INSERT INTO search_index (search_index, rowid, text)
            VALUES ('delete', old.job_ref, old.text);
        INSERT INTO search_index (rowid, text) VALUES (new.job_ref, new.text);
    END;
    -- Jobs deleted while still in the queue: their later events are not recorded.
    CREATE TABLE tombstones (job_id TEXT PRIMARY KEY);
    -- Event ranges the queue had pruned before the history read them.
    CREATE TABLE gaps (
        first_sequence INTEGER NOT NULL,
        last_sequence INTEGER NOT NULL,
        time INTEGER NOT NULL
    );
    """,
    # 2: the pack filter finds a job by any prompt pack its prompts came from (the origin's, and
    # each entry's and result's: a job may mix packs), through a side table kept in the order
    # of a list, so a page is still one range scan. It replaces the index on the origin's pack.
    """
    CREATE TABLE job_packs (
        pack_id TEXT NOT NULL,
        create_time INTEGER NOT NULL,
        job_id TEXT NOT NULL,
        job_ref INTEGER NOT NULL,
        PRIMARY KEY (pack_id, create_time, job_id)
    ) WITHOUT ROWID;
    CREATE INDEX job_packs_job ON job_packs (job_ref);
    INSERT INTO job_packs (pack_id, create_time, job_id, job_ref)
        SELECT prompt_pack_id, create_time, job_id, id FROM jobs WHERE prompt_pack_id <> ''
        UNION
        SELECT entries.prompt_pack_id, jobs.create_time, jobs.job_id, jobs.id
            FROM entries JOIN jobs ON jobs.id = entries.job_ref
            WHERE entries.prompt_pack_id <> ''
        UNION
        SELECT results.prompt_pack_id, jobs.create_time, jobs.job_id, jobs.id
            FROM results JOIN jobs ON jobs.id = results.job_ref
            WHERE results.prompt_pack_id <> '';
    DROP INDEX jobs_pack;
    """,
    # 3: events the history could not record (an enum value it does not know, a value its
    # database cannot hold), kept as the queue sent them with the error, so that one bad event
    # never stops the ingestion (ingest.py) and nothing it carried is lost. `event` is the
    # serialized JobEvent, zlib-compressed.
    """
    CREATE TABLE quarantine (
        sequence INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL,
        time INTEGER NOT NULL,
        error TEXT NOT NULL,
        event BLOB NOT NULL
    );
    """,
    # 4: each record's image count, so a list shows it without reading the images (kept by the
    # writes of a record's results; counted here for the records written before).
    """
    ALTER TABLE jobs ADD COLUMN image_count INTEGER NOT NULL DEFAULT 0;
    UPDATE jobs SET image_count = (SELECT COUNT(*) FROM images WHERE images.job_ref = jobs.id);
    """,
    # 5: each result's ADetailer outcomes (EntryResult.adetailer_outcomes: per pass and image,
    # detailed or nothing detected), as compact JSON [[pass_index, model, image_index, outcome
    # number], ...]. Results recorded before keep none: what the runner reported was not kept.
    """
    ALTER TABLE results ADD COLUMN adetailer_outcomes TEXT NOT NULL DEFAULT '[]';
    """,
]
