-- Where each recorded changed key was applied: incremental verify looks a key up on the source
-- that recorded it and on the targets the tailer wrote it to, instead of on every shard (see
-- src/verify/README.md, "Incremental semantics"). `target` is the target shard the tailer's
-- operation went to; '' (rows written before this migration, or keys recorded without a target)
-- means "not known: look the key up on every shard".
--
-- Idempotent on MySQL 8 and MariaDB alike (rule 4 of README.md): the ALTER runs only when the
-- column is missing, chosen by a prepared statement, because MySQL has no ADD COLUMN IF NOT
-- EXISTS. The column and the new primary key come in one ALTER, so a crash leaves either both or
-- neither.
SET @reshard_ddl = (SELECT IF(COUNT(*) = 0, 'ALTER TABLE reshard_changed_keys ADD COLUMN target VARCHAR(191) NOT NULL DEFAULT '''' AFTER table_name, DROP PRIMARY KEY, ADD PRIMARY KEY (job_id, shard, generation, table_name, target, part)', 'DO 0') FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'reshard_changed_keys' AND COLUMN_NAME = 'target');
PREPARE reshard_stmt FROM @reshard_ddl;
EXECUTE reshard_stmt;
DEALLOCATE PREPARE reshard_stmt;
