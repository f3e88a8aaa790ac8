//! Non-finite numbers in JSON. serde_json writes ±∞ and NaN as `null`, which then reads back
//! as a missing value (or not at all, inside an array). An interval that is the whole line
//! (too few seeds) or a crossover that never happens must survive the trip through
//! `summary.json`, so these fields write them as the strings "inf", "-inf" and "nan".

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum Num {
    Number(f64),
    Text(String),
}

fn text(v: f64) -> Option<&'static str> {
    if v.is_nan() {
        Some("nan")
    } else if v == f64::INFINITY {
        Some("inf")
    } else if v == f64::NEG_INFINITY {
        Some("-inf")
    } else {
        None
    }
}

fn parse<E: serde::de::Error>(n: Num) -> Result<f64, E> {
    match n {
        Num::Number(v) => Ok(v),
        Num::Text(t) => match t.as_str() {
            "nan" => Ok(f64::NAN),
            "inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            other => Err(E::custom(format!("expected a number, \"inf\", \"-inf\" or \"nan\", not {other:?}"))),
        },
    }
}

/// One number.
pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    match text(*v) {
        Some(t) => s.serialize_str(t),
        None => s.serialize_f64(*v),
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    // An old summary's `null` (a NaN written by an earlier version) reads as NaN.
    match Option::<Num>::deserialize(d)? {
        Some(n) => parse(n),
        None => Ok(f64::NAN),
    }
}

/// An optional number (`null` stays `None`).
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(x) => super::serialize(x, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Option::<Num>::deserialize(d)?.map(parse).transpose()
    }
}

/// An optional pair of numbers (an interval).
pub mod pair {
    use super::*;

    #[derive(Serialize)]
    struct Out(#[serde(with = "super")] f64, #[serde(with = "super")] f64);

    pub fn serialize<S: Serializer>(v: &Option<[f64; 2]>, s: S) -> Result<S::Ok, S::Error> {
        v.map(|[a, b]| Out(a, b)).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[f64; 2]>, D::Error> {
        match Option::<[Option<Num>; 2]>::deserialize(d)? {
            None => Ok(None),
            Some([a, b]) => {
                let f = |n: Option<Num>| n.map(parse).transpose().map(|v| v.unwrap_or(f64::NAN));
                Ok(Some([f(a)?, f(b)?]))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::fit::Estimate;

    #[test]
    fn non_finite_values_survive_json() {
        let e = Estimate { value: f64::NAN, lo: Some(f64::NEG_INFINITY), hi: Some(f64::INFINITY) };
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(text, r#"{"value":"nan","lo":"-inf","hi":"inf"}"#);
        let back: Estimate = serde_json::from_str(&text).unwrap();
        assert!(back.value.is_nan() && back.lo == e.lo && back.hi == e.hi);
        let plain: Estimate = serde_json::from_str(r#"{"value":1.5,"lo":1.0}"#).unwrap();
        assert_eq!(plain, Estimate { value: 1.5, lo: Some(1.0), hi: None });
        assert!(serde_json::from_str::<Estimate>(r#"{"value":"lots"}"#).is_err());
    }
}
