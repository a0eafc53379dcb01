//! Sites and power profiles: create, rename, change their rates (a new version, effective
//! from now or a stated later moment — never back-dated, DESIGN §2), delete when nothing
//! ever used them; and the imported hourly grid intensity of a site.

use std::collections::BTreeSet;
use std::future::Future;

use rust_decimal::Decimal;
use serde::Serialize;

use super::{Ctx, OpError, invalid};
use crate::accounting::rates::{BandSpec, SpanSpec, default_business_hours};
use crate::store::admin::{
    PowerProfile, PowerProfileFields, ProfileVersionInfo, Site, SiteFields, SiteVersionInfo,
};
use crate::store::{Store, StoreError};

/// How far in the past a stated `effective_from` may be and still mean "now" (the request's
/// own travel time).
const NOW_GRACE_MS: i64 = 1000;
/// Most holidays one site version may list.
const MAX_HOLIDAYS: usize = 400;
/// Most bands or business-hour spans one site version may list.
const MAX_SPANS: usize = 50;

/// A change's `effective_from`: now when absent (or within a second ago), a later moment when
/// stated, refused (409) when in the past — what was accounted is never rewritten.
pub fn effective_from(stated: Option<i64>, now_ms: i64) -> Result<i64, OpError> {
    match stated {
        None => Ok(now_ms),
        Some(t) if t >= now_ms => Ok(t),
        Some(t) if t >= now_ms - NOW_GRACE_MS => Ok(now_ms),
        Some(t) => Err(OpError::Conflict(format!(
            "effective_from is {} s in the past: a change applies from now or a later moment, \
             never to time already accounted (history is never rewritten)",
            (now_ms - t) / 1000
        ))),
    }
}

/// An object before and after a change.
pub type BeforeAfter<T> = (T, T);

/// One kind of catalog object (sites, power profiles): how it is stored and audited.
pub trait Kind: Send + Sync {
    /// As listed and answered.
    type Item: Serialize + Send + Sync;
    /// `site`, `power profile`: in messages.
    const NOUN: &'static str;
    /// `site`, `power_profile`: in audit actions.
    const AUDIT: &'static str;

    fn name(item: &Self::Item) -> &str;
    fn list(
        store: &dyn Store,
        now_ms: i64,
    ) -> impl Future<Output = Result<Vec<Self::Item>, StoreError>> + Send;
    fn rename(
        store: &dyn Store,
        id: i64,
        name: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<BeforeAfter<Self::Item>>, StoreError>> + Send;
    fn remove(
        store: &dyn Store,
        id: i64,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<Self::Item>, StoreError>> + Send;
}

fn taken<K: Kind>(name: &str) -> impl FnOnce(StoreError) -> OpError + '_ {
    move |e| match e {
        StoreError::Conflict(_) => {
            OpError::Conflict(format!("{} '{name}' already exists", K::NOUN))
        }
        other => other.into(),
    }
}

fn not_found<K: Kind>(id: i64) -> OpError {
    OpError::NotFound(format!("{} {id} not found", K::NOUN))
}

/// Renames an object.
pub async fn rename<K: Kind>(ctx: Ctx<'_>, id: i64, name: &str) -> Result<K::Item, OpError> {
    check_name("name", name)?;
    let (before, after) = K::rename(ctx.store, id, name, crate::clock::now_ms())
        .await
        .map_err(taken::<K>(name))?
        .ok_or_else(|| not_found::<K>(id))?;
    ctx.machines_changed();
    ctx.audit(
        &format!("{}_renamed", K::AUDIT),
        K::name(&after),
        serde_json::json!({"before": K::name(&before), "after": K::name(&after)}),
    )
    .await?;
    Ok(after)
}

/// Deletes an object nothing ever used; 409 otherwise, or when it is the last one.
pub async fn delete<K: Kind>(ctx: Ctx<'_>, id: i64) -> Result<(), OpError> {
    let item = K::remove(ctx.store, id, crate::clock::now_ms())
        .await
        .map_err(|e| match e {
            StoreError::Conflict(why) => OpError::Conflict(why),
            other => other.into(),
        })?
        .ok_or_else(|| not_found::<K>(id))?;
    ctx.machines_changed();
    ctx.audit(
        &format!("{}_deleted", K::AUDIT),
        K::name(&item),
        serde_json::json!({"before": item}),
    )
    .await
}

/// Sites.
#[derive(Debug)]
pub struct Sites;

impl Kind for Sites {
    type Item = Site;
    const NOUN: &'static str = "site";
    const AUDIT: &'static str = "site";

