//! SQL for [`AdminStore`](super::AdminStore), identical on both backends (see
//! `operators_sql.rs` for the `$n` rule). Instantiated inside each backend's `ops` module,
//! after `operator_queries!` and `retention_queries!`, whose `Pool` alias, `user_of` and
//! `increment_of` it uses.
//!
//! Decimals are bound with the backend's encoder (NUMERIC on PostgreSQL, TEXT on SQLite) and
//! summed exactly: PostgreSQL sums in SQL (`grouped = true`), SQLite returns one row per
//! heartbeat and the sums are taken in Rust with `rust_decimal`.

macro_rules! admin_queries {
    ($store:ty, $row:ty, $dec:path, $enc:path, $grouped:expr) => {
        use $crate::accounting::Increment;
        use $crate::secrets::TokenHash;
        use $crate::store::admin::{
            AdminStore, ApiTokenInfo, EnrollmentTokenInfo, Grouping, Placement, PlacementPatch,
            PowerProfile, PowerProfileFields, ReportQuery, ReportRow, Site, SiteFields,
        };
        use $crate::store::CostTotal;
        use futures_util::TryStreamExt;

        /// A unique-constraint failure as `Conflict(what)`, anything else as usual.
        fn conflict_or(e: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
            match &e {
                sqlx::Error::Database(db) if db.is_unique_violation() => {
                    StoreError::Conflict(what())
                }
                _ => e.into(),
            }
        }

        const SITE_COLUMNS: &str = "s.id, s.name, s.currency, s.price_per_kwh,
            s.carbon_intensity_g_per_kwh, s.timezone,
            (SELECT COUNT(*) FROM machines m WHERE m.site_id = s.id AND m.retired_at_ms IS NULL)
                AS machines";
        const PROFILE_COLUMNS: &str = "p.id, p.name, p.idle_watts, p.active_watts,
            (SELECT COUNT(*) FROM machines m
             WHERE m.power_profile_id = p.id AND m.retired_at_ms IS NULL) AS machines";

        fn site_of(row: &$row) -> Result<Site, sqlx::Error> {
            Ok(Site {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                currency: row.try_get("currency")?,
                price_per_kwh: $dec(row, "price_per_kwh")?,
                carbon_intensity_g_per_kwh: $dec(row, "carbon_intensity_g_per_kwh")?,
                timezone: row.try_get("timezone")?,
                machines: row.try_get("machines")?,
            })
        }

        fn profile_of(row: &$row) -> Result<PowerProfile, sqlx::Error> {
            Ok(PowerProfile {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                idle_watts: $dec(row, "idle_watts")?,
                active_watts: $dec(row, "active_watts")?,
                machines: row.try_get("machines")?,
            })
        }

        async fn site_by_id(pool: &Pool, id: i64) -> Result<Option<Site>, sqlx::Error> {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {SITE_COLUMNS} FROM sites s WHERE s.id = $1"
            )))
            .bind(id)
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(site_of).transpose()
        }

        async fn profile_by_id(pool: &Pool, id: i64) -> Result<Option<PowerProfile>, sqlx::Error> {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {PROFILE_COLUMNS} FROM power_profiles p WHERE p.id = $1"
            )))
            .bind(id)
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(profile_of).transpose()
        }

        async fn placement_of(pool: &Pool, id: &str) -> Result<Option<Placement>, sqlx::Error> {
            let row = sqlx::query(
                "SELECT s.name AS site, m.department, p.name AS power_profile
                 FROM machines m
                 JOIN sites s ON s.id = m.site_id
                 JOIN power_profiles p ON p.id = m.power_profile_id
                 WHERE m.id = $1 AND m.retired_at_ms IS NULL",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?;
            row.map(|r| {
                Ok(Placement {
                    site: r.try_get("site")?,
                    department: r.try_get("department")?,
                    power_profile: r.try_get("power_profile")?,
                })
            })
            .transpose()
        }

        /// A decimal sum: in SQL when grouping, else the raw column.
        fn dec_col(column: &str) -> String {
            if $grouped {
                format!("SUM(h.{column}) AS {column}")
            } else {
                format!("h.{column} AS {column}")
            }
        }

        /// An integer sum (kept BIGINT on PostgreSQL, whose SUM(bigint) is NUMERIC).
        fn int_col(column: &str) -> String {
            if $grouped {
                format!("CAST(SUM(h.{column}) AS BIGINT) AS {column}")
            } else {
                format!("h.{column} AS {column}")
            }
        }

        fn token_info_of(row: &$row) -> Result<ApiTokenInfo, sqlx::Error> {
            Ok(ApiTokenInfo {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                username: row.try_get("username")?,
                created_at_ms: row.try_get("created_at_ms")?,
                revoked_at_ms: row.try_get("revoked_at_ms")?,
            })
        }

        #[async_trait::async_trait]
        impl AdminStore for $store {
            async fn list_sites(&self) -> Result<Vec<Site>, StoreError> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {SITE_COLUMNS} FROM sites s ORDER BY s.name"
                )))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.iter().map(site_of).collect::<Result<_, _>>()?)
            }

            async fn create_site(&self, site: &SiteFields, now_ms: i64) -> Result<Site, StoreError> {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO sites (name, currency, price_per_kwh, carbon_intensity_g_per_kwh,
                                        timezone, created_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                )
                .bind(&site.name)
                .bind(&site.currency)
                .bind($enc(site.price_per_kwh))
                .bind($enc(site.carbon_intensity_g_per_kwh))
                .bind(&site.timezone)
                .bind(now_ms)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| conflict_or(e, || format!("site '{}'", site.name)))?;
                site_by_id(&self.pool, id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("site {id}")))
            }

            async fn update_site(
                &self,
                id: i64,
                site: &SiteFields,
            ) -> Result<Option<(Site, Site)>, StoreError> {
                let Some(before) = site_by_id(&self.pool, id).await? else {
                    return Ok(None);
                };
                sqlx::query(
                    "UPDATE sites SET name = $1, currency = $2, price_per_kwh = $3,
                         carbon_intensity_g_per_kwh = $4, timezone = $5 WHERE id = $6",
                )
                .bind(&site.name)
                .bind(&site.currency)
                .bind($enc(site.price_per_kwh))
                .bind($enc(site.carbon_intensity_g_per_kwh))
                .bind(&site.timezone)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(|e| conflict_or(e, || format!("site '{}'", site.name)))?;
                let after = site_by_id(&self.pool, id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("site {id}")))?;
                Ok(Some((before, after)))
            }

            async fn delete_site(&self, id: i64) -> Result<Option<Site>, StoreError> {
                let (sites, machines, tokens): (i64, i64, i64) = sqlx::query_as(
                    "SELECT (SELECT COUNT(*) FROM sites),
                            (SELECT COUNT(*) FROM machines WHERE site_id = $1),
                            (SELECT COUNT(*) FROM enrollment_tokens WHERE site_id = $1)",
                )
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
                let Some(site) = site_by_id(&self.pool, id).await? else {
                    return Ok(None);
                };
                if machines > 0 || tokens > 0 {
                    return Err(StoreError::Conflict(format!(
                        "site '{}' is used by {machines} machine(s) (retired ones included) and \
                         {tokens} enrollment token(s); move them first",
                        site.name
                    )));
                }
                if sites <= 1 {
                    return Err(StoreError::Conflict(format!(
                        "site '{}' is the last site; create another one first",
                        site.name
                    )));
                }
                sqlx::query("DELETE FROM sites WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(Some(site))
            }

            async fn list_power_profiles(&self) -> Result<Vec<PowerProfile>, StoreError> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {PROFILE_COLUMNS} FROM power_profiles p ORDER BY p.name"
                )))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.iter().map(profile_of).collect::<Result<_, _>>()?)
            }

            async fn create_power_profile(
                &self,
                profile: &PowerProfileFields,
                now_ms: i64,
            ) -> Result<PowerProfile, StoreError> {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO power_profiles (name, idle_watts, active_watts, created_at_ms)
                     VALUES ($1, $2, $3, $4) RETURNING id",
                )
                .bind(&profile.name)
                .bind($enc(profile.idle_watts))
                .bind($enc(profile.active_watts))
                .bind(now_ms)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| conflict_or(e, || format!("power profile '{}'", profile.name)))?;
                profile_by_id(&self.pool, id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("power profile {id}")))
            }

            async fn update_power_profile(
                &self,
                id: i64,
                profile: &PowerProfileFields,
            ) -> Result<Option<(PowerProfile, PowerProfile)>, StoreError> {
                let Some(before) = profile_by_id(&self.pool, id).await? else {
                    return Ok(None);
                };
                sqlx::query(
                    "UPDATE power_profiles SET name = $1, idle_watts = $2, active_watts = $3
                     WHERE id = $4",
                )
                .bind(&profile.name)
                .bind($enc(profile.idle_watts))
                .bind($enc(profile.active_watts))
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(|e| conflict_or(e, || format!("power profile '{}'", profile.name)))?;
                let after = profile_by_id(&self.pool, id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("power profile {id}")))?;
                Ok(Some((before, after)))
            }

            async fn delete_power_profile(&self, id: i64) -> Result<Option<PowerProfile>, StoreError> {
                let (profiles, machines): (i64, i64) = sqlx::query_as(
                    "SELECT (SELECT COUNT(*) FROM power_profiles),
                            (SELECT COUNT(*) FROM machines WHERE power_profile_id = $1)",
                )
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
                let Some(profile) = profile_by_id(&self.pool, id).await? else {
                    return Ok(None);
                };
                if machines > 0 {
                    return Err(StoreError::Conflict(format!(
                        "power profile '{}' is used by {machines} machine(s) (retired ones \
                         included); move them first",
                        profile.name
                    )));
                }
                if profiles <= 1 {
                    return Err(StoreError::Conflict(format!(
                        "power profile '{}' is the last one; create another one first",
                        profile.name
                    )));
                }
                sqlx::query("DELETE FROM power_profiles WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(Some(profile))
            }

            async fn place_machine(
                &self,
                id: &str,
                patch: &PlacementPatch,
            ) -> Result<Option<(Placement, Placement)>, StoreError> {
                let Some(before) = placement_of(&self.pool, id).await? else {
                    return Ok(None);
                };
                let site = patch.site.as_deref().unwrap_or(&before.site);
                let profile = patch.power_profile.as_deref().unwrap_or(&before.power_profile);
                let department = patch.department.as_deref().unwrap_or(&before.department);
                let site_id: i64 = sqlx::query_scalar("SELECT id FROM sites WHERE name = $1")
                    .bind(site)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("site '{site}'")))?;
                let profile_id: i64 =
                    sqlx::query_scalar("SELECT id FROM power_profiles WHERE name = $1")
                        .bind(profile)
                        .fetch_optional(&self.pool)
                        .await?
                        .ok_or_else(|| StoreError::NotFound(format!("power profile '{profile}'")))?;
                let done = sqlx::query(
                    "UPDATE machines SET site_id = $1, department = $2, power_profile_id = $3
                     WHERE id = $4 AND retired_at_ms IS NULL",
                )
                .bind(site_id)
                .bind(department)
                .bind(profile_id)
                .bind(id)
                .execute(&self.pool)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(None);
                }
                let after = placement_of(&self.pool, id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("machine {id}")))?;
                Ok(Some((before, after)))
            }

            async fn machine_costs(&self, id: &str) -> Result<Vec<CostTotal>, StoreError> {
                let rows = sqlx::query(
                    "SELECT currency, cost, idle_cost FROM machine_cost_totals
                     WHERE machine_id = $1 ORDER BY currency",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(CostTotal {
                            currency: r.try_get("currency")?,
                            cost: $dec(r, "cost")?,
                            idle_cost: $dec(r, "idle_cost")?,
                        })
                    })
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(StoreError::from)
            }

            async fn energy_report(&self, query: &ReportQuery) -> Result<Vec<ReportRow>, StoreError> {
                let key = match query.group {
                    Grouping::Machine => "h.machine_id".to_string(),
                    Grouping::Site => "s.name".to_string(),
                    Grouping::Department => "m.department".to_string(),
                    Grouping::Step { step_ms } => {
                        format!("CAST((h.sent_at_ms - $1) / {} AS TEXT)", step_ms.max(1))
                    }
                    // Integers formatted here, never text from a request.
                    Grouping::Periods { today_ms, week_ms } => format!(
                        "CASE WHEN h.sent_at_ms >= {today_ms} THEN '0' \
                         WHEN h.sent_at_ms >= {week_ms} THEN '1' ELSE '2' END"
                    ),
                };
                let columns = [
                    int_col("observed_ms"),
                    int_col("idle_ms"),
                    int_col("unknown_ms"),
                    dec_col("energy_j"),
                    dec_col("idle_energy_j"),
                    dec_col("cost"),
                    dec_col("idle_cost"),
                    dec_col("co2_g"),
                    dec_col("idle_co2_g"),
                ]
                .join(", ");
                let machine = if query.machine_id.is_some() { " AND h.machine_id = $3" } else { "" };
                let group = if $grouped { " GROUP BY 1, 2" } else { "" };
                // `$1` is the first placeholder in the text whichever key is used.
                // Raw heartbeats and the hourly and daily rollups of older ones: every increment
                // is in exactly one of them (see `retention.rs`).
                let sums = format!("currency, {}", $crate::store::retention::ROLLUP_SUMS);
                let sql = format!(
                    "SELECT {key} AS key, h.currency AS currency, {columns}
                     FROM (SELECT machine_id, sent_at_ms, {sums} FROM heartbeats
                           WHERE observed_ms > 0
                           UNION ALL SELECT machine_id, hour_ms, {sums} FROM heartbeat_hours
                           UNION ALL SELECT machine_id, day_ms, {sums} FROM heartbeat_days) h
                     JOIN machines m ON m.id = h.machine_id
                     JOIN sites s ON s.id = m.site_id
                     WHERE h.sent_at_ms >= $1 AND h.sent_at_ms < $2{machine}
                       AND m.retired_at_ms IS NULL{group}"
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .persistent(false)
                    .bind(query.from_ms)
                    .bind(query.to_ms);
                if let Some(id) = &query.machine_id {
                    q = q.bind(id.clone());
                }
                let mut sums: std::collections::BTreeMap<(String, String), Increment> =
                    Default::default();
                let mut rows = q.fetch(&self.pool);
                while let Some(row) = rows.try_next().await? {
                    let totals = increment_of(&row)?;
                    sums.entry((row.try_get("key")?, row.try_get("currency")?))
                        .or_default()
                        .add(&totals);
                }
                Ok(sums
                    .into_iter()
                    .map(|((key, currency), totals)| ReportRow { key, currency, totals })
                    .collect())
            }

            async fn list_enrollment_tokens(&self) -> Result<Vec<EnrollmentTokenInfo>, StoreError> {
                let rows = sqlx::query(
                    "SELECT t.id, s.name AS site, t.department, t.expires_at_ms, t.max_uses,
                            t.uses, t.revoked_at_ms, t.created_at_ms
                     FROM enrollment_tokens t JOIN sites s ON s.id = t.site_id
                     ORDER BY t.id DESC",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(EnrollmentTokenInfo {
                            id: r.try_get("id")?,
                            site: r.try_get("site")?,
                            department: r.try_get("department")?,
                            expires_at_ms: r.try_get("expires_at_ms")?,
                            max_uses: r.try_get("max_uses")?,
                            uses: r.try_get("uses")?,
                            revoked_at_ms: r.try_get("revoked_at_ms")?,
                            created_at_ms: r.try_get("created_at_ms")?,
                        })
                    })
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(StoreError::from)
            }

            async fn revoke_enrollment_token(&self, id: i64, now_ms: i64) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE enrollment_tokens SET revoked_at_ms = $1
                     WHERE id = $2 AND revoked_at_ms IS NULL",
                )
                .bind(now_ms)
                .bind(id)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn create_api_token(
                &self,
                username: &str,
                name: &str,
                hash: &TokenHash,
                now_ms: i64,
            ) -> Result<ApiTokenInfo, StoreError> {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO api_tokens (token_hash, user_id, name, created_at_ms)
                     SELECT $1, u.id, $2, $3 FROM users u WHERE u.username = $4
                     RETURNING id",
                )
                .bind(hash.as_bytes())
                .bind(name)
                .bind(now_ms)
                .bind(username)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("user '{username}'")))?;
                Ok(ApiTokenInfo {
                    id,
                    name: name.to_string(),
                    username: username.to_string(),
                    created_at_ms: now_ms,
                    revoked_at_ms: None,
                })
            }

            async fn list_api_tokens(&self) -> Result<Vec<ApiTokenInfo>, StoreError> {
                let rows = sqlx::query(
                    "SELECT t.id, t.name, u.username, t.created_at_ms, t.revoked_at_ms
                     FROM api_tokens t JOIN users u ON u.id = t.user_id ORDER BY t.id DESC",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.iter().map(token_info_of).collect::<Result<_, _>>()?)
            }

            async fn revoke_api_token(&self, id: i64, now_ms: i64) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE api_tokens SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL",
                )
                .bind(now_ms)
                .bind(id)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn user_for_api_token(&self, hash: &TokenHash) -> Result<Option<User>, StoreError> {
                let row = sqlx::query(
                    "SELECT u.id, u.username, u.role, u.password_hash, u.session_version,
                            u.disabled_at_ms
                     FROM api_tokens t JOIN users u ON u.id = t.user_id
                     WHERE t.token_hash = $1 AND t.revoked_at_ms IS NULL
                       AND u.disabled_at_ms IS NULL",
                )
                .bind(hash.as_bytes())
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.as_ref().map(user_of).transpose()?)
            }

            async fn set_role(&self, username: &str, role: Role, now_ms: i64) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE users SET role = $1, updated_at_ms = $2 WHERE username = $3",
                )
                .bind(role.as_str())
                .bind(now_ms)
                .bind(username)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn enable_user(&self, username: &str, now_ms: i64) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE users SET disabled_at_ms = NULL, updated_at_ms = $1 WHERE username = $2",
                )
                .bind(now_ms)
                .bind(username)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
                Ok(sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn put_setting(&self, key: &str, value: &str, now_ms: i64) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO settings (key, value, updated_at_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                         updated_at_ms = excluded.updated_at_ms",
                )
                .bind(key)
                .bind(value)
                .bind(now_ms)
                .execute(&self.pool)
                .await?;
                Ok(())
            }
        }
    };
}

pub(crate) use admin_queries;
