//! Serde for `f64` values that may be NaN or infinite (a diverged run's training loss, the
//! feedback angle of a matrix gone to NaN). JSON has no such numbers: serde_json writes them as
//! `null` and refuses `null` for an `f64` when reading, so a results file or a checkpoint's
//! history holding one could be written but not read back (a sweep could then neither resume
//! nor report). These read `null` as NaN: `#[serde(deserialize_with = "crate::nonfinite::f64")]`.

use serde::{Deserialize, Deserializer};

/// An `f64`, `null` read as NaN.
pub fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// `(name, value)` pairs, a `null` value read as NaN.
pub fn pairs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, f64)>, D::Error> {
    let v = Vec::<(String, Option<f64>)>::deserialize(d)?;
    Ok(v.into_iter().map(|(k, x)| (k, x.unwrap_or(f64::NAN))).collect())
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct T {
        #[serde(deserialize_with = "super::f64")]
        x: f64,
        #[serde(deserialize_with = "super::pairs")]
        p: Vec<(String, f64)>,
    }

    #[test]
    fn nan_and_infinities_round_trip_as_nan_finite_values_exactly() {
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let s = serde_json::to_string(&T { x: v, p: vec![("a".into(), v)] }).unwrap();
            assert_eq!(s, r#"{"x":null,"p":[["a",null]]}"#);
            let t: T = serde_json::from_str(&s).unwrap();
            assert!(t.x.is_nan() && t.p[0].1.is_nan());
        }
        let s = serde_json::to_string(&T { x: 0.1, p: vec![("a".into(), -2.5)] }).unwrap();
        let t: T = serde_json::from_str(&s).unwrap();
        assert_eq!((t.x, t.p[0].1), (0.1, -2.5));
    }
}