    fn name(item: &Site) -> &str {
        &item.name
    }

    async fn list(store: &dyn Store, now_ms: i64) -> Result<Vec<Site>, StoreError> {
        store.list_sites(now_ms).await
    }

    async fn rename(
        store: &dyn Store,
        id: i64,
        name: &str,
        now_ms: i64,
    ) -> Result<Option<(Site, Site)>, StoreError> {
        store.rename_site(id, name, now_ms).await
    }

    async fn remove(store: &dyn Store, id: i64, now_ms: i64) -> Result<Option<Site>, StoreError> {
        store.delete_site(id, now_ms).await
    }
}

/// Power profiles.
#[derive(Debug)]
pub struct PowerProfiles;

impl Kind for PowerProfiles {
    type Item = PowerProfile;
    const NOUN: &'static str = "power profile";
    const AUDIT: &'static str = "power_profile";

    fn name(item: &PowerProfile) -> &str {
        &item.name
    }

    async fn list(store: &dyn Store, now_ms: i64) -> Result<Vec<PowerProfile>, StoreError> {
        store.list_power_profiles(now_ms).await
    }

    async fn rename(
        store: &dyn Store,
        id: i64,
        name: &str,
        now_ms: i64,
    ) -> Result<Option<(PowerProfile, PowerProfile)>, StoreError> {
        store.rename_power_profile(id, name, now_ms).await
    }

    async fn remove(
        store: &dyn Store,
        id: i64,
        now_ms: i64,
    ) -> Result<Option<PowerProfile>, StoreError> {
        store.delete_power_profile(id, now_ms).await
    }
}

/// Changes to a site's accounting figures; `None` keeps what the version in force has.
#[derive(Debug, Clone, Default)]
pub struct SiteRates {
    pub timezone: Option<String>,
    pub currency: Option<String>,
    pub price_per_kwh: Option<Decimal>,
    pub bands: Option<Vec<BandSpec>>,
    pub carbon_intensity_g_per_kwh: Option<Decimal>,
    pub business_hours: Option<Vec<SpanSpec>>,
    pub holidays: Option<Vec<String>>,
    /// `Some(None)` removes the override.
    pub idle_threshold_seconds: Option<Option<u64>>,
}

impl SiteRates {
    fn is_empty(&self) -> bool {
        self.timezone.is_none()
            && self.currency.is_none()
            && self.price_per_kwh.is_none()
            && self.bands.is_none()
            && self.carbon_intensity_g_per_kwh.is_none()
            && self.business_hours.is_none()
            && self.holidays.is_none()
            && self.idle_threshold_seconds.is_none()
    }

