//! Exact decimals, as the exchange wrote them.
//!
//! Binance sends prices and quantities as decimal text ("60000.10", "0.00123000").
//! A binary float cannot hold most of them exactly, and sums of floats depend on
//! the order of addition, which would make the lake depend on log order. So the
//! log keeps a scaled integer: "0.00123000" is mantissa 123000 at scale 8. The
//! scale keeps trailing zeros, so `to_string()` gives back the original text.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The largest scale accepted: 18 fractional digits (Binance uses at most 8).
pub const MAX_SCALE: u8 = 18;

/// A decimal number `mantissa × 10^-scale`, kept exactly.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct Decimal {
    mantissa: i64,
    scale: u8,
}

/// Why text is not a decimal we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// Empty text, a lone sign or point, or a character that is not a digit.
    #[error("not a plain decimal number")]
    Syntax,
    /// More than [`MAX_SCALE`] digits after the point.
    #[error("more than {MAX_SCALE} fractional digits")]
    Scale,
    /// More digits than fit in 64 bits.
    #[error("too many digits")]
    Overflow,
}

impl Decimal {
    /// Zero at scale 0.
    pub const ZERO: Decimal = Decimal {
        mantissa: 0,
        scale: 0,
    };

    /// `mantissa × 10^-scale`.
    pub fn new(mantissa: i64, scale: u8) -> Result<Decimal, DecimalError> {
        if scale > MAX_SCALE {
            return Err(DecimalError::Scale);
        }
        Ok(Decimal { mantissa, scale })
    }

    /// Parses plain decimal text: optional `-`, digits, optionally `.` and digits.
    /// No exponents, no `+`, no spaces inside: anything unusual is an error, not
    /// a guess. Spaces around the number are dropped (Binance's own examples
    /// show `" 0.01"`-style padding; it says nothing about the value).
    pub fn parse(text: &[u8]) -> Result<Decimal, DecimalError> {
        let text = text.trim_ascii();
        let (negative, digits) = match text.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, text),
        };
        // One pass: digits into the mantissa, the point's position remembered.
        // 18 digits always fit in an i64, so overflow is checked only past that.
        let checked = digits.len() > 18;
        let mut mantissa: i64 = 0;
        let mut point: Option<usize> = None;
        for (i, &b) in digits.iter().enumerate() {
            let digit = b.wrapping_sub(b'0');
            if digit > 9 {
                if b != b'.' || point.is_some() {
                    return Err(DecimalError::Syntax);
                }
                point = Some(i);
                continue;
            }
            mantissa = if checked {
                mantissa
                    .checked_mul(10)
                    .and_then(|m| m.checked_add(i64::from(digit)))
                    .ok_or(DecimalError::Overflow)?
            } else {
                mantissa * 10 + i64::from(digit)
            };
        }
        let scale = match point {
            None if digits.is_empty() => return Err(DecimalError::Syntax),
            None => 0,
            Some(p) if p + 1 == digits.len() => return Err(DecimalError::Syntax),
            Some(p) => digits.len() - p - 1,
        };
        if scale > MAX_SCALE as usize {
            return Err(DecimalError::Scale);
        }
        Ok(Decimal {
            mantissa: if negative { -mantissa } else { mantissa },
            scale: scale as u8,
        })
    }

    /// The scaled integer.
    pub fn mantissa(self) -> i64 {
        self.mantissa
    }

    /// Digits after the point.
    pub fn scale(self) -> u8 {
        self.scale
    }

    /// True for any zero, whatever its scale.
    pub fn is_zero(self) -> bool {
        self.mantissa == 0
    }

    /// The nearest `f64`, for output columns only (see [`nearest_f64`]: the
    /// same bits as parsing the decimal text, without the text).
    pub fn to_f64(self) -> f64 {
        nearest_f64(i128::from(self.mantissa), self.scale)
    }
}

/// The `f64` nearest to `mantissa × 10^-scale`. When both the mantissa (≤ 2^53)
/// and 10^scale (≤ 10^22) are exact doubles, one IEEE division is correctly
/// rounded; otherwise the decimal text goes through Rust's (correctly rounded)
/// parser. Either way the same value always gives the same bits.
pub(crate) fn nearest_f64(mantissa: i128, scale: u8) -> f64 {
    const EXACT_POWERS: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    if mantissa.unsigned_abs() <= 1 << 53 {
        if let Some(power) = EXACT_POWERS.get(scale as usize) {
            // Through i64: one instruction, where i128 → f64 is a library call.
            return mantissa as i64 as f64 / power;
        }
    }
    let digits = mantissa.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    let sign = if mantissa < 0 { "-" } else { "" };
    format!("{sign}{int}.{frac}0")
        .parse()
        .expect("decimal text parses as f64")
}

