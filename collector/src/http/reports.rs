//! `GET /api/v1/reports/energy.csv`: RFC 4180 CSV of time, energy, money and CO₂ per machine,
//! site or department over a period, summed exactly from the hourly usage whose hour starts
//! in `[from, to)`. Every machine counts (retired ones too), grouped by where the usage was
//! incurred (default) or by the machines' current placement; one row per group and currency.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiQuery, AppState, Result, Viewer, invalid, schema, timestamp_param};
use crate::operations::reports;
use crate::store::admin::{Attribution, Grouping};

const DAY_MS: i64 = 86_400_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(energy_csv))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ReportParams {
    /// RFC 3339, inclusive; default `to` minus 30 days.
    #[param(schema_with = schema::param::timestamp)]
    from: Option<String>,
    /// RFC 3339, exclusive; default now.
    #[param(schema_with = schema::param::timestamp)]
    to: Option<String>,
    /// `machine` (default), `site` or `department`.
    #[param(schema_with = schema::param::group_by)]
    group_by: Option<String>,
    /// `incurred` (default: where the usage happened) or `current` (the machines' placement
    /// now).
    #[param(schema_with = schema::param::attribution)]
    attribution: Option<String>,
}

/// One CSV field per RFC 4180: quoted when it holds a comma, quote or line break. Text that a
/// spreadsheet would run as a formula is prefixed with `'`.
fn field(out: &mut String, value: &str) {
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = formula || value.contains([',', '"', '\r', '\n']);
    if quote {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    for c in value.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quote {
        out.push('"');
    }
}

fn record(out: &mut String, fields: &[&str]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(out, f);
    }
    out.push_str("\r\n");
}

/// Milliseconds as exact decimal seconds.
fn seconds(ms: i64) -> String {
    Decimal::new(ms, 3).normalize().to_string()
}

/// Energy, cost and CO₂ over a period as CSV.
#[utoipa::path(get, path = "/api/v1/reports/energy.csv", tag = "reports", operation_id = "energy_csv",
    params(ReportParams),
    responses((status = 200, content_type = "text/csv", body = String,
        description = "header row, then one row per group and currency"),
        (status = 401, description = "not signed in"),
        (status = 422, description = "invalid parameter")),
    security(("session" = []), ("bearer" = [])))]
async fn energy_csv(
    State(state): State<AppState>,
    _viewer: Viewer,
    ApiQuery(params): ApiQuery<ReportParams>,
) -> Result<Response> {
    let to = timestamp_param("to", params.to.as_deref())?.unwrap_or_else(crate::clock::now_ms);
    let from = timestamp_param("from", params.from.as_deref())?.unwrap_or(to - 30 * DAY_MS);
    if from >= to {
        return Err(invalid("from", "must be before to"));
    }
    let (group, name) = match params.group_by.as_deref() {
        None | Some("machine") => (Grouping::Machine, "machine"),
        Some("site") => (Grouping::Site, "site"),
        Some("department") => (Grouping::Department, "department"),
        Some(_) => return Err(invalid("group_by", "must be machine, site or department")),
    };
    let attribution = match params.attribution.as_deref() {
        None | Some("incurred") => Attribution::Incurred,
        Some("current") => Attribution::Current,
        Some(_) => return Err(invalid("attribution", "must be incurred or current")),
    };
    let report = reports::energy(state.store.as_ref(), from, to, group, attribution).await?;
    let mut out = String::new();
    let totals = [
        "currency",
        "observed_seconds",
        "idle_seconds",
        "unknown_seconds",
        "energy_joules",
        "idle_energy_joules",
        "energy_kwh",
        "idle_energy_kwh",
        "cost",
        "idle_cost",
        "co2_grams",
        "idle_co2_grams",
        "avoidable_energy_joules",
        "avoidable_cost",
        "avoidable_co2_grams",
        "after_hours_idle_seconds",
        "after_hours_idle_energy_joules",
        "gap_seconds",
    ];
    let mut header_row: Vec<&str> = match group {
        Grouping::Machine => vec!["machine_id", "hostname", "site", "department"],
        _ => vec![name],
    };
    header_row.extend(totals);
    record(&mut out, &header_row);
    let kwh = |j: Decimal| (j / Decimal::from(3_600_000)).round_dp(9).normalize();
    for row in report.rows {
        let t = &row.totals;
        let numbers = [
            seconds(t.observed_ms),
            seconds(t.idle_ms),
            seconds(t.unknown_ms),
            t.energy_j.normalize().to_string(),
            t.idle_energy_j.normalize().to_string(),
            kwh(t.energy_j).to_string(),
            kwh(t.idle_energy_j).to_string(),
            t.cost.normalize().to_string(),
            t.idle_cost.normalize().to_string(),
            t.co2_g.normalize().to_string(),
            t.idle_co2_g.normalize().to_string(),
            t.avoidable_energy_j.normalize().to_string(),
            t.avoidable_cost.normalize().to_string(),
            t.avoidable_co2_g.normalize().to_string(),
            seconds(t.after_hours_idle_ms),
            t.after_hours_idle_energy_j.normalize().to_string(),
            seconds(t.gap_ms),
        ];
        let mut fields: Vec<&str> = vec![&row.key];
        if group == Grouping::Machine {
            let (hostname, site, department) = report
                .labels
                .get(&row.key)
                .map(|l| (l.hostname.as_str(), l.site.as_str(), l.department.as_str()))
                .unwrap_or(("", "", ""));
            fields.extend([hostname, site, department]);
        }
        fields.push(&row.currency);
        fields.extend(numbers.iter().map(String::as_str));
        record(&mut out, &fields);
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "text/csv; charset=utf-8; header=present",
            ),
            (
                header::CONTENT_DISPOSITION,
                match group {
                    Grouping::Site => "attachment; filename=\"greenops-energy-by-site.csv\"",
                    Grouping::Department => {
                        "attachment; filename=\"greenops-energy-by-department.csv\""
                    }
                    _ => "attachment; filename=\"greenops-energy-by-machine.csv\"",
                },
            ),
        ],
        out,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_per_rfc_4180() {
        let mut out = String::new();
        record(
            &mut out,
            &["plain", "a,b", "say \"hi\"", "two\nlines", "=cmd()"],
        );
        assert_eq!(
            out,
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\"'=cmd()\"\r\n"
        );
    }

    #[test]
    fn milliseconds_become_exact_seconds() {
        assert_eq!(seconds(120_000), "120");
        assert_eq!(seconds(1_234), "1.234");
        assert_eq!(seconds(0), "0");
    }
}