    /// These changes over `base` (or over the defaults, for a new site), validated.
    fn apply(self, base: Option<&SiteVersionInfo>) -> Result<SiteVersionInfo, OpError> {
        let timezone = pick(
            "timezone",
            self.timezone,
            base.map(|b| b.timezone.clone()),
            Some("UTC".into()),
        )?;
        check_timezone("timezone", &timezone)?;
        let currency = pick(
            "currency",
            self.currency,
            base.map(|b| b.currency.clone()),
            Some("USD".into()),
        )?;
        check_currency("currency", &currency)?;
        let price = pick(
            "price_per_kwh",
            self.price_per_kwh,
            base.map(|b| b.price_per_kwh),
            None,
        )?;
        let carbon = pick(
            "carbon_intensity_g_per_kwh",
            self.carbon_intensity_g_per_kwh,
            base.map(|b| b.carbon_intensity_g_per_kwh),
            None,
        )?;
        let bands = pick(
            "bands",
            self.bands,
            base.map(|b| b.bands.clone()),
            Some(Vec::new()),
        )?;
        check_bands(&bands)?;
        let business_hours = pick(
            "business_hours",
            self.business_hours,
            base.map(|b| b.business_hours.clone()),
            Some(default_business_hours().iter().map(SpanSpec::of).collect()),
        )?;
        check_spans("business_hours", &business_hours)?;
        let holidays = pick(
            "holidays",
            self.holidays,
            base.map(|b| b.holidays.clone()),
            Some(Vec::new()),
        )?;
        let holidays = check_holidays(&holidays)?;
        let idle_threshold_seconds = match self.idle_threshold_seconds {
            Some(v) => v,
            None => base.and_then(|b| b.idle_threshold_seconds),
        };
        if idle_threshold_seconds.is_some_and(|s| s > 31_622_400) {
            return Err(invalid(
                "idle_threshold_seconds",
                "must be at most one year (31622400 seconds)",
            ));
        }
        Ok(SiteVersionInfo {
            effective_from_ms: i64::MIN,
            timezone,
            currency,
            price_per_kwh: check_range("price_per_kwh", price, 1000, PRICE_DP)?,
            bands,
            carbon_intensity_g_per_kwh: check_range(
                "carbon_intensity_g_per_kwh",
                carbon,
                5000,
                INTENSITY_DP,
            )?,
            business_hours,
            holidays,
            idle_threshold_seconds,
        })
    }
}

/// Creates a site; its first version applies from the beginning.
pub async fn create_site(ctx: Ctx<'_>, name: &str, rates: SiteRates) -> Result<Site, OpError> {
    check_name("name", name)?;
    let fields = SiteFields {
        name: name.to_string(),
        version: rates.apply(None)?,
    };
    let site = ctx
        .store
        .create_site(&fields, crate::clock::now_ms())
        .await
        .map_err(taken::<Sites>(name))?;
    ctx.audit(
        "site_created",
        &site.name,
        serde_json::json!({"after": site}),
    )
    .await?;
    Ok(site)
}

/// Renames a site and/or adds a version of its rates from `effective_from` (default now).
pub async fn update_site(
    ctx: Ctx<'_>,
    id: i64,
    name: Option<&str>,
    rates: SiteRates,
    stated_from: Option<i64>,
) -> Result<Site, OpError> {
    let now = crate::clock::now_ms();
    let mut site = None;
    if let Some(name) = name {
        site = Some(rename::<Sites>(ctx, id, name).await?);
    }
    if rates.is_empty() {
        if stated_from.is_some() {
            return Err(invalid(
                "effective_from",
                "says when rate changes apply; none were given",
            ));
        }
        return match site {
            Some(site) => Ok(site),
            None => ctx
                .store
                .list_sites(now)
                .await?
                .into_iter()
                .find(|s| s.id == id)
                .ok_or_else(|| not_found::<Sites>(id)),
        };
    }
    let from = effective_from(stated_from, now)?;
    let versions = ctx.store.site_versions(id).await?;
    let started = versions
        .partition_point(|v| v.effective_from_ms <= from)
        .max(1);
    let base = versions
        .get(started - 1)
        .ok_or_else(|| not_found::<Sites>(id))?;
    let version = SiteVersionInfo {
        effective_from_ms: from,
        ..rates.apply(Some(base))?
    };
    let (before, after) = ctx
        .store
        .add_site_version(id, &version, now)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(what) => OpError::Conflict(format!("{what} exists already")),
            other => other.into(),
        })?
        .ok_or_else(|| not_found::<Sites>(id))?;
    ctx.audit(
        "site_rates_changed",
        &after.name,
        serde_json::json!({"before": before.current, "after": version}),
    )
    .await?;
    Ok(after)
}

/// A change to a power profile's watts; `None` keeps the value in force.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProfileWatts {
    pub idle_watts: Option<Decimal>,
    pub active_watts: Option<Decimal>,
    pub sleep_watts: Option<Decimal>,
}

