//! Synthetic raw history for benchmarks (`greenops-bench what-if`): rows written straight into
//! the `heartbeats` table of every live machine, without accounting — only what reads raw
//! heartbeats (the what-if rollup and savings) may be measured on them. PostgreSQL only.

use sqlx::postgres::PgPoolOptions;

/// Writes `count` heartbeats per live machine, `interval_ms` apart from `from_ms` on: each
/// machine idles in cycles of `cycle` heartbeats (idle grows by one interval per heartbeat,
/// then input resets it), the cycles of different machines shifted. Returns the rows written.
pub async fn fill_raw_heartbeats(
    url: &str,
    from_ms: i64,
    count: i64,
    interval_ms: i64,
    cycle: i64,
    say: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<u64> {
    anyhow::ensure!(
        url.starts_with("postgres://") || url.starts_with("postgresql://"),
        "synthetic history is written to PostgreSQL only"
    );
    anyhow::ensure!(
        interval_ms > 0 && cycle > 0 && count > 0,
        "nothing to write"
    );
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await?;
    let mut written = 0u64;
    // An hour at a time, each in the order heartbeats arrive (by time, then machine), as a
    // real fleet writes them: the BRIN index on `sent_at_ms` then finds an hour's rows
    // without reading the others (machine by machine, every range would span the chunk).
    let per_chunk = (3_600_000 / interval_ms).max(1);
    let mut said = std::time::Instant::now();
    let mut start = 0i64;
    while start < count {
        let end = (start + per_chunk).min(count);
        let done = sqlx::query(
            "INSERT INTO heartbeats (sent_at_ms, seq, machine, idle_ms, observed_ms, state)
             SELECT $1 + g * $2, g + 1, m.num, CAST(((g + m.num * 37) % $3) * $2 AS INTEGER),
                    CAST($2 AS INTEGER), 0
             FROM machines m CROSS JOIN generate_series($4::BIGINT, $5::BIGINT - 1) AS g
             WHERE m.retired_at_ms IS NULL
             ORDER BY g, m.num",
        )
        .bind(from_ms)
        .bind(interval_ms)
        .bind(cycle)
        .bind(start)
        .bind(end)
        .execute(&pool)
        .await?
        .rows_affected();
        written += done;
        if said.elapsed().as_secs() >= 10 || end == count {
            said = std::time::Instant::now();
            say(&format!(
                "synthetic history: {written} raw heartbeats written ({end} of {count} per machine)"
            ));
        }
        start = end;
    }
    // The high-water mark the what-if rollup reads to find machines with new heartbeats.
    sqlx::query(
        "UPDATE machines SET last_sent_at_ms = GREATEST(COALESCE(last_sent_at_ms, $1), $1)
         WHERE retired_at_ms IS NULL",
    )
    .bind(from_ms + (count - 1) * interval_ms)
    .execute(&pool)
    .await?;
    // What autovacuum does to an insert-only table some time later: statistics, and every
    // range of the BRIN index on `sent_at_ms` summarized (a range left unsummarized, or with
    // a half-done summary, matches every query by time).
    say("synthetic history: VACUUM ANALYZE heartbeats");
    sqlx::query("VACUUM ANALYZE heartbeats")
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(written)
}
