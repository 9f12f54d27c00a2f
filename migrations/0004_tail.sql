-- Tailer status. See README.md for the rules these files follow.

-- Live state of each tailer stream, for `reshard status` and cutover: refreshed every few seconds
-- by `reshard tail` (src/binlog/status.ts). Positions stay in reshard_binlog_positions; this
-- table holds what changes every second. lag_seconds is how far the targets are behind the
-- source (from binlog event timestamps and heartbeats); events/rows per second are read rates
-- over the last 5 s; last_event_at is the tailer's clock when it last heard from the source.
-- state: starting, running, reconnecting, stopped, failed. tailer is host:pid of the process.
CREATE TABLE IF NOT EXISTS reshard_tail_status (
  job_id             BIGINT UNSIGNED NOT NULL,
  shard              VARCHAR(191)    NOT NULL,
  direction          VARCHAR(8)      NOT NULL,
  state              VARCHAR(16)     NOT NULL,
  lag_seconds        DECIMAL(12,3)   NOT NULL DEFAULT 0,
  events_per_second  DECIMAL(14,1)   NOT NULL DEFAULT 0,
  rows_per_second    DECIMAL(14,1)   NOT NULL DEFAULT 0,
  last_event_at      DATETIME(6)     NULL,
  tailer             VARCHAR(255)    NOT NULL,
  updated_at         DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  PRIMARY KEY (job_id, shard, direction)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