impl ProfileWatts {
    fn is_empty(&self) -> bool {
        self.idle_watts.is_none() && self.active_watts.is_none() && self.sleep_watts.is_none()
    }

    fn apply(self, base: Option<&ProfileVersionInfo>) -> Result<ProfileVersionInfo, OpError> {
        let idle = pick(
            "idle_watts",
            self.idle_watts,
            base.map(|b| b.idle_watts),
            None,
        )?;
        let active = pick(
            "active_watts",
            self.active_watts,
            base.map(|b| b.active_watts),
            None,
        )?;
        let sleep = pick(
            "sleep_watts",
            self.sleep_watts,
            base.map(|b| b.sleep_watts),
            Some(Decimal::TWO),
        )?;
        Ok(ProfileVersionInfo {
            effective_from_ms: i64::MIN,
            idle_watts: check_range("idle_watts", idle, 10_000, WATTS_DP)?,
            active_watts: check_range("active_watts", active, 10_000, WATTS_DP)?,
            sleep_watts: check_range("sleep_watts", sleep, 10_000, WATTS_DP)?,
        })
    }
}

/// Creates a power profile; its first version applies from the beginning.
pub async fn create_profile(
    ctx: Ctx<'_>,
    name: &str,
    watts: ProfileWatts,
) -> Result<PowerProfile, OpError> {
    check_name("name", name)?;
    let fields = PowerProfileFields {
        name: name.to_string(),
        version: watts.apply(None)?,
    };
    let profile = ctx
        .store
        .create_power_profile(&fields, crate::clock::now_ms())
        .await
        .map_err(taken::<PowerProfiles>(name))?;
    ctx.audit(
        "power_profile_created",
        &profile.name,
        serde_json::json!({"after": profile}),
    )
    .await?;
    Ok(profile)
}

/// Renames a power profile and/or adds a version of its watts from `effective_from`.
pub async fn update_profile(
    ctx: Ctx<'_>,
    id: i64,
    name: Option<&str>,
    watts: ProfileWatts,
    stated_from: Option<i64>,
) -> Result<PowerProfile, OpError> {
    let now = crate::clock::now_ms();
    let mut profile = None;
    if let Some(name) = name {
        profile = Some(rename::<PowerProfiles>(ctx, id, name).await?);
    }
    let current = || async {
        ctx.store
            .list_power_profiles(now)
            .await?
            .into_iter()
            .find(|p| p.id == id)
            .ok_or_else(|| not_found::<PowerProfiles>(id))
    };
    if watts.is_empty() {
        if stated_from.is_some() {
            return Err(invalid(
                "effective_from",
                "says when watt changes apply; none were given",
            ));
        }
        return match profile {
            Some(p) => Ok(p),
            None => current().await,
        };
    }
    let from = effective_from(stated_from, now)?;
    let existing = current().await?;
    let mut versions = vec![existing.current.clone()];
    versions.extend(existing.scheduled.iter().cloned());
    let started = versions
        .partition_point(|v| v.effective_from_ms <= from)
        .max(1);
    let version = ProfileVersionInfo {
        effective_from_ms: from,
        ..watts.apply(versions.get(started - 1))?
    };
    let (before, after) = ctx
        .store
        .add_profile_version(id, &version, now)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(what) => OpError::Conflict(format!("{what} exists already")),
            other => other.into(),
        })?
        .ok_or_else(|| not_found::<PowerProfiles>(id))?;
    ctx.audit(
        "power_profile_watts_changed",
        &after.name,
        serde_json::json!({"before": before.current, "after": version}),
    )
    .await?;
    Ok(after)
}

/// Parses and imports a site's hourly grid intensity, `hour_start,g_co2e_per_kwh` per line
/// (a header line is allowed; UTC hours as RFC 3339). All or nothing; a bad line is a 422
/// naming its number; an hour that has begun is refused (409): it may be accounted already.
pub async fn import_intensity(ctx: Ctx<'_>, site_id: i64, csv: &str) -> Result<usize, OpError> {
    let now = crate::clock::now_ms();
    let hours = parse_intensity_csv(csv, now)?;
    if !ctx.store.import_intensity(site_id, &hours, now).await? {
        return Err(OpError::NotFound(format!("site {site_id} not found")));
    }
    let (first, last) = (hours.first().map(|h| h.0), hours.last().map(|h| h.0));
    ctx.audit(
        "carbon_intensity_imported",
        &site_id.to_string(),
        serde_json::json!({"hours": hours.len(), "first_hour_ms": first, "last_hour_ms": last}),
    )
    .await?;
    Ok(hours.len())
}

