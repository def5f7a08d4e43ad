# SPDX-License-Identifier: MIT
"""The schema as a list of migrations; `PRAGMA user_version` counts the ones applied."""

import sqlite3

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        application TEXT NOT NULL,
        params TEXT NOT NULL,
        priority INTEGER NOT NULL,
        status TEXT NOT NULL,
        created REAL NOT NULL,
        updated REAL NOT NULL,
        error TEXT NOT NULL DEFAULT '',
        timeout INTEGER
    );
    CREATE TABLE job_files (
        job_id INTEGER NOT NULL REFERENCES jobs(id),
        name TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        PRIMARY KEY (job_id, name)
    );
    CREATE TABLE tasks (
        id INTEGER PRIMARY KEY,
        job_id INTEGER NOT NULL REFERENCES jobs(id),
        idx INTEGER NOT NULL,
        kind TEXT NOT NULL,
        label TEXT NOT NULL,
        application TEXT NOT NULL,
        runs_on TEXT NOT NULL,
        params TEXT NOT NULL,
        inputs TEXT NOT NULL,
        outputs TEXT NOT NULL,
        status TEXT NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 0,
        slave TEXT,
        started REAL,
        finished REAL,
        updated REAL NOT NULL,
        error TEXT NOT NULL DEFAULT '',
        frames INTEGER NOT NULL DEFAULT 0,
        UNIQUE (job_id, idx)
    );
    CREATE INDEX tasks_runnable ON tasks(status, runs_on);
    CREATE TABLE task_deps (
        task_id INTEGER NOT NULL REFERENCES tasks(id),
        dep_id INTEGER NOT NULL REFERENCES tasks(id),
        PRIMARY KEY (task_id, dep_id)
    );
    CREATE TABLE task_failures (
        task_id INTEGER NOT NULL REFERENCES tasks(id),
        job_id INTEGER NOT NULL,
        slave TEXT NOT NULL,
        at REAL NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX task_failures_job ON task_failures(job_id, slave);
    CREATE TABLE blocklist (
        job_id INTEGER NOT NULL,
        slave TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (job_id, slave)
    );
    CREATE TABLE slaves (
        name TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        last_error TEXT NOT NULL DEFAULT '',
        last_seen REAL,
        info TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE files (
        sha256 TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        added REAL NOT NULL
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        job_id INTEGER,
        task_id INTEGER,
        slave TEXT,
        message TEXT NOT NULL,
        data TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_job ON events(job_id, id);
    """,
    # 2: tags a job requires of its slaves; an index for one job's tasks by status
    """
    ALTER TABLE jobs ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
    CREATE INDEX tasks_job_status ON tasks(job_id, status);
    CREATE INDEX job_files_sha ON job_files(sha256);
    """,
    # 3: what each attempt cost (busy seconds, energy, money); NULL where unknown
    """
    CREATE TABLE usage (
        task_id INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        job_id INTEGER NOT NULL,
        slave TEXT NOT NULL,
        started REAL,
        ended REAL NOT NULL,
        seconds REAL NOT NULL,
        watts REAL,
        joules REAL,
        price REAL,
        cost REAL,
        measured INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (task_id, attempt)
    );
    CREATE INDEX usage_job ON usage(job_id);
    CREATE INDEX usage_ended ON usage(ended);
    """,
    # 4: how a job wants its slaves ranked and limited: policy, deadline, minimums (JSON)
    """
    ALTER TABLE jobs ADD COLUMN scheduling TEXT NOT NULL DEFAULT '{}';
    """,
    # 5: each slave's benchmarks with their history; seconds_per_frame NULL: it failed
    """
    CREATE TABLE benchmarks (
        id INTEGER PRIMARY KEY,
        slave TEXT NOT NULL,
        application TEXT NOT NULL,
        version TEXT NOT NULL,
        engine TEXT NOT NULL,
        device TEXT NOT NULL,
        seconds_per_frame REAL,
        fingerprint TEXT NOT NULL,
        at REAL NOT NULL,
        error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX benchmarks_slave ON benchmarks(slave, id);
    """,
    # 6: task warnings (missing files, denoiser off) of each task's completed attempt, and
    # jobs submitted with --strict (a task with warnings fails the job)
    """
    CREATE TABLE task_warnings (
        task_id INTEGER NOT NULL,
        job_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        text TEXT NOT NULL,
        PRIMARY KEY (task_id, seq)
    );
    CREATE INDEX task_warnings_job ON task_warnings(job_id);
    ALTER TABLE jobs ADD COLUMN strict INTEGER NOT NULL DEFAULT 0;
    """,
    # 7: slaves found by Avahi: pending until accepted; a changed fingerprint is a warning
    """
    CREATE TABLE discovered (
        name TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        address TEXT NOT NULL,
        ssh_port INTEGER NOT NULL,
        claim_port INTEGER NOT NULL,
        macs TEXT NOT NULL,
        version TEXT NOT NULL,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        warning TEXT NOT NULL DEFAULT ''
    );
    """,
    # 8: when each slave entered its state (afarmctl slaves: time in state; power policy)
    """
    ALTER TABLE slaves ADD COLUMN state_since REAL;
    CREATE INDEX events_slave_state ON events(kind, at);
    """,
    # 9: the pool version of its application a job runs, chosen at submit ('' = none)
    """
    ALTER TABLE jobs ADD COLUMN app_version TEXT NOT NULL DEFAULT '';
    """,
    # 10: the pool versions each slave holds (as its hello and installs said) and those it
    # is quarantined for (failed acceptance test, with why), kept across master restarts
    """
    CREATE TABLE slave_versions (
        slave TEXT NOT NULL,
        package TEXT NOT NULL,
        version TEXT NOT NULL,
        installed INTEGER NOT NULL DEFAULT 0,
        quarantine TEXT NOT NULL DEFAULT '',
        at REAL NOT NULL,
        PRIMARY KEY (slave, package, version)
    );
    """,
]


def migrate(db: sqlite3.Connection) -> int:
    """Apply the migrations this database lacks, each in its own transaction."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"the database is schema version {version}, newer than this afarm"
            f" ({len(MIGRATIONS)}); upgrade afarm or restore a backup"
        )
    for n in range(version, len(MIGRATIONS)):
        db.execute("BEGIN IMMEDIATE")
        try:
            for stmt in MIGRATIONS[n].split(";"):
                if stmt.strip():
                    db.execute(stmt)
            db.execute(f"PRAGMA user_version = {n + 1}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    return len(MIGRATIONS)
