//! Fields of the exchange's JSON (REST answers and stream payloads), read
//! strictly: a missing field or a malformed number is an error that names it.
//! Shapes both channels share are parsed here once.

use anyhow::{anyhow, Context};
use serde_json::Value;

use crate::event::{AggTrade, Decimal, Level};

/// An aggTrade: REST's `/fapi/v1/aggTrades` element and the `@aggTrade`
/// payload use the same letters (`a p q f l T m`).
pub(crate) fn agg_trade(v: &Value) -> anyhow::Result<AggTrade> {
    Ok(AggTrade {
        agg_trade_id: uint(v, "a")?,
        price: decimal(v, "p")?,
        quantity: decimal(v, "q")?,
        first_trade_id: uint(v, "f")?,
        last_trade_id: uint(v, "l")?,
        transact_time: int(v, "T")?,
        is_buyer_maker: boolean(v, "m")?,
    })
}

/// A JSON boolean field.
pub(crate) fn boolean(v: &Value, name: &str) -> anyhow::Result<bool> {
    field(v, name)?
        .as_bool()
        .with_context(|| format!("field {name:?}: expected a boolean"))
}

/// A JSON text field.
pub(crate) fn text<'a>(v: &'a Value, name: &str) -> anyhow::Result<&'a str> {
    field(v, name)?
        .as_str()
        .ok_or_else(|| anyhow!("field {name:?}: expected text"))
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
    decimal_text(text, &format!("field {name:?}"))
}

/// A decimal from the exchange's text; `what` names it in the error.
pub(crate) fn decimal_text(text: &str, what: &str) -> anyhow::Result<Decimal> {
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
                    decimal_text(price, &format!("field {name:?}"))?,
                    decimal_text(qty, &format!("field {name:?}"))?,
                )),
                _ => Err(anyhow::anyhow!(
                    "field {name:?}: a level is not [price, qty]: {level}"
                )),
            }
        })
        .collect()
}