/// Plain decimal text, as the exchange writes it: `-0.0012`, `42`, `42.50`
/// (the scale's trailing zeros kept). No allocation: the simulator writes
/// millions of these a second.
impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scale = self.scale as usize;
        // The digits of |mantissa|, at least scale + 1 of them (a leading 0).
        let mut digits = [b'0'; 24];
        let mut n = self.mantissa.unsigned_abs();
        let mut len = 0;
        while n > 0 || len <= scale {
            digits[digits.len() - 1 - len] = b'0' + (n % 10) as u8;
            n /= 10;
            len += 1;
        }
        let text = std::str::from_utf8(&digits[digits.len() - len..]).map_err(|_| fmt::Error)?;
        if self.mantissa < 0 {
            f.write_str("-")?;
        }
        if scale == 0 {
            return f.write_str(text);
        }
        let (int, frac) = text.split_at(len - scale);
        f.write_str(int)?;
        f.write_str(".")?;
        f.write_str(frac)
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl std::str::FromStr for Decimal {
    type Err = DecimalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Decimal::parse(s.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_back_the_exact_text() {
        for text in [
            "0",
            "7195.24000000",
            "-0.00003449",
            "0.001",
            "1.0",
            "542.0",
            "80006.00000000",
            "-12",
        ] {
            let d = Decimal::parse(text.as_bytes()).unwrap();
            assert_eq!(d.to_string(), text);
        }
        let d = Decimal::parse(b"0.00123000").unwrap();
        assert_eq!((d.mantissa(), d.scale()), (123000, 8));
        assert_eq!(Decimal::parse(b".5").unwrap().to_string(), "0.5");
        for padded in [" 1.5", "1.5 ", "\t1.5\n", "  1.5  "] {
            assert_eq!(
                Decimal::parse(padded.as_bytes()).unwrap().to_string(),
                "1.5"
            );
        }
    }

    /// Every mantissa and scale prints as text that parses back to itself,
    /// with exactly `scale` digits after the point; the extremes included.
    #[test]
    fn prints_text_that_parses_back() {
        let mut rng = fastrand::Rng::with_seed(148);
        let extremes = [i64::MIN + 1, i64::MAX, 0, -1, 1];
        for i in 0..200_000 {
            let mantissa = match extremes.get(i % 1000) {
                Some(m) => *m,
                None => rng.i64(..) >> rng.u32(0..64),
            };
            let d = Decimal::new(mantissa, rng.u8(0..=MAX_SCALE)).unwrap();
            let text = d.to_string();
            assert_eq!(Decimal::parse(text.as_bytes()).unwrap(), d, "{text}");
            let fraction = text.split_once('.').map_or(0, |(_, f)| f.len());
            assert_eq!(fraction, usize::from(d.scale()), "{text}");
        }
        assert_eq!(Decimal::new(-5, 3).unwrap().to_string(), "-0.005");
        assert_eq!(
            Decimal::new(i64::MAX, 18).unwrap().to_string(),
            "9.223372036854775807"
        );
    }

    #[test]
    fn refuses_what_is_not_plain_decimal_text() {
        for bad in [
            "", "-", ".", "1.", "1e5", "+1", "1 5", "- 1", "1,5", "0x10", "NaN", "--1", "1.2.3",
            " ",
        ] {
            assert!(Decimal::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert_eq!(
            Decimal::parse(b"99999999999999999999"),
            Err(DecimalError::Overflow)
        );
        assert_eq!(
            Decimal::parse(b"0.1234567890123456789"),
            Err(DecimalError::Scale)
        );
    }

    #[test]
    fn converts_to_the_nearest_float() {
        assert_eq!(Decimal::parse(b"0.1").unwrap().to_f64(), 0.1);
        assert_eq!(
            Decimal::parse(b"-0.00003449").unwrap().to_f64(),
            -0.00003449
        );
    }

    /// The arithmetic path gives the bits of Rust's correctly rounded parse of
    /// the text, for mantissas on both sides of 2^53 and every scale.
    #[test]
    fn the_float_is_the_parsed_text() {
        let mut rng = fastrand::Rng::with_seed(53);
        for _ in 0..200_000 {
            let bits = rng.u32(1..64);
            let mantissa = rng.i64(..) >> (64 - bits);
            let d = Decimal::new(mantissa, rng.u8(0..=MAX_SCALE)).unwrap();
            let parsed: f64 = d.to_string().parse().unwrap();
            assert_eq!(d.to_f64().to_bits(), parsed.to_bits(), "{d}");
        }
    }
}
