package store

// migrations are applied in order, each once, in a transaction; the index+1 is the
// schema version recorded in PRAGMA user_version. Never edit a migration that has
// shipped: append a new one.
var migrations = []string{
	`CREATE TABLE services (
		name       TEXT PRIMARY KEY,
		current    INTEGER NOT NULL,          -- the revision that should be running
		created_at TEXT NOT NULL,
		updated_at TEXT NOT NULL
	);
	CREATE TABLE revisions (
		service      TEXT NOT NULL,
		number       INTEGER NOT NULL,
		image        TEXT NOT NULL,           -- manifest digest
		image_name   TEXT NOT NULL,
		spec         TEXT NOT NULL,           -- the service's settings, JSON
		source       TEXT NOT NULL,           -- the spec file as applied
		applied_by   TEXT NOT NULL,
		git_commit   TEXT NOT NULL,
		created_at   TEXT NOT NULL,
		outcome      TEXT NOT NULL DEFAULT 'pending',
		detail       TEXT NOT NULL DEFAULT '',
		PRIMARY KEY (service, number)
	);
	CREATE TABLE rollouts (
		id            INTEGER PRIMARY KEY AUTOINCREMENT,
		service       TEXT NOT NULL,
		from_revision INTEGER NOT NULL,       -- 0 when the service is new
		to_revision   INTEGER NOT NULL,
		strategy      TEXT NOT NULL,
		state         TEXT NOT NULL,          -- running, succeeded, failed, rolled_back
		detail        TEXT NOT NULL DEFAULT '',
		owner         TEXT NOT NULL DEFAULT '',
		started_at    TEXT NOT NULL,
		finished_at   TEXT
	);
	CREATE UNIQUE INDEX one_running_rollout ON rollouts (service) WHERE state = 'running';
	CREATE TABLE events (
		id        INTEGER PRIMARY KEY AUTOINCREMENT,
		time      TEXT NOT NULL,
		service   TEXT NOT NULL,
		server_id TEXT NOT NULL DEFAULT '',
		type      TEXT NOT NULL,
		message   TEXT NOT NULL
	);
	CREATE INDEX events_service ON events (service, id);`,
	`CREATE TABLE pipelines (
		name       TEXT PRIMARY KEY,
		definition TEXT NOT NULL,             -- JSON, as applied
		updated_at TEXT NOT NULL
	);
	CREATE TABLE pipeline_runs (
		id          INTEGER PRIMARY KEY AUTOINCREMENT,
		pipeline    TEXT NOT NULL,
		commit_sha  TEXT NOT NULL,
		message     TEXT NOT NULL DEFAULT '',
		trigger     TEXT NOT NULL,            -- poll, webhook, manual
		state       TEXT NOT NULL,            -- queued, running, succeeded, failed, superseded, interrupted
		detail      TEXT NOT NULL DEFAULT '',
		created_at  TEXT NOT NULL,
		started_at  TEXT,
		finished_at TEXT
	);
	CREATE UNIQUE INDEX one_run_per_commit ON pipeline_runs (pipeline, commit_sha);
	CREATE TABLE pipeline_stages (
		run_id      INTEGER NOT NULL,
		name        TEXT NOT NULL,            -- bake, test, deploy, promote:<service>
		state       TEXT NOT NULL,            -- running, succeeded, failed, skipped
		log         TEXT NOT NULL DEFAULT '',
		started_at  TEXT NOT NULL,
		finished_at TEXT,
		PRIMARY KEY (run_id, name)
	);`,
	// 3: events name their subject's kind, and the rollout and step they belong to
	// and their tone, so a rollout's page is one query. Older rows get their kind
	// (pipeline events were the type "pipeline") and read as ''/0 for the rest.
	`ALTER TABLE events ADD COLUMN kind TEXT NOT NULL DEFAULT '';
	UPDATE events SET kind = CASE WHEN type = 'pipeline' THEN 'pipeline' ELSE 'service' END;
	ALTER TABLE events ADD COLUMN rollout_id INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE events ADD COLUMN step TEXT NOT NULL DEFAULT '';
	ALTER TABLE events ADD COLUMN tone TEXT NOT NULL DEFAULT '';
	CREATE INDEX events_rollout ON events (rollout_id, id);`,
}