/// The id of the site called `name` (404 when there is none).
pub async fn site_id_by_name(ctx: Ctx<'_>, name: &str) -> Result<i64, OpError> {
    ctx.store
        .list_sites(crate::clock::now_ms())
        .await?
        .into_iter()
        .find(|s| s.name == name)
        .map(|s| s.id)
        .ok_or_else(|| OpError::NotFound(format!("site '{name}' not found")))
}

/// Most lines one intensity import may hold (five years of hours).
pub const MAX_INTENSITY_LINES: usize = 5 * 366 * 24;

/// The hours of an intensity CSV, sorted; see [`import_intensity`].
pub fn parse_intensity_csv(csv: &str, now_ms: i64) -> Result<Vec<(i64, Decimal)>, OpError> {
    use time::format_description::well_known::Rfc3339;
    let mut hours = std::collections::BTreeMap::new();
    for (i, raw) in csv.lines().enumerate() {
        let line = i + 1;
        let text = raw.trim_end_matches('\r').trim();
        if text.is_empty() {
            continue;
        }
        let bad = |why: &str| invalid(&format!("line {line}"), format!("{why}: {text:.80}"));
        let (hour, value) = text
            .split_once(',')
            .ok_or_else(|| bad("expected hour_start,g_co2e_per_kwh"))?;
        let (hour, value) = (
            hour.trim().trim_matches('"'),
            value.trim().trim_matches('"'),
        );
        if line == 1 && hour == "hour_start" {
            continue;
        }
        let at = time::OffsetDateTime::parse(hour, &Rfc3339)
            .map_err(|_| bad("hour_start must be an RFC 3339 time such as 2026-12-01T14:00:00Z"))?;
        let ms = i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| bad("hour_start is out of range"))?;
        if ms.rem_euclid(crate::accounting::rates::HOUR_MS) != 0 {
            return Err(bad(
                "hour_start must be the start of a UTC hour (minutes and seconds 0)",
            ));
        }
        let g = plain_decimal(value)
            .ok_or_else(|| bad("g_co2e_per_kwh must be a plain decimal number"))?;
        if g > Decimal::from(5000) || g.scale() > INTENSITY_DP {
            return Err(bad(
                "g_co2e_per_kwh must be from 0 to 5000 with at most 3 decimals",
            ));
        }
        if ms <= now_ms {
            return Err(OpError::Conflict(format!(
                "line {line}: the hour {hour} has begun; imported intensity applies only to hours \
                 still to come, because time already accounted is never repriced"
            )));
        }
        if hours.insert(ms, g.normalize()).is_some() {
            return Err(bad("this hour is listed twice"));
        }
        if hours.len() > MAX_INTENSITY_LINES {
            return Err(invalid(
                "csv",
                format!("at most {MAX_INTENSITY_LINES} hours per import"),
            ));
        }
    }
    if hours.is_empty() {
        return Err(invalid("csv", "holds no hour_start,g_co2e_per_kwh line"));
    }
    Ok(hours.into_iter().collect())
}

/// A field of a create or change: the given value, else the current one, else the default;
/// with none of them the field is required.
fn pick<T>(
    name: &str,
    given: Option<T>,
    current: Option<T>,
    default: Option<T>,
) -> Result<T, OpError> {
    given
        .or(current)
        .or(default)
        .ok_or_else(|| invalid(name, "is required"))
}

/// Decimal places a price per kWh may have.
pub const PRICE_DP: u32 = 6;
/// Decimal places watts may have (milliwatts).
pub const WATTS_DP: u32 = 3;
/// Decimal places a grid intensity may have.
pub const INTENSITY_DP: u32 = 3;

