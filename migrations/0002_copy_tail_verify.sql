-- Copy, binlog tail and verify state. See README.md for the rules these files follow.

-- One row per (job, source shard, table). low_watermark is the lastPk below which every row is
-- copied, as a JSON-encoded tuple (e.g. ["42","abc"]); NULL means nothing copied yet. It only
-- advances over contiguous finished chunks, in the same transaction as rows_copied.
-- state: pending, copying, done.
CREATE TABLE IF NOT EXISTS reshard_copy_checkpoints (
  job_id         BIGINT UNSIGNED NOT NULL,
  source_shard   VARCHAR(191)    NOT NULL,
  table_name     VARCHAR(64)     NOT NULL,
  low_watermark  LONGTEXT        NULL,
  rows_copied    BIGINT UNSIGNED NOT NULL DEFAULT 0,
  state          VARCHAR(16)     NOT NULL DEFAULT 'pending',
  updated_at     DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  PRIMARY KEY (job_id, source_shard, table_name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Chunks of a table's pk range, claimed by workers with SELECT … FOR UPDATE SKIP LOCKED.
-- lower_pk is exclusive and upper_pk inclusive, both JSON-encoded tuples; NULL is unbounded.
-- state: pending, claimed, done. A claim whose lease_expires_at passed may be taken over.
CREATE TABLE IF NOT EXISTS reshard_copy_chunks (
  job_id            BIGINT UNSIGNED NOT NULL,
  source_shard      VARCHAR(191)    NOT NULL,
  table_name        VARCHAR(64)     NOT NULL,
  chunk_id          INT UNSIGNED    NOT NULL,
  lower_pk          LONGTEXT        NULL,
  upper_pk          LONGTEXT        NULL,
  state             VARCHAR(16)     NOT NULL DEFAULT 'pending',
  worker_id         VARCHAR(191)    NULL,
  lease_expires_at  DATETIME(6)     NULL,
  attempts          INT UNSIGNED    NOT NULL DEFAULT 0,
  rows_copied       BIGINT UNSIGNED NOT NULL DEFAULT 0,
  updated_at        DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  PRIMARY KEY (job_id, source_shard, table_name, chunk_id),
  KEY ix_reshard_copy_chunks_claim (job_id, state, lease_expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Where the tailer is, per job, shard and direction (forward: old shards → new; reverse: new →
-- old, after cutover, for rollback). gtid_set/binlog_file/binlog_pos is the last applied
-- position; start_* is the position recorded when the copy started, where tailing begins.
CREATE TABLE IF NOT EXISTS reshard_binlog_positions (
  job_id            BIGINT UNSIGNED NOT NULL,
  shard             VARCHAR(191)    NOT NULL,
  direction         VARCHAR(8)      NOT NULL,
  gtid_set          LONGTEXT        NULL,
  binlog_file       VARCHAR(255)    NULL,
  binlog_pos        BIGINT UNSIGNED NULL,
  start_gtid_set    LONGTEXT        NULL,
  start_binlog_file VARCHAR(255)    NULL,
  start_binlog_pos  BIGINT UNSIGNED NULL,
  updated_at        DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  PRIMARY KEY (job_id, shard, direction)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- state: running, match, mismatch, failed.
CREATE TABLE IF NOT EXISTS reshard_verify_runs (
  job_id       BIGINT UNSIGNED NOT NULL,
  run_id       INT UNSIGNED    NOT NULL,
  state        VARCHAR(16)     NOT NULL DEFAULT 'running',
  mismatches   BIGINT UNSIGNED NOT NULL DEFAULT 0,
  detail       LONGTEXT        NULL,
  started_at   DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  finished_at  DATETIME(6)     NULL,
  PRIMARY KEY (job_id, run_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row per (run, table, bucket, side, shard): the partial count and sum64 (sum of 64-bit row
-- hashes mod 2^64) of one shard; a side's bucket is the sum over its shards. Per-shard rows let
-- a verify resume without recomputing finished shards. side: source, target.
-- status: pending, match, mismatch.
CREATE TABLE IF NOT EXISTS reshard_verify_buckets (
  job_id      BIGINT UNSIGNED NOT NULL,
  run_id      INT UNSIGNED    NOT NULL,
  table_name  VARCHAR(64)     NOT NULL,
  bucket      INT UNSIGNED    NOT NULL,
  side        VARCHAR(8)      NOT NULL,
  shard       VARCHAR(191)    NOT NULL,
  row_count   BIGINT UNSIGNED NOT NULL DEFAULT 0,
  sum64       BIGINT UNSIGNED NOT NULL DEFAULT 0,
  status      VARCHAR(16)     NOT NULL DEFAULT 'pending',
  updated_at  DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  PRIMARY KEY (job_id, run_id, table_name, bucket, side, shard)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Bloom filters of keys seen per job and shard. A new generation is written rather than a
-- filter rewritten in place, so a reader never sees a half-written bit array.
-- bits holds m bits; k is the number of hash functions; inserted counts added keys.
CREATE TABLE IF NOT EXISTS reshard_bloom_filters (
  job_id      BIGINT UNSIGNED   NOT NULL,
  shard       VARCHAR(191)      NOT NULL,
  generation  INT UNSIGNED      NOT NULL,
  bits        LONGBLOB          NOT NULL,
  k           SMALLINT UNSIGNED NOT NULL,
  m           BIGINT UNSIGNED   NOT NULL,
  inserted    BIGINT UNSIGNED   NOT NULL DEFAULT 0,
  updated_at  DATETIME(6)       NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  PRIMARY KEY (job_id, shard, generation)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
