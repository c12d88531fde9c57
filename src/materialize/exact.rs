//! Exact decimal sums. Adding the same decimals in any order gives the same
//! value, to the last digit: what makes a partition independent of log order.
//! A float appears only when a column is finally written.

use std::cmp::Ordering;

use crate::event::Decimal;

/// 10^0 ..= 10^38: every power of ten an i128 holds.
const POWERS_OF_TEN: [i128; 39] = {
    let mut powers = [1i128; 39];
    let mut i = 1;
    while i < 39 {
        powers[i] = powers[i - 1] * 10;
        i += 1;
    }
    powers
};

/// A sum of decimals (or of products of two decimals), as `mantissa × 10^-scale`
/// in 128 bits. Real sums stay far below 10^38; should one ever get there, the
/// arithmetic stops with a panic rather than wrap into a wrong number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exact {
    mantissa: i128,
    scale: u8,
}

impl Exact {
    /// Zero.
    pub const ZERO: Exact = Exact {
        mantissa: 0,
        scale: 0,
    };

    /// The value of one decimal.
    pub fn of(d: Decimal) -> Exact {
        Exact {
            mantissa: i128::from(d.mantissa()),
            scale: d.scale(),
        }
    }

    /// `mantissa × 10^-scale`.
    pub fn new(mantissa: i128, scale: u8) -> Exact {
        Exact { mantissa, scale }
    }

    /// The exact product of two decimals (e.g. price × quantity).
    pub fn product(a: Decimal, b: Decimal) -> Exact {
        Exact {
            mantissa: i128::from(a.mantissa())
                .checked_mul(i128::from(b.mantissa()))
                .expect("exact product overflows 128 bits"),
            scale: a.scale() + b.scale(),
        }
    }

    /// True when the value is zero.
    pub fn is_zero(self) -> bool {
        self.mantissa == 0
    }

    /// Compares values (not representations: 1.0 equals 1.00).
    pub fn cmp_value(self, other: Exact) -> Ordering {
        let scale = self.scale.max(other.scale);
        self.rescaled(scale).cmp(&other.rescaled(scale))
    }

    /// The nearest `f64` (correctly rounded).
    pub fn to_f64(self) -> f64 {
        crate::event::nearest_f64(self.mantissa, self.scale)
    }

    /// The value as a mantissa at `scale`, which must be at least its own.
    pub fn rescaled(self, scale: u8) -> i128 {
        if scale == self.scale {
            return self.mantissa;
        }
        POWERS_OF_TEN
            .get(usize::from(scale - self.scale))
            .and_then(|f| self.mantissa.checked_mul(*f))
            .expect("exact value overflows 128 bits")
    }
}

impl std::ops::Add for Exact {
    type Output = Exact;

    /// Exact addition.
    fn add(self, other: Exact) -> Exact {
        let scale = self.scale.max(other.scale);
        Exact {
            mantissa: self
                .rescaled(scale)
                .checked_add(other.rescaled(scale))
                .expect("exact sum overflows 128 bits"),
            scale,
        }
    }
}

impl std::ops::Sub for Exact {
    type Output = Exact;

    /// Exact subtraction.
    fn sub(self, other: Exact) -> Exact {
        self + Exact {
            mantissa: -other.mantissa,
            scale: other.scale,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn sums_are_exact_and_independent_of_order() {
        let terms = ["0.1", "0.2", "0.30", "1234567.891", "-0.001", "0.00000001"];
        let forward = terms.iter().fold(Exact::ZERO, |s, t| s + Exact::of(d(t)));
        let backward = terms
            .iter()
            .rev()
            .fold(Exact::ZERO, |s, t| s + Exact::of(d(t)));
        assert_eq!(forward.cmp_value(backward), Ordering::Equal);
        assert_eq!(forward.to_f64(), 1234568.49000001);
        assert_eq!((Exact::of(d("0.1")) + Exact::of(d("0.2"))).to_f64(), 0.3);
    }

    #[test]
    fn products_and_comparisons() {
        let notional = Exact::product(d("60000.1"), d("1.667"));
        assert_eq!(notional.to_f64(), 100020.1667);
        assert_eq!(
            notional.cmp_value(Exact::of(d("100000"))),
            Ordering::Greater
        );
        assert_eq!(
            Exact::of(d("1.0")).cmp_value(Exact::of(d("1.00"))),
            Ordering::Equal
        );
        assert_eq!((Exact::of(d("5")) - Exact::of(d("7.5"))).to_f64(), -2.5);
    }
}
