-- Core: plans, jobs and their state machine, the job event log, routing versions and the
-- cutover journal. See README.md for the rules these files follow.

-- A plan is immutable and addressed by the sha256 of its canonical JSON; a job names the plan
-- it executes, so a command can refuse a plan whose hash or topologies drifted.
CREATE TABLE IF NOT EXISTS reshard_plans (
  plan_hash             CHAR(64)     NOT NULL,
  format_version        INT UNSIGNED NOT NULL,
  source_topology_hash  CHAR(64)     NOT NULL,
  target_topology_hash  CHAR(64)     NOT NULL,
  body                  LONGTEXT     NOT NULL,
  reshard_version       VARCHAR(64)  NOT NULL,
  created_at            DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (plan_hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- state is one of: planned, copying, catching-up, verified, cut-over, completed, rolled-back,
-- cancelled. It is VARCHAR rather than ENUM so a later state needs no ALTER; the allowed
-- transitions live in src/state/control.ts, and a state this binary does not know is refused.
CREATE TABLE IF NOT EXISTS reshard_jobs (
  id               BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  name             VARCHAR(191)    NOT NULL,
  plan_hash        CHAR(64)        NOT NULL,
  state            VARCHAR(32)     NOT NULL,
  reshard_version  VARCHAR(64)     NOT NULL,
  created_at       DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated_at       DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  PRIMARY KEY (id),
  UNIQUE KEY uk_reshard_jobs_name (name),
  KEY ix_reshard_jobs_state (state)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Append-only: rows are inserted, never updated or deleted. detail is JSON text.
CREATE TABLE IF NOT EXISTS reshard_job_events (
  id       BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  job_id   BIGINT UNSIGNED NOT NULL,
  at       DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  kind     VARCHAR(64)     NOT NULL,
  detail   LONGTEXT        NULL,
  PRIMARY KEY (id),
  KEY ix_reshard_job_events_job (job_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Every routing the estate has had. job_id is NULL for the routing recorded before any job.
-- active_slot is 1 for the active row and NULL otherwise, so the unique key allows exactly one
-- active routing (NULLs do not collide) and a cutover flips it in one transaction.
CREATE TABLE IF NOT EXISTS reshard_routing_versions (
  version       BIGINT UNSIGNED NOT NULL,
  job_id        BIGINT UNSIGNED NULL,
  routing       LONGTEXT        NOT NULL,
  routing_hash  CHAR(64)        NOT NULL,
  active        TINYINT(1)      NOT NULL DEFAULT 0,
  active_slot   TINYINT AS (IF(active = 1, 1, NULL)) STORED,
  created_at    DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (version),
  UNIQUE KEY uk_reshard_routing_versions_active (active_slot),
  KEY ix_reshard_routing_versions_job (job_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Write-ahead journal of cutover (and rollback) steps: a step is recorded as 'started' before it
-- runs and 'done' or 'failed' after, so a crashed cutover can be resumed or undone in reverse.
CREATE TABLE IF NOT EXISTS reshard_cutover_journal (
  id       BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  job_id   BIGINT UNSIGNED NOT NULL,
  step     VARCHAR(64)     NOT NULL,
  state    VARCHAR(16)     NOT NULL,
  detail   LONGTEXT        NULL,
  at       DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (id),
  KEY ix_reshard_cutover_journal_job (job_id, step, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