/// A catalog name: 1 to 64 characters, no control characters, no surrounding spaces.
pub fn check_name(field: &str, name: &str) -> Result<(), OpError> {
    greenops_protocol::check_text(field, name, 1, 64)?;
    if name.trim() != name {
        return Err(invalid(field, "must not start or end with spaces"));
    }
    Ok(())
}

/// An active ISO 4217 currency code.
pub fn check_currency(field: &str, code: &str) -> Result<(), OpError> {
    if crate::currency::is_known(code) {
        Ok(())
    } else {
        Err(invalid(
            field,
            "must be an active ISO 4217 currency code in capitals, e.g. EUR or USD",
        ))
    }
}

/// An IANA time zone name known to the bundled time zone database.
pub fn check_timezone(field: &str, name: &str) -> Result<(), OpError> {
    let plausible = (1..=64).contains(&name.len()) && !name.chars().any(char::is_control);
    if plausible && jiff::tz::TimeZone::get(name).is_ok() {
        Ok(())
    } else {
        Err(invalid(
            field,
            "must be an IANA time zone name such as UTC or Europe/Paris",
        ))
    }
}

/// Time-of-use bands: valid spans, valid prices, and no two covering the same minute.
fn check_bands(bands: &[BandSpec]) -> Result<(), OpError> {
    if bands.len() > MAX_SPANS {
        return Err(invalid("bands", format!("at most {MAX_SPANS} bands")));
    }
    let mut spans = Vec::with_capacity(bands.len());
    for (i, b) in bands.iter().enumerate() {
        let field = format!("bands[{i}]");
        let span = SpanSpec {
            days: b.days.clone(),
            start: b.start.clone(),
            end: b.end.clone(),
        }
        .parse()
        .map_err(|why| invalid(&field, why))?;
        let price = plain_decimal(&b.price_per_kwh).ok_or_else(|| {
            invalid(
                &format!("{field}.price_per_kwh"),
                "must be a plain decimal string such as \"0.25\"",
            )
        })?;
        check_range(&format!("{field}.price_per_kwh"), price, 1000, PRICE_DP)?;
        for (j, other) in spans.iter().enumerate() {
            let o: &crate::accounting::rates::DailySpan = other;
            let shared_day = o.days.0 & span.days.0 != 0;
            if shared_day && o.start_min < span.end_min && span.start_min < o.end_min {
                return Err(invalid(
                    &field,
                    format!("overlaps bands[{j}] on a shared day"),
                ));
            }
        }
        spans.push(span);
    }
    Ok(())
}

fn check_spans(field: &str, spans: &[SpanSpec]) -> Result<(), OpError> {
    if spans.len() > MAX_SPANS {
        return Err(invalid(field, format!("at most {MAX_SPANS} spans")));
    }
    for (i, s) in spans.iter().enumerate() {
        s.parse()
            .map_err(|why| invalid(&format!("{field}[{i}]"), why))?;
    }
    Ok(())
}

/// Holidays as normalised, sorted, unique `YYYY-MM-DD`.
fn check_holidays(days: &[String]) -> Result<Vec<String>, OpError> {
    if days.len() > MAX_HOLIDAYS {
        return Err(invalid("holidays", format!("at most {MAX_HOLIDAYS} dates")));
    }
    let mut set = BTreeSet::new();
    for (i, d) in days.iter().enumerate() {
        let date: jiff::civil::Date = d
            .parse()
            .map_err(|_| invalid(&format!("holidays[{i}]"), "must be a date YYYY-MM-DD"))?;
        set.insert(date.to_string());
    }
    Ok(set.into_iter().collect())
}

/// A non-negative decimal up to `max` with at most `max_dp` decimal places.
pub fn check_range(field: &str, value: Decimal, max: i64, max_dp: u32) -> Result<Decimal, OpError> {
    if value.is_sign_negative() || value > Decimal::from(max) {
        return Err(invalid(field, format!("must be from 0 to {max}")));
    }
    if value.scale() > max_dp {
        return Err(invalid(
            field,
            format!("must have at most {max_dp} decimal places"),
        ));
    }
    Ok(value.normalize())
}

