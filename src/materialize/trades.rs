//! One minute's aggTrades folded into the trade columns of `spec/schema.md`
//! (#2, 13, 19, 22–31). Sums are exact ([`Exact`]); whale and retail buckets
//! compare the exact notional; only the final column values are floats.

use std::cmp::Ordering;

use super::exact::Exact;
use crate::event::{AggTrade, Decimal};

/// Notional at or above which an aggTrade is a whale's (USDT).
pub const WHALE_NOTIONAL: i64 = 100_000;
/// Notional at or below which an aggTrade is retail (USDT).
pub const RETAIL_NOTIONAL: i64 = 1_000;

/// The exact aggregates of one minute's aggTrades.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TradeMinute {
    /// aggTrades folded.
    pub agg_trades: u64,
    /// #2 `transact_time`: the largest transact time.
    pub last_transact_time: Option<i64>,
    /// Σ quantity.
    pub quantity: Exact,
    /// Σ price × quantity.
    pub notional: Exact,
    /// Σ quantity of buys (taker bought: `is_buyer_maker == false`).
    pub buy_quantity: Exact,
    /// Σ quantity of sells.
    pub sell_quantity: Exact,
    /// #19 `max_trade_size_btc`: the largest quantity.
    pub max_quantity: Option<Decimal>,
    /// #23 `count_buy_trades`: Σ (last − first + 1) over buys.
    pub count_buy_trades: u64,
    /// #24 `count_sell_trades`: the same over sells.
    pub count_sell_trades: u64,
    /// #26 Σ quantity of buys with notional ≥ 100 000.
    pub whale_buy_quantity: Exact,
    /// #27 the same for sells.
    pub whale_sell_quantity: Exact,
    /// #28 Σ quantity of buys with notional ≤ 1 000.
    pub retail_buy_quantity: Exact,
    /// #29 the same for sells.
    pub retail_sell_quantity: Exact,
    /// #30 aggTrades with notional ≥ 100 000.
    pub whale_trades: u64,
    /// #31 `realized_vol_1m`: √Σ ln(pᵢ/pᵢ₋₁)², 0 with fewer than two trades.
    pub realized_vol: f64,
}

impl TradeMinute {
    /// Folds one minute's aggTrades, which must be free of duplicates and in
    /// `(transact_time, agg_trade_id)` order (realized volatility follows it).
    pub fn fold(trades: &[AggTrade]) -> TradeMinute {
        let whale = Exact::of(Decimal::new(WHALE_NOTIONAL, 0).expect("scale 0"));
        let retail = Exact::of(Decimal::new(RETAIL_NOTIONAL, 0).expect("scale 0"));
        let mut m = TradeMinute::default();
        let mut squares = 0.0f64;
        let mut previous_price: Option<f64> = None;
        for t in trades {
            let quantity = Exact::of(t.quantity);
            let notional = Exact::product(t.price, t.quantity);
            let underlying = t.last_trade_id.saturating_sub(t.first_trade_id) + 1;
            let is_whale = notional.cmp_value(whale) != Ordering::Less;
            let is_retail = notional.cmp_value(retail) != Ordering::Greater;
            m.agg_trades += 1;
            m.last_transact_time = m.last_transact_time.max(Some(t.transact_time));
            m.quantity = m.quantity + quantity;
            m.notional = m.notional + notional;
            if m.max_quantity.is_none_or(|max| {
                Exact::of(t.quantity).cmp_value(Exact::of(max)) == Ordering::Greater
            }) {
                m.max_quantity = Some(t.quantity);
            }
            if is_whale {
                m.whale_trades += 1;
            }
            let (side, count, whale_side, retail_side) = if t.is_buyer_maker {
                (
                    &mut m.sell_quantity,
                    &mut m.count_sell_trades,
                    &mut m.whale_sell_quantity,
                    &mut m.retail_sell_quantity,
                )
            } else {
                (
                    &mut m.buy_quantity,
                    &mut m.count_buy_trades,
                    &mut m.whale_buy_quantity,
                    &mut m.retail_buy_quantity,
                )
            };
            *side = *side + quantity;
            *count += underlying;
            if is_whale {
                *whale_side = *whale_side + quantity;
            }
            if is_retail {
                *retail_side = *retail_side + quantity;
            }
            let price = t.price.to_f64();
            if let Some(p) = previous_price {
                squares += (price / p).ln().powi(2);
            }
            previous_price = Some(price);
        }
        m.realized_vol = squares.sqrt();
        m
    }

    /// #13 `vwap_1m`: Σ notional / Σ quantity, or `close` when no quantity traded.
    pub fn vwap(&self, close: f64) -> f64 {
        if self.quantity.is_zero() {
            close
        } else {
            self.notional.to_f64() / self.quantity.to_f64()
        }
    }

    /// #22 `net_taker_vol_btc`: Σ buy quantity − Σ sell quantity (exact, then float).
    pub fn net_taker_volume(&self) -> f64 {
        (self.buy_quantity - self.sell_quantity).to_f64()
    }

    /// #25 `taker_buy_ratio`: Σ buy quantity / Σ quantity; `None` (NULL) when no quantity.
    pub fn taker_buy_ratio(&self) -> Option<f64> {
        (!self.quantity.is_zero()).then(|| self.buy_quantity.to_f64() / self.quantity.to_f64())
    }
}
