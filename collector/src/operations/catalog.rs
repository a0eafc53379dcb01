//! Sites (currency, price per kWh, grid carbon intensity, time zone) and power profiles (idle
//! and active watts): create, change and delete, with one generic piece for both kinds.
//!
//! A change applies to time accounted after it: every heartbeat stores the increments it
//! caused, so history and totals are never rewritten.

use std::future::Future;

use rust_decimal::Decimal;
use serde::Serialize;

use super::{Ctx, OpError, invalid};
use crate::store::admin::{PowerProfile, PowerProfileFields, Site, SiteFields};
use crate::store::{Store, StoreError};

/// An object before and after a change.
pub type Change<T> = (T, T);

/// One kind of catalog object (sites, power profiles): how it is stored and audited.
pub trait Kind: Send + Sync {
    /// As listed and answered.
    type Item: Serialize + Send + Sync;
    /// The complete, validated fields of one object.
    type Fields: Send + Sync;
    /// A create or change, every field optional.
    type Patch: Send;
    /// `site`, `power profile`: in messages.
    const NOUN: &'static str;
    /// `site`, `power_profile`: in audit actions.
    const AUDIT: &'static str;

    fn id(item: &Self::Item) -> i64;
    fn name(item: &Self::Item) -> &str;
    fn fields_name(fields: &Self::Fields) -> &str;
    /// The complete fields: `patch` over `base` (or with defaults / required, without).
    fn apply(patch: Self::Patch, base: Option<&Self::Item>) -> Result<Self::Fields, OpError>;
    fn list(store: &dyn Store) -> impl Future<Output = Result<Vec<Self::Item>, StoreError>> + Send;
    fn insert(
        store: &dyn Store,
        fields: &Self::Fields,
        now_ms: i64,
    ) -> impl Future<Output = Result<Self::Item, StoreError>> + Send;
    fn replace(
        store: &dyn Store,
        id: i64,
        fields: &Self::Fields,
    ) -> impl Future<Output = Result<Option<Change<Self::Item>>, StoreError>> + Send;
    fn remove(
        store: &dyn Store,
        id: i64,
    ) -> impl Future<Output = Result<Option<Self::Item>, StoreError>> + Send;
}