/// A non-negative decimal written plainly — digits without a leading zero, optionally `.` and
/// digits — and representable exactly; anything else (`-1`, `1_000`, ` 0.1 `, `1e3`, `.5`,
/// `007`) is `None`. Every decimal the API takes (prices, watts, intensities) is non-negative.
pub fn plain_decimal(text: &str) -> Option<Decimal> {
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = whole.len() > 1 && whole.starts_with('0');
    if !all_digits(whole) || leading_zero || fraction.is_some_and(|f| !all_digits(f)) {
        return None;
    }
    Decimal::from_str_exact(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_must_be_written_plainly() {
        assert_eq!(plain_decimal("0.12"), Some(Decimal::new(12, 2)));
        assert_eq!(plain_decimal("65"), Some(Decimal::from(65)));
        for bad in [
            "-1.5", "-0", "1_000", " 0.1 ", "1e3", ".5", "5.", "", "-", "0x10", "1.2.3", "NaN",
            "007",
        ] {
            assert_eq!(plain_decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn currencies_and_time_zones_are_checked_against_their_registries() {
        assert!(check_currency("c", "EUR").is_ok());
        assert!(check_currency("c", "XYZ").is_err());
        assert!(check_currency("c", "eur").is_err());
        assert!(check_timezone("t", "Europe/Paris").is_ok());
        assert!(check_timezone("t", "UTC").is_ok());
        assert!(check_timezone("t", "America/Argentina/Buenos_Aires").is_ok());
        assert!(check_timezone("t", "Mars/Olympus_Mons").is_err());
        assert!(check_timezone("t", "../../etc/passwd").is_err());
        assert!(check_timezone("t", "").is_err());
    }

    #[test]
    fn changes_are_never_back_dated() {
        let now = 1_000_000;
        assert_eq!(effective_from(None, now).ok(), Some(now));
        assert_eq!(effective_from(Some(now + 5), now).ok(), Some(now + 5));
        assert_eq!(
            effective_from(Some(now - 500), now).ok(),
            Some(now),
            "request travel time"
        );
        assert!(matches!(
            effective_from(Some(now - 5000), now),
            Err(OpError::Conflict(_))
        ));
    }

    #[test]
    fn intensity_csv_is_checked_line_by_line() {
        let now = 1_796_000_000_000; // 2026-12-01T..; hours below are later
        let ok = "hour_start,g_co2e_per_kwh\r\n2027-01-01T00:00:00Z,250\n2027-01-01T01:00:00Z,\"260.5\"\n";
        let hours = parse_intensity_csv(ok, now).unwrap_or_default();
        assert_eq!(hours.len(), 2);
        assert_eq!(hours[1].1, Decimal::new(2605, 1));
        let field = |csv: &str| match parse_intensity_csv(csv, now) {
            Err(OpError::Invalid(v)) => v.field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field("2027-01-01T00:00:00Z,250\n2027-01-01T00:30:00Z,1"),
            "line 2"
        );
        assert_eq!(field("2027-01-01T00:00:00Z,abc"), "line 1");
        assert_eq!(
            field("2027-01-01T00:00:00Z,1\n2027-01-01T00:00:00Z,2"),
            "line 2"
        );
        assert_eq!(field("x"), "line 1");
        assert_eq!(field(""), "csv");
        assert!(matches!(
            parse_intensity_csv("2020-01-01T00:00:00Z,1", now),
            Err(OpError::Conflict(_))
        ));
    }

    #[test]
    fn overlapping_bands_are_refused() {
        let band = |start: &str, end: &str| BandSpec {
            days: vec!["mon".into()],
            start: start.into(),
            end: end.into(),
            price_per_kwh: "0.3".into(),
        };
        assert!(check_bands(&[band("07:00", "12:00"), band("12:00", "19:00")]).is_ok());
        assert!(check_bands(&[band("07:00", "12:00"), band("11:00", "19:00")]).is_err());
    }
}
