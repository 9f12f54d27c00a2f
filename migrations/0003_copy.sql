-- Copy control: commands a running `reshard copy` reads while it works. See README.md for the
-- rules these files follow.

-- One row per job, written by `reshard copy --pause | --resume | --set-rate` and polled by every
-- copy worker about once a second. A missing row means "not paused, rates from the command line".
-- paused: 1 stops every worker of the job from starting new chunks (chunks in flight finish).
-- rate / target_rate: rows per second per worker process, over all targets (rate) and per target
-- (target_rate); 0 means unlimited, NULL means use the worker's --rate / --target-rate.
CREATE TABLE IF NOT EXISTS reshard_copy_control (
  job_id       BIGINT UNSIGNED NOT NULL,
  paused       TINYINT(1)      NOT NULL DEFAULT 0,
  rate         BIGINT UNSIGNED NULL,
  target_rate  BIGINT UNSIGNED NULL,
  updated_at   DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  PRIMARY KEY (job_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
