-- Exact changed primary keys for `verify --incremental`, beside the Bloom filters of change ids
-- (reshard_bloom_filters). See README.md for the rules these files follow and
-- src/verify/README.md ("Incremental semantics") for how the two relate.

-- One row per change epoch and source shard. An epoch is opened by a verify run, in the same
-- transaction as the empty Bloom generation it starts with: epoch = that generation's number, so
-- generation g belongs to the greatest epoch <= g. key_count counts the keys recorded in the
-- epoch; once it would pass the bound, overflowed = 1 and no more keys are recorded (the epoch's
-- key list is then incomplete and verify falls back to the Bloom filter).
CREATE TABLE IF NOT EXISTS reshard_change_epochs (
  job_id      BIGINT UNSIGNED NOT NULL,
  shard       VARCHAR(191)    NOT NULL,
  epoch       INT UNSIGNED    NOT NULL,
  key_count   BIGINT UNSIGNED NOT NULL DEFAULT 0,
  overflowed  TINYINT(1)      NOT NULL DEFAULT 0,
  created_at  DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (job_id, shard, epoch)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The primary keys the tailer recorded, written in the transaction that writes Bloom generation
-- `generation` (write-ahead: before the changes are applied), one row per table and part of at
-- most 1 MiB. `pks` is a list of keys, each lenenc(length) + the key as a MySQL text-protocol
-- row payload (every column lenenc(len) + its canonical bytes, 0xFB for NULL: see
-- src/verify/changes.ts). The epoch of a row is the greatest epoch <= generation.
CREATE TABLE IF NOT EXISTS reshard_changed_keys (
  job_id      BIGINT UNSIGNED NOT NULL,
  shard       VARCHAR(191)    NOT NULL,
  generation  INT UNSIGNED    NOT NULL,
  table_name  VARCHAR(64)     NOT NULL,
  part        INT UNSIGNED    NOT NULL,
  key_count   INT UNSIGNED    NOT NULL,
  pks         LONGBLOB        NOT NULL,
  PRIMARY KEY (job_id, shard, generation, table_name, part)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
