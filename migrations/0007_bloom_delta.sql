-- Change filters written as deltas (src/verify/changes.ts): a generation the tailer writes holds
-- only the filter bits of the changes it records, as a sorted list of bit positions
-- (`encoding` 1), not the whole bit array (`encoding` 0, as before). Readers OR every generation
-- of a range together, so the union is the same; a writer no longer reads, copies and rewrites
-- the whole filter (77 KiB, with its binlog images) every 50 ms per source. From time to time
-- the writer folds the deltas of the current epoch into one whole filter (compaction).
--
-- Idempotent on MySQL 8 and MariaDB alike (rule 4 of README.md): the ALTER runs only when the
-- column is missing, chosen by a prepared statement, because MySQL has no ADD COLUMN IF NOT
-- EXISTS. Rows written before this migration are whole filters: DEFAULT 0.
SET @reshard_ddl = (SELECT IF(COUNT(*) = 0, 'ALTER TABLE reshard_bloom_filters ADD COLUMN encoding TINYINT UNSIGNED NOT NULL DEFAULT 0 AFTER bits', 'DO 0') FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'reshard_bloom_filters' AND COLUMN_NAME = 'encoding');
PREPARE reshard_stmt FROM @reshard_ddl;
EXECUTE reshard_stmt;
DEALLOCATE PREPARE reshard_stmt;
