//! A rule's own settings: one serde struct per rule (or family), declared with [`settings!`] so
//! that each field's type, default (the rule's preset) and documentation are written once, and
//! checked by [`Settings::check`], which refuses every value that cannot work and names the field.
//!
//! In a run's configuration they are the table `settings` (`[settings]` in a config file); in a
//! plan they sit with the other overrides in `[rule.NAME]`; `--set KEY=VALUE` reaches them by
//! their name. The registry ([`super::RuleEntry`]) holds them type-erased as a [`SettingsKind`].

use serde::{de::DeserializeOwned, Serialize};

/// A rule's typed settings. Implemented by the [`settings!`] macro.
pub trait Settings: Serialize + DeserializeOwned + Default + Clone + 'static {
    /// (field, documentation) in declaration order.
    fn fields() -> &'static [(&'static str, &'static str)];
    /// Refuse values that cannot work, naming the field.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Declare a rule's settings: the struct (serde; unknown keys refused, missing keys defaulted),
/// its `Default` (the rule's preset) and its `Settings` impl, from one list of documented fields
/// and a check that refuses values that cannot work:
///
/// ```
/// use biolearn::settings;
/// settings! {
///     /// What these settings are for.
///     pub struct MySettings {
///         /// Inference steps.
///         pub steps: usize = 5,
///     }
///     check(s) { biolearn::rules::settings::count("steps", s.steps, 10_000) }
/// }
/// assert_eq!(MySettings::default().steps, 5);
/// ```
/// (The generated code derives serde's traits: a crate using the macro depends on `serde`.)
#[macro_export]
macro_rules! settings {
    ($(#[doc = $sdoc:literal])* pub struct $name:ident {
        $( $(#[doc = $doc:literal])+ pub $f:ident : $t:ty = $d:expr ),* $(,)?
    }
    check($s:ident) $check:block) => {
        $(#[doc = $sdoc])*
        #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name { $( $(#[doc = $doc])+ pub $f: $t ),* }
        impl Default for $name {
            fn default() -> Self {
                $name { $( $f: $d ),* }
            }
        }
        impl $crate::rules::Settings for $name {
            fn fields() -> &'static [(&'static str, &'static str)] {
                &[ $( (stringify!($f), concat!($($doc),+)) ),* ]
            }
            #[allow(unused_variables)]
            fn check(&self) -> Result<(), String> {
                let $s = self;
                $check
            }
        }
    };
}

settings! {
    /// Rules with no settings of their own.
    pub struct NoSettings {}
    check(s) { Ok(()) }
}

/// One setting's documentation as `biolearn rules NAME` prints it.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldDoc {
    pub name: &'static str,
    /// The default (the rule's preset), as TOML.
    pub default: String,
    pub doc: String,
}

/// A rule's settings type, erased: what the configuration needs to resolve, check and
/// document them without knowing the type.
#[derive(Clone, Copy)]
pub struct SettingsKind {
    /// Fill defaults into a table of given keys, check, and return the full canonical table.
    pub resolve: fn(&toml::Table) -> Result<toml::Table, String>,
    pub fields: fn() -> &'static [(&'static str, &'static str)],
    pub defaults: fn() -> toml::Table,
}

impl SettingsKind {
    pub const fn of<S: Settings>() -> SettingsKind {
        SettingsKind { resolve: resolve::<S>, fields: S::fields, defaults: defaults::<S> }
    }

    pub fn names(&self) -> Vec<&'static str> {
        (self.fields)().iter().map(|(n, _)| *n).collect()
    }

    pub fn has(&self, key: &str) -> bool {
        (self.fields)().iter().any(|(n, _)| *n == key)
    }

    pub fn docs(&self) -> Vec<FieldDoc> {
        let d = (self.defaults)();
        (self.fields)()
            .iter()
            .map(|(name, doc)| FieldDoc {
                name,
                default: d.get(*name).map_or(String::new(), |v| v.to_string()),
                doc: doc.split_whitespace().collect::<Vec<_>>().join(" "),
            })
            .collect()
    }
}

fn defaults<S: Settings>() -> toml::Table {
    to_table(&S::default())
}

/// A value with every float that is exactly an f32 written as that f32's shortest decimal (0.1,
/// not 0.10000000149011612): it reads back to the same f32.
pub fn tidy(v: &mut toml::Value) {
    match v {
        toml::Value::Float(x) if (*x as f32) as f64 == *x && x.is_finite() => {
            *x = (*x as f32).to_string().parse().unwrap_or(*x);
        }
        toml::Value::Array(a) => a.iter_mut().for_each(tidy),
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| tidy(v)),
        _ => {}
    }
}

/// The settings as a table, f32 values tidied ([`tidy`]).
fn to_table<S: Settings>(s: &S) -> toml::Table {
    let mut t = toml::Table::try_from(s).expect("settings serialise to a TOML table");
    t.iter_mut().for_each(|(_, v)| tidy(v));
    t
}

/// `t` with each single value given to a list setting (one value per layer, the last
/// repeating: `hebb_lr`) made a list of one: `--set hebb_lr=0.2` as `--set 'hebb_lr=[0.2]'`.
fn singles_as_lists<S: Settings>(t: &toml::Table) -> toml::Table {
    let defaults = defaults::<S>();
    let mut t = t.clone();
    for (k, v) in t.iter_mut() {
        if matches!(defaults.get(k), Some(toml::Value::Array(_))) && !v.is_array() {
            *v = toml::Value::Array(vec![v.clone()]);
        }
    }
    t
}

fn resolve<S: Settings>(given: &toml::Table) -> Result<toml::Table, String> {
    let s: S = toml::Value::Table(singles_as_lists::<S>(given)).try_into().map_err(|e: toml::de::Error| {
        let names: Vec<&str> = S::fields().iter().map(|(n, _)| *n).collect();
        format!(
            "{}; the rule's settings are: {}",
            e.message().trim(),
            if names.is_empty() { "none".into() } else { names.join(", ") }
        )
    })?;
    s.check()?;
    Ok(to_table(&s))
}

/// The typed settings of a resolved table (as `TrainConfig::settings` holds them).
pub fn parse<S: Settings>(t: &toml::Table) -> Result<S, String> {
    let s: S = toml::Value::Table(singles_as_lists::<S>(t))
        .try_into()
        .map_err(|e: toml::de::Error| e.message().trim().to_string())?;
    s.check()?;
    Ok(s)
}

/// `check` helpers: each returns an error naming the field.
pub fn positive(name: &str, v: f32) -> Result<(), String> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(format!("{name} must be a positive number (got {v})"))
    }
}

pub fn non_negative(name: &str, v: f32) -> Result<(), String> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(format!("{name} must be a number >= 0 (got {v})"))
    }
}

pub fn in_unit(name: &str, v: f32) -> Result<(), String> {
    if (0.0..1.0).contains(&v) {
        Ok(())
    } else {
        Err(format!("{name} must be in [0, 1) (got {v})"))
    }
}

/// A count in `1..=max` (steps, micro-batches): 0 cannot work, and a huge value would run for ever.
pub fn count(name: &str, v: usize, max: usize) -> Result<(), String> {
    if (1..=max).contains(&v) {
        Ok(())
    } else {
        Err(format!("{name} must be in 1..={max} (got {v})"))
    }
}

/// A per-layer list (the last value repeats): at least one value, every one positive.
pub fn positive_list(name: &str, v: &[f32]) -> Result<(), String> {
    if v.is_empty() {
        return Err(format!("{name} needs at least one value (one per layer; the last repeats)"));
    }
    for x in v {
        positive(name, *x)?;
    }
    Ok(())
}
