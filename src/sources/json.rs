//! Fields of the exchange's JSON (REST answers and stream payloads), read
//! strictly: a missing field or a malformed number is an error that names it.
//! Shapes both channels share are parsed here once.

use anyhow::{anyhow, Context};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::event::{AggTrade, Decimal, Level};

/// An aggTrade's letters (`a p q f l T m`), which REST's `/fapi/v1/aggTrades`
/// element and the `@aggTrade` payload share; the payload adds `e E s`.
/// Typed, not read through a `Value`: the stream's hot path parses it.
#[derive(Deserialize)]
pub(crate) struct AggTradeFields<'a> {
    /// The stream payload's event type and symbol (REST's element has none).
    #[serde(borrow)]
    pub e: Option<&'a str>,
    #[serde(borrow)]
    pub s: Option<&'a str>,
    a: u64,
    #[serde(deserialize_with = "de_decimal")]
    p: Decimal,
    #[serde(deserialize_with = "de_decimal")]
    q: Decimal,
    f: u64,
    l: u64,
    #[serde(rename = "T")]
    t: i64,
    m: bool,
}

impl AggTradeFields<'_> {
    pub(crate) fn event(&self) -> AggTrade {
        AggTrade {
            agg_trade_id: self.a,
            price: self.p,
            quantity: self.q,
            first_trade_id: self.f,
            last_trade_id: self.l,
            transact_time: self.t,
            is_buyer_maker: self.m,
        }
    }
}

/// An aggTrade element of REST's `/fapi/v1/aggTrades`.
pub(crate) fn agg_trade(v: &Value) -> anyhow::Result<AggTrade> {
    Ok(AggTradeFields::deserialize(v)?.event())
}

/// A decimal field from its text, for typed payloads (`deserialize_with`).
pub(crate) fn de_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    struct Text;
    impl serde::de::Visitor<'_> for Text {
        type Value = Decimal;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a decimal as text")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Decimal, E> {
            Decimal::parse(text.as_bytes()).map_err(|e| E::custom(format!("{text:?}: {e}")))
        }
    }
    d.deserialize_str(Text)
}

/// Levels `[["price","qty"],…]`, for typed payloads (`deserialize_with`).
pub(crate) fn de_levels<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Level>, D::Error> {
    #[derive(Deserialize)]
    struct Text(#[serde(deserialize_with = "de_decimal")] Decimal);
    struct Levels;
    impl<'de> serde::de::Visitor<'de> for Levels {
        type Value = Vec<Level>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of [price, qty] levels")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Vec<Level>, A::Error> {
            let mut levels = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some((Text(price), Text(qty))) = seq.next_element()? {
                levels.push((price, qty));
            }
            Ok(levels)
        }
    }
    d.deserialize_seq(Levels)
}

pub(crate) fn field<'a>(v: &'a Value, name: &str) -> anyhow::Result<&'a Value> {
    v.get(name).ok_or_else(|| anyhow!("missing field {name:?}"))
}

pub(crate) fn int(v: &Value, name: &str) -> anyhow::Result<i64> {
    field(v, name)?
        .as_i64()
        .ok_or_else(|| anyhow!("field {name:?}: expected an integer"))
}

/// An integer sent as a JSON number or as text: the docs show the statistics'
/// `timestamp` as `"1583139600000"`, recordings as a number.
pub(crate) fn int_or_text(v: &Value, name: &str) -> anyhow::Result<i64> {
    let value = field(v, name)?;
    value
        .as_i64()
        .or_else(|| value.as_str()?.trim().parse().ok())
        .ok_or_else(|| anyhow!("field {name:?}: expected an integer or its text"))
}

pub(crate) fn uint(v: &Value, name: &str) -> anyhow::Result<u64> {
    field(v, name)?
        .as_u64()
        .ok_or_else(|| anyhow!("field {name:?}: expected an unsigned integer"))
}

pub(crate) fn decimal(v: &Value, name: &str) -> anyhow::Result<Decimal> {
    let text = field(v, name)?
        .as_str()
        .ok_or_else(|| anyhow!("field {name:?}: expected a decimal string"))?;
    decimal_text(text, format_args!("field {name:?}"))
}

/// A decimal from the exchange's text; `what` names it in the error (and is
/// formatted only then).
pub(crate) fn decimal_text(text: &str, what: std::fmt::Arguments<'_>) -> anyhow::Result<Decimal> {
    Decimal::parse(text.as_bytes()).map_err(|e| anyhow!("{what}: {text:?}: {e}"))
}

/// `[["price", "qty"], …]`.
pub(crate) fn levels(v: &Value, name: &str) -> anyhow::Result<Vec<Level>> {
    let side = v
        .get(name)
        .and_then(Value::as_array)
        .with_context(|| format!("field {name:?}: expected an array of levels"))?;
    side.iter()
        .map(|level| {
            let pair = level.as_array().filter(|p| p.len() == 2);
            let text = |i: usize| pair.and_then(|p| p[i].as_str());
            match (text(0), text(1)) {
                (Some(price), Some(qty)) => Ok((
                    decimal_text(price, format_args!("field {name:?}"))?,
                    decimal_text(qty, format_args!("field {name:?}"))?,
                )),
                _ => Err(anyhow::anyhow!(
                    "field {name:?}: a level is not [price, qty]: {level}"
                )),
            }
        })
        .collect()
}