fn taken<K: Kind>(name: String) -> impl FnOnce(StoreError) -> OpError {
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

/// Creates an object.
pub async fn create<K: Kind>(ctx: Ctx<'_>, patch: K::Patch) -> Result<K::Item, OpError> {
    let fields = K::apply(patch, None)?;
    let item = K::insert(ctx.store, &fields, crate::clock::now_ms())
        .await
        .map_err(taken::<K>(K::fields_name(&fields).to_string()))?;
    ctx.audit(
        &format!("{}_created", K::AUDIT),
        K::name(&item),
        serde_json::json!({"after": item}),
    )
    .await?;
    Ok(item)
}

/// Changes an object; absent fields keep their value.
pub async fn update<K: Kind>(ctx: Ctx<'_>, id: i64, patch: K::Patch) -> Result<K::Item, OpError> {
    let items = K::list(ctx.store).await?;
    let current = items
        .iter()
        .find(|i| K::id(i) == id)
        .ok_or_else(|| not_found::<K>(id))?;
    let fields = K::apply(patch, Some(current))?;
    let (before, after) = K::replace(ctx.store, id, &fields)
        .await
        .map_err(taken::<K>(K::fields_name(&fields).to_string()))?
        .ok_or_else(|| not_found::<K>(id))?;
    ctx.machines_changed();
    ctx.audit(
        &format!("{}_updated", K::AUDIT),
        K::name(&after),
        serde_json::json!({"before": before, "after": after}),
    )
    .await?;
    Ok(after)
}

/// Deletes an unused object; 409 while anything uses it, or when it is the last one.
pub async fn delete<K: Kind>(ctx: Ctx<'_>, id: i64) -> Result<(), OpError> {
    let item = K::remove(ctx.store, id).await.map_err(|e| match e {
        StoreError::Conflict(why) => OpError::Conflict(why),
        other => other.into(),
    })?;
    let item = item.ok_or_else(|| not_found::<K>(id))?;
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

/// A create or change of a site.
#[derive(Debug, Default)]
pub struct SitePatch {
    pub name: Option<String>,
    pub currency: Option<String>,
    pub price_per_kwh: Option<Decimal>,
    pub carbon_intensity_g_per_kwh: Option<Decimal>,
    pub timezone: Option<String>,
}

impl Kind for Sites {
    type Item = Site;
    type Fields = SiteFields;
    type Patch = SitePatch;
    const NOUN: &'static str = "site";
    const AUDIT: &'static str = "site";

    fn id(item: &Site) -> i64 {
        item.id
    }

    fn name(item: &Site) -> &str {
        &item.name
    }

    fn fields_name(fields: &SiteFields) -> &str {
        &fields.name
    }

    fn apply(patch: SitePatch, base: Option<&Site>) -> Result<SiteFields, OpError> {
        let name = field("name", patch.name, base.map(|b| b.name.clone()), None)?;
        check_name("name", &name)?;
        let currency = field(
            "currency",
            patch.currency,
            base.map(|b| b.currency.clone()),
            Some("USD".to_string()),
        )?;
        check_currency("currency", &currency)?;
        let price = field(
            "price_per_kwh",
            patch.price_per_kwh,
            base.map(|b| b.price_per_kwh),
            None,
        )?;
        let carbon = field(
            "carbon_intensity_g_per_kwh",
            patch.carbon_intensity_g_per_kwh,
            base.map(|b| b.carbon_intensity_g_per_kwh),
            None,
        )?;
        let timezone = field(
            "timezone",
            patch.timezone,
            base.map(|b| b.timezone.clone()),
            Some("UTC".to_string()),
        )?;
        check_timezone("timezone", &timezone)?;
        Ok(SiteFields {
            name,
            currency,
            price_per_kwh: check_range("price_per_kwh", price, 1000)?,
            carbon_intensity_g_per_kwh: check_range("carbon_intensity_g_per_kwh", carbon, 5000)?,
            timezone,
        })
    }

    async fn list(store: &dyn Store) -> Result<Vec<Site>, StoreError> {
        store.list_sites().await
    }

    async fn insert(
        store: &dyn Store,
        fields: &SiteFields,
        now_ms: i64,
    ) -> Result<Site, StoreError> {
        store.create_site(fields, now_ms).await
    }

    async fn replace(
        store: &dyn Store,
        id: i64,
        fields: &SiteFields,
    ) -> Result<Option<(Site, Site)>, StoreError> {
        store.update_site(id, fields).await
    }

    async fn remove(store: &dyn Store, id: i64) -> Result<Option<Site>, StoreError> {
        store.delete_site(id).await
    }
}

/// Power profiles.
#[derive(Debug)]
pub struct PowerProfiles;

/// A create or change of a power profile.
#[derive(Debug, Default)]
pub struct PowerProfilePatch {
    pub name: Option<String>,
    pub idle_watts: Option<Decimal>,
    pub active_watts: Option<Decimal>,
}

impl Kind for PowerProfiles {
    type Item = PowerProfile;
    type Fields = PowerProfileFields;
    type Patch = PowerProfilePatch;
    const NOUN: &'static str = "power profile";
    const AUDIT: &'static str = "power_profile";

    fn id(item: &PowerProfile) -> i64 {
        item.id
    }

    fn name(item: &PowerProfile) -> &str {
        &item.name
    }

    fn fields_name(fields: &PowerProfileFields) -> &str {
        &fields.name
    }

    fn apply(
        patch: PowerProfilePatch,
        base: Option<&PowerProfile>,
    ) -> Result<PowerProfileFields, OpError> {
        let name = field("name", patch.name, base.map(|b| b.name.clone()), None)?;
        check_name("name", &name)?;
        let idle = field(
            "idle_watts",
            patch.idle_watts,
            base.map(|b| b.idle_watts),
            None,
        )?;
        let active = field(
            "active_watts",
            patch.active_watts,
            base.map(|b| b.active_watts),
            None,
        )?;
        Ok(PowerProfileFields {
            name,
            idle_watts: check_range("idle_watts", idle, 10_000)?,
            active_watts: check_range("active_watts", active, 10_000)?,
        })
    }

    async fn list(store: &dyn Store) -> Result<Vec<PowerProfile>, StoreError> {
        store.list_power_profiles().await
    }

    async fn insert(
        store: &dyn Store,
        fields: &PowerProfileFields,
        now_ms: i64,
    ) -> Result<PowerProfile, StoreError> {
        store.create_power_profile(fields, now_ms).await
    }

    async fn replace(
        store: &dyn Store,
        id: i64,
        fields: &PowerProfileFields,
    ) -> Result<Option<(PowerProfile, PowerProfile)>, StoreError> {
        store.update_power_profile(id, fields).await
    }

    async fn remove(store: &dyn Store, id: i64) -> Result<Option<PowerProfile>, StoreError> {
        store.delete_power_profile(id).await
    }
}

/// A field of a create or change: the given value, else the current one, else the default;
/// with none of them the field is required.
fn field<T>(
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

/// A non-negative decimal up to `max` with at most 12 decimal places.
pub fn check_range(field: &str, value: Decimal, max: i64) -> Result<Decimal, OpError> {
    if value.is_sign_negative() || value > Decimal::from(max) {
        return Err(invalid(field, format!("must be from 0 to {max}")));
    }
    if value.scale() > 12 {
        return Err(invalid(field, "must have at most 12 decimal places"));
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
}
